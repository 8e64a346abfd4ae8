"""The shared rate limiter and per-model caps, across several real worker processes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from producer.client import Producer
from producer.models import JobState
from tests.integration.conftest import Sandbox, Workers, record_when

pytestmark = pytest.mark.integration


def times(items: list[dict[str, Any]], field: str) -> list[datetime]:
    return sorted(datetime.fromisoformat(p[field].replace("Z", "+00:00")) for p in items)


async def test_creates_from_all_workers_stay_within_the_shared_rate(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start(3, PREDQ_CREATES_PER_MIN="600", PREDQ_CREATE_BURST="0")
    jobs = await producer.enqueue_many(
        [{"model": "sandbox/echo", "input": {"n": n}} for n in range(40)]
    )
    done = [await producer.wait(job.id, timeout_s=60) for job in jobs]
    assert {r.state for r in done} == {JobState.SUCCEEDED}
    created = times(sandbox.predictions(), "created_at")
    assert len(created) == 40
    # 600/min is one create slot per 100 ms: any 2 s window holds at most 20 (+1 at its edge,
    # +1 for a request that the event loop sent a little after its slot). Unlimited, the three
    # workers send all 40 within a few hundred milliseconds.
    for n, start in enumerate(created):
        in_window = [t for t in created[n:] if t - start < timedelta(seconds=2)]
        assert len(in_window) <= 22, f"{len(in_window)} creates within 2 s of {start}"
    assert created[-1] - created[0] >= timedelta(seconds=3.5)


async def test_a_429_pauses_every_worker(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(queue=[{"on": "create", "fault": "throttle"}], retry_after_s=2)
    workers.start(3, PREDQ_CREATES_PER_MIN="6000", PREDQ_REQUESTS_PER_MIN="60000")
    first = await producer.enqueue("sandbox/echo", {"first": True})
    record = await record_when(producer, first.id, lambda r: bool(r.errors), timeout_s=20)
    throttled_at = record.errors[0].at
    others = await producer.enqueue_many(
        [{"model": "sandbox/echo", "input": {"n": n}} for n in range(12)]
    )
    for job in [first, *others]:
        assert (await producer.wait(job.id, timeout_s=30)).state is JobState.SUCCEEDED
    created = times(sandbox.predictions(), "created_at")
    assert len(created) == 13
    # Whichever worker took them, no create went out during the 2 s pause.
    assert min(created) >= throttled_at + timedelta(seconds=1.9)


async def test_a_model_cap_holds_across_workers(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start(3, PREDQ_MODEL_CONCURRENCY="sandbox/sleep=2", PREDQ_LEASE_S="3")
    capped = await producer.enqueue_many(
        [{"model": "sandbox/sleep", "input": {"seconds": 0.5, "n": n}} for n in range(8)]
    )
    free = await producer.enqueue_many(
        [{"model": "sandbox/echo", "input": {"n": n}} for n in range(8)]
    )
    done = [await producer.wait(job.id, timeout_s=60) for job in [*capped, *free]]
    assert {r.state for r in done} == {JobState.SUCCEEDED}
    assert all(r.attempts == 1 for r in done)  # waiting for a slot is not an attempt
    made = sandbox.predictions()
    sleeps = [p for p in made if p["model"] == "sandbox/sleep"]
    edges = sorted(
        [(datetime.fromisoformat(p["created_at"].replace("Z", "+00:00")), 1) for p in sleeps]
        + [(datetime.fromisoformat(p["completed_at"].replace("Z", "+00:00")), -1) for p in sleeps]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2
