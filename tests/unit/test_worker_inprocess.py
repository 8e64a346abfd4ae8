"""The worker stepped in-process (tests/unit/conftest.py): a job's ordinary paths, one by one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devkit.wait import eventually
from producer.models import ErrorKind, JobState
from tests.unit.conftest import InProcessWorkers


async def test_success_stores_output_and_prediction_id(workers: InProcessWorkers) -> None:
    [record] = await workers.run(("sandbox/echo", {"prompt": "hi", "n": [1, 2]}))
    assert record.state is JobState.SUCCEEDED
    assert record.output == {"prompt": "hi", "n": [1, 2]}
    assert record.prediction_id
    assert record.attempts == 1
    assert record.errors == []


async def test_throttled_then_success(workers: InProcessWorkers) -> None:
    await workers.faults(queue=[{"on": "create", "fault": "throttle"}])
    [record] = await workers.run(("sandbox/echo", {}))
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 2
    assert [e.kind for e in record.errors] == [ErrorKind.THROTTLED]


async def test_exhausted_attempts_keep_every_error(workers: InProcessWorkers) -> None:
    await workers.faults(queue=[{"on": "create", "fault": "error"}] * 3)
    [record] = await workers.run(("sandbox/echo", {}), max_attempts=3)
    assert record.state is JobState.FAILED
    assert record.attempts == 3
    assert [e.attempt for e in record.errors] == [1, 2, 3]
    assert all(e.kind is ErrorKind.TRANSIENT for e in record.errors)
    assert record.error == record.errors[-1]


async def test_permanent_errors_are_not_retried(workers: InProcessWorkers) -> None:
    failed, invalid = await workers.run(
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


async def test_a_worker_with_a_bad_token_refuses_to_start(workers: InProcessWorkers) -> None:
    wrong = "r8_wrong-token-for-this-test-000"
    with pytest.raises(SystemExit) as exited:
        await workers.run(("sandbox/echo", {}), env={"REPLICATE_API_TOKEN": wrong})
    assert exited.value.code == 6
    assert workers.stats()["created"] == 0


async def test_a_bad_token_is_a_configuration_error(workers: InProcessWorkers) -> None:
    wrong = "r8_wrong-token-for-this-test-000"
    env = {"REPLICATE_API_TOKEN": wrong, "PREDQ_CHECK_TOKEN": "0"}
    [record] = await workers.run(("sandbox/echo", {}), env=env)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.kind is ErrorKind.CONFIG
    assert wrong not in record.model_dump_json()


async def test_a_canceled_job_never_runs(workers: InProcessWorkers) -> None:
    job = await workers.producer.enqueue("sandbox/echo", {"never": True})
    assert (await workers.producer.cancel(job.id)).state is JobState.CANCELED
    await workers.run()
    record = await workers.producer.get(job.id)
    assert record is not None
    assert record.state is JobState.CANCELED
    assert record.attempts == 0
    assert workers.stats()["created"] == 0


async def test_no_arq_entry_outlives_a_job_however_it_ends(workers: InProcessWorkers) -> None:
    """Jobs made final by their attempt take arq's entries with that transition (arq's finish is
    skipped for them); the others (here: canceled while queued) are finished by arq as before."""
    canceled = await workers.producer.enqueue("sandbox/echo", {"never": True})
    await workers.producer.cancel(canceled.id)
    jobs = [
        await workers.producer.enqueue(model, data)
        for model, data in [("sandbox/echo", {}), ("sandbox/fail", {"message": "no"})]
    ]

    async def no_arq_entries() -> bool:
        keys = [key async for key in workers.redis.scan_iter("arq:*")]
        return not keys and await workers.redis.zcard(workers.config.queue_name) == 0

    async with workers.running():
        for job, state in zip(jobs, [JobState.SUCCEEDED, JobState.FAILED], strict=True):
            await workers.record_when(job.id, lambda r, s=state: r.state is s)
        await eventually(no_arq_entries, timeout_s=2, what="arq's entries to go")


async def test_a_job_redriven_before_arqs_run_of_it_ended_is_not_finished_away(
    workers: InProcessWorkers,
) -> None:
    """Its failure took arq's entries, so a re-drive is accepted at once; the arq run that
    failed it then skips arq's finish, which would delete the new queue entry and payload."""
    async with workers.running() as worker:
        gate = asyncio.Event()
        finish_job = worker.finish_job

        async def held(*args: Any, **kwargs: Any) -> None:
            await gate.wait()
            await finish_job(*args, **kwargs)

        worker.finish_job = held  # type: ignore[method-assign]
        job = await workers.producer.enqueue("sandbox/fail", {"message": "once"})
        await workers.record_when(job.id, lambda r: r.state is JobState.FAILED)
        redriven = await workers.producer.retry(job.id)  # arq's finish has not run yet
        assert redriven.state is JobState.QUEUED
        worker.finish_job = finish_job  # type: ignore[method-assign]
        gate.set()
        record = await workers.record_when(job.id, lambda r: r.attempts == 2 and r.is_final)
    assert (record.state, record.redrives) == (JobState.FAILED, 1)
