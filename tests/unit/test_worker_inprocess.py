"""The worker stepped in-process: arq in burst mode on fakeredis, the sandbox through ASGITransport.

Fast enough to cover the job's paths one by one; the integration tier repeats the important ones
with real processes, a real Redis and HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import arq.worker
import fakeredis
import httpx
import pytest
from arq.connections import ArqRedis

from producer.client import Producer
from producer.config import Config
from producer.models import ErrorKind, JobRecord, JobState
from sandbox.app import create_app
from sandbox.config import SandboxConfig
from worker.main import build_settings

ENV = {
    "REPLICATE_API_TOKEN": "unit-token",
    "REPLICATE_BASE_URL": "http://sandbox",
    "PREDQ_BACKOFF_BASE_S": "0.01",
    "PREDQ_BACKOFF_MAX_S": "0.05",
    "PREDQ_POLL_INTERVAL_S": "0.01",
    "PREDQ_QUEUE_POLL_S": "0.01",
}

RunJobs = Callable[..., Awaitable[list[JobRecord]]]


async def _no_info(*_: Any) -> None:
    """fakeredis has no INFO command, which arq's start-up log uses."""


@pytest.fixture
async def run_jobs(
    fake_redis: fakeredis.FakeAsyncRedis, config: Config, monkeypatch: pytest.MonkeyPatch
) -> RunJobs:
    monkeypatch.setattr(arq.worker, "log_redis_info", _no_info)
    sandbox_config = SandboxConfig(latency_s=0.02, token="unit-token", retry_after_s=0)
    app = create_app(sandbox_config)

    async def run(*jobs: tuple[str, dict[str, Any]], faults: dict[str, Any] | None = None,
                  **enqueue: Any) -> list[JobRecord]:  # fmt: skip
        if faults:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
            ) as control:
                (await control.post("/sandbox/faults", json=faults)).raise_for_status()
        producer = Producer(config=config, redis=fake_redis)
        queued = [await producer.enqueue(model, data, **enqueue) for model, data in jobs]
        settings = build_settings(ENV)
        kwargs = arq.worker.get_kwargs(settings)
        kwargs.pop("redis_settings")
        worker = arq.worker.Worker(
            **kwargs,
            redis_pool=ArqRedis(pool_or_conn=fake_redis.connection_pool),
            burst=True,
            handle_signals=False,
            ctx={"http_transport": httpx.ASGITransport(app=app), "configure_logging": False},
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        records = [await producer.get(job.id) for job in queued]
        assert all(r is not None for r in records)
        return [r for r in records if r is not None]

    run.app = app  # type: ignore[attr-defined]
    return run


def stats(run_jobs: RunJobs) -> dict[str, int]:
    sandbox = run_jobs.app.state.sandbox  # type: ignore[attr-defined]
    return dict(sandbox.store.stats(sandbox.clock()))


async def test_success_stores_output_and_prediction_id(run_jobs: RunJobs) -> None:
    [record] = await run_jobs(("sandbox/echo", {"prompt": "hi", "n": [1, 2]}))
    assert record.state is JobState.SUCCEEDED
    assert record.output == {"prompt": "hi", "n": [1, 2]}
    assert record.prediction_id
    assert record.attempts == 1
    assert record.errors == []


async def test_throttled_then_success(run_jobs: RunJobs) -> None:
    [record] = await run_jobs(
        ("sandbox/echo", {}), faults={"queue": [{"on": "create", "fault": "throttle"}]}
    )
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 2
    assert [e.kind for e in record.errors] == [ErrorKind.THROTTLED]


async def test_exhausted_attempts_keep_every_error(run_jobs: RunJobs) -> None:
    faults = {"queue": [{"on": "create", "fault": "error"}] * 3}
    [record] = await run_jobs(("sandbox/echo", {}), faults=faults, max_attempts=3)
    assert record.state is JobState.FAILED
    assert record.attempts == 3
    assert [e.attempt for e in record.errors] == [1, 2, 3]
    assert all(e.kind is ErrorKind.TRANSIENT for e in record.errors)
    assert record.error == record.errors[-1]


async def test_permanent_errors_are_not_retried(run_jobs: RunJobs) -> None:
    failed, invalid = await run_jobs(
        ("sandbox/fail", {"message": "NSFW content detected"}), ("sandbox/sleep", {})
    )
    assert failed.state is JobState.FAILED
    assert failed.attempts == 1
    assert failed.error is not None
    assert "NSFW content detected" in failed.error.message
    assert invalid.state is JobState.FAILED
    assert invalid.attempts == 1
    assert invalid.error is not None
    assert invalid.error.status_code == 422


async def test_a_bad_token_is_a_configuration_error(
    run_jobs: RunJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ENV, "REPLICATE_API_TOKEN", "wrong-token")
    [record] = await run_jobs(("sandbox/echo", {}))
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.kind is ErrorKind.CONFIG
    assert "wrong-token" not in record.model_dump_json()


async def test_a_canceled_job_never_runs(
    run_jobs: RunJobs, fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    producer = Producer(config=config, redis=fake_redis)
    job = await producer.enqueue("sandbox/echo", {"never": True})
    canceled = await producer.cancel(job.id)
    assert canceled.state is JobState.CANCELED
    await run_jobs()
    record = await producer.get(job.id)
    assert record is not None
    assert record.state is JobState.CANCELED
    assert record.attempts == 0
    assert stats(run_jobs)["created"] == 0
