"""The hard paths of a job, in-process and in milliseconds (tests/unit/conftest.py's workers):
a deadline, a user's cancel of a running job, a stale attempt fenced out, a lost create adopted,
a SIGTERM-style hand-over, a poison pill. Each fails with its mechanism turned off; the
integration tier repeats them with real processes.
"""

from __future__ import annotations

import signal

from devkit.wait import eventually
from producer import arq_wire, keys
from producer.models import ErrorKind, JobState
from tests.unit.conftest import InProcessWorkers


async def test_a_deadline_cancels_the_prediction_and_retries(workers: InProcessWorkers) -> None:
    [record] = await workers.run(
        ("sandbox/sleep", {"seconds": 60}), max_attempts=2, attempt_timeout_s=0.1
    )
    assert record.state is JobState.FAILED
    assert [e.kind for e in record.errors] == [ErrorKind.TIMEOUT] * 2
    assert record.errors[0].retry_in_s is not None  # the first was retried, with backoff
    assert len({e.prediction_id for e in record.errors}) == 2
    stats = workers.stats()
    assert (stats["created"], stats["canceled"]) == (2, 2)


async def test_a_users_cancel_stops_a_running_job_and_its_prediction(
    workers: InProcessWorkers,
) -> None:
    async with workers.running(PREDQ_LEASE_S="1"):
        job = await workers.producer.enqueue("sandbox/sleep", {"seconds": 60})
        await workers.record_when(job.id, lambda r: r.prediction_id)
        await workers.producer.cancel(job.id)
        # The lease renewal (every lease_s / 3) sees the cancel and stops the attempt.
        await eventually(lambda: workers.stats()["canceled"] == 1, timeout_s=3, what="cancel")
    record = await workers.producer.get(job.id)
    assert record is not None
    assert record.state is JobState.CANCELED
    assert record.output is None


async def test_a_stale_attempt_is_fenced_out(workers: InProcessWorkers) -> None:
    async with workers.running(PREDQ_LEASE_S="30") as worker:
        job = await workers.producer.enqueue("sandbox/sleep", {"seconds": 0.3})
        await workers.record_when(job.id, lambda r: r.prediction_id)
        # Another worker takes the job over (as after a lapsed lease): a new run token.
        takeover, run = await workers.store.start(job.id)
        assert takeover.ok
        # The first attempt's success is refused and its arq run handed back, not finished.
        await eventually(lambda: worker.jobs_retried >= 1, timeout_s=5, what="the hand-back")
        record = await workers.producer.get(job.id)
        assert record is not None
        assert (record.state, record.output) == (JobState.RUNNING, None)
        assert await workers.redis.hget(keys.job(job.id), "run") == run.encode()
        assert await workers.redis.zscore(workers.config.queue_name, job.id) is not None
        assert await workers.redis.exists(arq_wire.job_key(job.id))


async def test_a_lost_create_is_adopted_not_paid_twice(workers: InProcessWorkers) -> None:
    await workers.faults(queue=[{"on": "create", "fault": "lost"}])
    [record] = await workers.run(("sandbox/echo", {"order": 77}))
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 2
    assert record.errors[0].status_code == 502
    stats = workers.stats()
    assert (stats["lost_creates"], stats["created"]) == (1, 1)


async def test_sigterm_hands_a_running_job_over_to_the_next_worker(
    workers: InProcessWorkers,
) -> None:
    async with workers.running(PREDQ_SHUTDOWN_GRACE_S="0") as leaving:
        job = await workers.producer.enqueue("sandbox/sleep", {"seconds": 0.5})
        running = await workers.record_when(job.id, lambda r: r.prediction_id)
        leaving.handle_sig_wait_for_completion(signal.SIGTERM)
        handed = await workers.record_when(job.id, lambda r: r.state is JobState.QUEUED)
    assert handed.prediction_id == running.prediction_id
    async with workers.running():
        record = await workers.record_when(job.id, lambda r: r.is_final)
    assert record.state is JobState.SUCCEEDED
    assert (record.attempts, record.recoveries, record.errors) == (1, 0, [])
    assert record.prediction_id == running.prediction_id
    assert workers.stats()["created"] == 1


async def test_a_job_that_keeps_killing_workers_is_a_poison_pill(
    workers: InProcessWorkers,
) -> None:
    job = await workers.producer.enqueue("sandbox/echo", {})
    for _ in range(4):  # claimed once, then taken over three times from "dead" workers
        await workers.store.start(job.id)
    await workers.run(env={"PREDQ_MAX_RECOVERIES": "3"})
    record = await workers.record_when(job.id, lambda r: r.is_final)
    assert record.state is JobState.FAILED
    assert record.error is not None
    assert record.error.kind is ErrorKind.CRASHED
    assert "poison pill" in record.error.message
    assert workers.stats()["created"] == 0
