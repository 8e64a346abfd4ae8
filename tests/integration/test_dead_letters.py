"""Failed jobs are dead letters: listed with their last error, re-driven under the same id."""

from __future__ import annotations

import asyncio
import time

import pytest

from producer import JobNotFound, JobNotRetryable
from producer.client import Producer
from producer.config import Config
from producer.models import JobState
from tests.integration.conftest import Sandbox, Workers, predq

pytestmark = pytest.mark.integration


async def test_retry_redrives_a_failed_job_with_history_kept(
    producer: Producer, workers: Workers, sandbox: Sandbox, redis_url: str
) -> None:
    sandbox.faults(queue=[{"on": "create", "fault": "error", "status": 500}] * 2)
    workers.start()
    job = await producer.enqueue("sandbox/echo", {"x": 1}, max_attempts=2)
    failed = await producer.wait(job.id, timeout_s=30)
    assert failed.state is JobState.FAILED
    assert len(failed.errors) == 2

    listed = predq(redis_url, "failed")
    assert listed.returncode == 0
    assert job.id in listed.stdout and "Replicate answered 500" in listed.stdout

    retried = await producer.retry(job.id)
    assert retried.id == job.id
    assert retried.state is JobState.QUEUED
    done = await producer.wait(job.id, timeout_s=30)
    assert done.state is JobState.SUCCEEDED
    assert done.attempts == 3 and done.redrives == 1
    assert len(done.errors) == 2  # the first drive's errors are kept
    assert await producer.failed() == []

    with pytest.raises(JobNotRetryable, match="only failed jobs"):
        await producer.retry(job.id)
    with pytest.raises(JobNotFound):
        await producer.retry("missing")


async def test_retry_all_failed_from_the_cli(
    producer: Producer, workers: Workers, sandbox: Sandbox, redis_url: str
) -> None:
    sandbox.faults(queue=[{"on": "create", "fault": "error", "status": 500}] * 3)
    workers.start()
    jobs = [await producer.enqueue("sandbox/echo", {"n": n}, max_attempts=1) for n in range(3)]
    for job in jobs:
        assert (await producer.wait(job.id, timeout_s=30)).state is JobState.FAILED
    result = predq(redis_url, "retry", "--all-failed")
    assert result.returncode == 0
    assert "retried 3 failed jobs" in result.stderr
    done = [await producer.wait(job.id, timeout_s=30) for job in jobs]
    assert {r.state for r in done} == {JobState.SUCCEEDED}
    not_failed = predq(redis_url, "retry", jobs[0].id)
    assert not_failed.returncode == 1
    assert "only failed jobs" in not_failed.stderr


async def test_an_idempotency_key_expires_with_its_window(redis_url: str) -> None:
    config = Config(redis_url=redis_url, idempotency_window_s=1)
    async with Producer(config=config) as producer:
        first = await producer.enqueue("sandbox/echo", {}, idempotency_key="window")
        assert (await producer.enqueue("sandbox/echo", {}, idempotency_key="window")).id == first.id
        deadline = time.monotonic() + 10
        while True:
            again = await producer.enqueue("sandbox/echo", {}, idempotency_key="window")
            if again.id != first.id:
                break
            assert time.monotonic() < deadline, "the key outlived its window"
            await asyncio.sleep(0.1)
        assert again.state is JobState.QUEUED
        assert (await producer.get(first.id)) is not None  # the old job is still there
