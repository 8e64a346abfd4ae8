"""Workers that die, shut down, or have their jobs canceled under them, as real processes.

Each test would fail without the mechanism it names: the lease (recovery within seconds instead of
arq's "longest timeout + 10 s"), the poison-pill limit, the hand-over on SIGTERM, the cancel watch.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest
import redis

from devkit.wait import eventually
from producer import keys
from producer.client import Producer
from producer.models import ErrorKind, JobState
from tests.integration.conftest import Sandbox, Workers, record_when

pytestmark = pytest.mark.integration


async def test_a_killed_workers_jobs_resume_their_predictions_elsewhere(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    [first] = workers.start(PREDQ_LEASE_S="3")
    jobs = [
        await producer.enqueue("sandbox/sleep", {"seconds": 4, "n": n}, attempt_timeout_s=600)
        for n in range(3)
    ]
    for job in jobs:
        await record_when(
            producer, job.id, lambda r: r.state is JobState.RUNNING and r.prediction_id
        )
    workers.start(PREDQ_LEASE_S="3")
    first.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    # arq alone would keep these claimed for its longest function timeout + 10 s (a day here).
    done = [await producer.wait(job.id, timeout_s=30) for job in jobs]
    recovery_s = time.monotonic() - killed_at
    for record in done:
        assert record.state is JobState.SUCCEEDED
        assert record.recoveries == 1
        assert record.attempts == 1
    assert sandbox.stats()["created"] == len(jobs)  # resumed, never paid twice
    print(f"recovered {len(jobs)} jobs {recovery_s:.1f} s after the kill")


async def test_a_job_that_kills_every_worker_is_failed_as_a_poison_pill(
    producer: Producer, workers: Workers
) -> None:
    env = {"PREDQ_LEASE_S": "1", "PREDQ_MAX_RECOVERIES": "2"}
    job = await producer.enqueue("sandbox/sleep", {"seconds": 60})
    for recoveries in range(3):
        [worker] = workers.start(**env)
        await record_when(
            producer,
            job.id,
            lambda r, n=recoveries: r.state is JobState.RUNNING and r.recoveries == n,
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    workers.start(**env)
    record = await record_when(producer, job.id, lambda r: r.is_final)
    assert record.state is JobState.FAILED
    assert record.error is not None
    assert record.error.kind is ErrorKind.CRASHED
    assert "poison pill" in record.error.message
    assert record.recoveries == 3


async def test_sigterm_hands_running_jobs_over_without_counting_or_recreating(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    [leaving] = workers.start(PREDQ_SHUTDOWN_GRACE_S="1")
    long_job = await producer.enqueue("sandbox/sleep", {"seconds": 5})
    await record_when(producer, long_job.id, lambda r: r.prediction_id is not None)
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(timeout=20) == 0
    handed = await producer.get(long_job.id)
    assert handed is not None
    assert handed.state is JobState.QUEUED
    workers.start()
    record = await producer.wait(long_job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert (record.attempts, record.recoveries, record.errors) == (1, 0, [])
    assert record.prediction_id == handed.prediction_id
    assert sandbox.stats()["created"] == 1


async def test_sigterm_lets_short_jobs_finish_within_the_grace_period(
    producer: Producer, workers: Workers
) -> None:
    [leaving] = workers.start(PREDQ_SHUTDOWN_GRACE_S="10")
    job = await producer.enqueue("sandbox/sleep", {"seconds": 1})
    await record_when(producer, job.id, lambda r: r.prediction_id is not None)
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(timeout=20) == 0
    record = await producer.get(job.id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED


async def test_canceling_a_running_job_stops_it_and_its_prediction(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start(PREDQ_LEASE_S="3")
    job = await producer.enqueue("sandbox/sleep", {"seconds": 60})
    await record_when(producer, job.id, lambda r: r.prediction_id is not None)
    canceled = await producer.cancel(job.id)
    assert canceled.state is JobState.CANCELED
    # noticed within lease_s / 3 (1 s) + a request
    await eventually(
        lambda: sandbox.stats()["canceled"] >= 1,
        timeout_s=4,
        what="the prediction canceled on Replicate",
    )
    record = await producer.get(job.id)
    assert record is not None
    assert record.state is JobState.CANCELED
    assert record.output is None


async def test_cancel_racing_success_has_one_final_state_everywhere(
    producer: Producer, workers: Workers, redis_url: str
) -> None:
    workers.start(2)
    rng = random.Random(3)
    jobs = [await producer.enqueue("sandbox/sleep", {"seconds": 0.3, "n": n}) for n in range(40)]

    async def cancel_later(job_id: str) -> None:
        await asyncio.sleep(rng.uniform(0.2, 0.9))
        await producer.cancel(job_id)

    await asyncio.gather(*(cancel_later(job.id) for job in jobs))
    done = await asyncio.gather(*(producer.wait(job.id, timeout_s=30) for job in jobs))
    client = redis.Redis.from_url(redis_url)
    try:
        for record in done:
            assert record.state in (JobState.SUCCEEDED, JobState.CANCELED)
            assert (record.output is not None) == (record.state is JobState.SUCCEEDED)
            member_of = [s for s in JobState if client.zscore(keys.state_index(s), record.id)]
            assert member_of == [record.state]
    finally:
        client.close()
    outcomes = {r.state for r in done}
    assert outcomes == {JobState.SUCCEEDED, JobState.CANCELED}  # the race really happened


async def test_a_lost_create_response_does_not_create_a_second_prediction(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(queue=[{"on": "create", "fault": "lost"}])
    workers.start()
    job = await producer.enqueue("sandbox/echo", {"order": 991})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 2
    assert record.errors[0].status_code == 502
    stats = sandbox.stats()
    assert stats["lost_creates"] == 1
    assert stats["created"] == 1  # the retry found the first prediction instead of paying twice


async def test_a_timed_out_create_is_found_too(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(queue=[{"on": "create", "fault": "slow"}], slow_s=4)
    workers.start(PREDQ_CREATE_TIMEOUT_S="1")
    job = await producer.enqueue("sandbox/echo", {"order": 992})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 2
    created = sandbox.stats()["created"]
    assert created == 1, f"{created} predictions for one job"


async def test_canceling_a_handed_over_job_cancels_its_prediction(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    [leaving] = workers.start(PREDQ_SHUTDOWN_GRACE_S="0")
    job = await producer.enqueue("sandbox/sleep", {"seconds": 60})
    await record_when(producer, job.id, lambda r: r.prediction_id is not None)
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(timeout=20) == 0
    assert (await producer.cancel(job.id)).state is JobState.CANCELED
    assert sandbox.stats()["canceled"] == 0  # nobody runs the job: its prediction still runs
    workers.start()  # the next delivery finds the job canceled and cancels its prediction
    await eventually(
        lambda: sandbox.stats()["canceled"] >= 1,
        timeout_s=15,
        what="the handed-over prediction canceled",
    )


async def test_a_worker_killed_mid_create_does_not_cost_a_second_prediction(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(queue=[{"on": "create", "fault": "slow"}], slow_s=30)
    [doomed] = workers.start(PREDQ_LEASE_S="2")
    job = await producer.enqueue("sandbox/echo", {"order": 993})
    # the create reached Replicate; its answer is held
    await eventually(lambda: sandbox.stats()["created"] >= 1, timeout_s=15, what="the create")
    doomed.send_signal(signal.SIGKILL)
    workers.start(PREDQ_LEASE_S="2")
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert record.recoveries == 1
    assert sandbox.stats()["created"] == 1  # the recovering worker found the prediction
