"""The whole path: Producer -> Redis -> arq worker processes -> sandbox over HTTP -> JobRecord."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis

from devkit.wait import eventually
from producer.client import Producer
from producer.models import ErrorKind, JobState
from sandbox.models import version_id
from tests.integration.conftest import SANDBOX_TOKEN, Sandbox, Workers, record_when

pytestmark = pytest.mark.integration


async def test_jobs_succeed_through_worker_processes(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start(2)
    jobs = [await producer.enqueue("sandbox/echo", {"n": n, "text": "é"}) for n in range(10)]
    assert all(job.state is JobState.QUEUED for job in jobs)
    done = await asyncio.gather(*(producer.wait(job.id, timeout_s=30) for job in jobs))
    for n, record in enumerate(done):
        assert record.state is JobState.SUCCEEDED, record.error
        assert record.output == {"n": n, "text": "é"}
        assert record.attempts == 1
        assert record.prediction_id
        assert record.started_at is not None
        assert record.finished_at is not None
    assert sandbox.stats()["created"] == 10


async def test_version_refs_and_file_outputs(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    versioned = await producer.enqueue(f"sandbox/echo:{version_id('sandbox/echo')}", {"a": 1})
    image = await producer.enqueue("sandbox/image", {"num_outputs": 2})
    versioned_done = await producer.wait(versioned.id, timeout_s=30)
    image_done = await producer.wait(image.id, timeout_s=30)
    assert versioned_done.state is JobState.SUCCEEDED
    assert versioned_done.output == {"a": 1}
    assert image_done.state is JobState.SUCCEEDED
    assert isinstance(image_done.output, list)
    assert len(image_done.output) == 2
    assert image_done.output == [f.url for f in image_done.files]
    assert all(url.startswith("file://") for url in image_done.output)


async def test_a_typod_version_fails_at_once_with_replicates_reason(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    job = await producer.enqueue("sandbox/echo:0123456789abcdef", {"a": 1})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.FAILED
    assert record.error is not None
    assert record.error.kind is ErrorKind.PERMANENT
    assert "Invalid version or not permitted" in record.error.message
    assert sandbox.stats()["created"] == 0


async def test_model_error_fails_at_once_with_the_reason(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    job = await producer.enqueue("sandbox/fail", {"message": "CUDA out of memory"})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.kind is ErrorKind.MODEL
    assert "CUDA out of memory" in record.error.message
    assert sandbox.stats()["created"] == 1


async def test_invalid_input_on_replicate_is_permanent(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    job = await producer.enqueue("sandbox/sleep", {"seconds": "soon"})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.kind is ErrorKind.PERMANENT
    assert record.error.status_code == 422


async def test_throttled_creates_are_retried_after_retry_after(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(queue=[{"on": "create", "fault": "throttle"}] * 2, retry_after_s=1)
    workers.start()
    job = await producer.enqueue("sandbox/echo", {"x": 1})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 3
    assert [e.kind for e in record.errors] == [ErrorKind.THROTTLED] * 2
    assert all(e.status_code == 429 for e in record.errors)
    assert all(e.retry_in_s is not None and e.retry_in_s >= 1 for e in record.errors)
    stats = sandbox.stats()
    assert stats["throttled"] == 2
    assert stats["created"] == 1


async def test_server_errors_are_retried_and_a_known_prediction_is_resumed(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(
        queue=[
            {"on": "create", "fault": "error", "status": 500},
            {"on": "get", "fault": "error", "status": 502},
            {"on": "get", "fault": "error", "status": 500},
        ],
        latency_s=0.5,
    )
    workers.start()
    job = await producer.enqueue("sandbox/echo", {"x": 2})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED, record.errors
    # The 5xx on create cost an attempt; the 5xx on polls of the existing prediction did not:
    # the attempt polled again and the prediction was never re-created.
    assert record.attempts == 2
    assert [e.kind for e in record.errors] == [ErrorKind.TRANSIENT]
    assert record.errors[0].status_code == 500
    stats = sandbox.stats()
    assert stats["created"] == 1
    assert stats["server_errors"] == 3


async def test_a_timed_out_create_is_retried_until_success(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(queue=[{"on": "create", "fault": "slow"}], slow_s=4)
    workers.start(PREDQ_CREATE_TIMEOUT_S="1")
    job = await producer.enqueue("sandbox/echo", {"x": 3})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 2
    assert record.errors[0].kind is ErrorKind.TRANSIENT
    assert "Timeout" in record.errors[0].message


async def test_attempt_deadlines_cancel_the_prediction_and_exhaust_attempts(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    job = await producer.enqueue(
        "sandbox/sleep", {"seconds": 60}, max_attempts=3, attempt_timeout_s=0.5
    )
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.FAILED
    assert record.attempts == 3
    assert [e.kind for e in record.errors] == [ErrorKind.TIMEOUT] * 3
    assert len({e.prediction_id for e in record.errors}) == 3
    assert record.errors[-1].retry_in_s is None
    assert "no attempts left" in record.errors[-1].message
    stats = sandbox.stats()
    assert stats["created"] == 3
    assert stats["canceled"] == 3


async def test_a_prediction_canceled_on_replicate_ends_canceled(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    job = await producer.enqueue("sandbox/sleep", {"seconds": 20})

    running = await record_when(producer, job.id, lambda r: r.prediction_id, timeout_s=20)
    pid = running.prediction_id
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{sandbox.url}/v1/predictions/{pid}/cancel",
            headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"},
        )
    assert response.status_code == 200
    record = await producer.wait(job.id, timeout_s=20)
    assert record.state is JobState.CANCELED
    assert record.output is None
    assert record.error is not None
    assert record.error.kind is ErrorKind.CANCELED


async def test_worker_logs_never_show_the_token(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    wrong_token = "r8_wrong-token-that-must-stay-secret"
    workers.start(REPLICATE_API_TOKEN=wrong_token, PREDQ_CHECK_TOKEN="0")
    job = await producer.enqueue("sandbox/echo", {})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.FAILED
    assert record.error is not None
    assert record.error.kind is ErrorKind.CONFIG
    assert wrong_token not in record.model_dump_json()
    workers.stop_all()
    text = workers.log_text()
    assert "job.failed" in text  # the failure (401 and all) was logged, at DEBUG level too
    assert wrong_token not in text


async def test_held_creates_cost_one_request_per_fast_prediction(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(latency_s=0.3)
    workers.start(PREDQ_CREATE_WAIT_S="3")
    jobs = await producer.enqueue_many(
        [{"model": "sandbox/echo", "input": {"n": n}} for n in range(10)]
    )
    done = [await producer.wait(job.id, timeout_s=30) for job in jobs]
    assert [r.output for r in done] == [{"n": n} for n in range(10)]
    assert all(r.prediction_id for r in done)
    stats = sandbox.stats()
    # one request per prediction, plus the worker's start-up token check (GET /v1/account)
    assert (stats["created"], stats["polls"], stats["requests"]) == (10, 0, 10 + 1)


async def test_a_held_create_answered_processing_is_polled_to_its_end(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    """replicate-python#385: async_run takes a held `processing` prediction as finished."""
    sandbox.faults(wait_returns_processing=True)
    workers.start(PREDQ_CREATE_WAIT_S="1")
    job = await producer.enqueue("sandbox/sleep", {"seconds": 2.5, "tag": "full"})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert record.output == {"seconds": 2.5, "tag": "full"}
    assert sandbox.stats()["polls"] >= 1


async def test_an_idle_worker_is_woken_by_an_enqueue(
    producer: Producer, workers: Workers, redis_url: str
) -> None:
    # Idle, the worker polls only every 60 s: the job starts at once only if the enqueue wakes it.
    client = aioredis.Redis.from_url(redis_url)
    await client.config_resetstat()
    workers.start(PREDQ_IDLE_POLL_S="60")

    async def polled() -> bool:  # arq's first poll came back empty: the worker is idle now
        return "cmdstat_zrangebyscore" in await client.info("commandstats")

    await eventually(polled, timeout_s=10, what="the worker's first poll")
    job = await producer.enqueue("sandbox/echo", {"n": 1})
    record = await producer.wait(job.id, timeout_s=15)
    assert record.state is JobState.SUCCEEDED
    await client.aclose()
