"""worker/claim.py: arq's claim for a poll's jobs in one Lua call, and the worker that uses it."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis.exceptions

from producer import arq_wire
from producer.models import JobState
from tests.unit.conftest import InProcessWorkers
from worker.claim import Claims

NOW_MS = 1_800_000_000_000
TTL_MS = 60_000


async def _queue(redis: fakeredis.FakeAsyncRedis, **scores: int) -> Claims:
    if scores:
        await redis.zadd("q", scores)
    return Claims(redis, "q", "w1")


async def test_claims_due_unclaimed_jobs_in_order_with_arqs_key_and_ttl(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    claims = await _queue(fake_redis, a=NOW_MS - 5, taken=NOW_MS - 4, later=NOW_MS + 1, e=NOW_MS)
    await fake_redis.set(arq_wire.in_progress_key("taken"), "1")
    claimed = await claims.claim_due(
        ["a", "taken", "later", "gone", "e"], limit=10, now_ms=NOW_MS, ttl_ms=TTL_MS
    )
    assert claimed == [("a", NOW_MS - 5), ("e", NOW_MS)]
    for job_id in ("a", "e"):
        ttl = await fake_redis.pttl(arq_wire.in_progress_key(job_id))
        assert TTL_MS - 1_000 < ttl <= TTL_MS
        assert await fake_redis.get(arq_wire.in_progress_key(job_id)) == b"w1"  # whose claim
    for job_id in ("later", "gone"):
        assert not await fake_redis.exists(arq_wire.in_progress_key(job_id))
    assert await fake_redis.pttl(arq_wire.in_progress_key("taken")) == -1  # untouched


async def test_claims_at_most_the_free_slots(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    claims = await _queue(fake_redis, a=1, b=2, c=3)
    claimed = await claims.claim_due(["a", "b", "c"], limit=2, now_ms=NOW_MS, ttl_ms=TTL_MS)
    assert [job_id for job_id, _ in claimed] == ["a", "b"]
    assert not await fake_redis.exists(arq_wire.in_progress_key("c"))
    assert await claims.claim_due(["a"], limit=0, now_ms=NOW_MS, ttl_ms=TTL_MS) == []


async def test_a_job_is_claimed_once_whoever_asks(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    first = await _queue(fake_redis, a=1, b=2)
    second = Claims(fake_redis, "q", "w2")  # another worker's
    assert len(await first.claim_due(["a", "b"], limit=5, now_ms=NOW_MS, ttl_ms=TTL_MS)) == 2
    assert await second.claim_due(["b", "a"], limit=5, now_ms=NOW_MS, ttl_ms=TTL_MS) == []


async def test_a_worker_runs_no_more_jobs_at_once_than_its_concurrency(
    workers: InProcessWorkers,
) -> None:
    jobs = [await workers.producer.enqueue("sandbox/sleep", {"seconds": 0.05}) for _ in range(6)]
    worker = workers.make(burst=True, PREDQ_CONCURRENCY="2")
    running, peak = 0, 0
    run_job = worker.run_job

    async def counted(job_id: str, score: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await run_job(job_id, score)
        finally:
            running -= 1

    worker.run_job = counted  # type: ignore[method-assign]
    try:
        await worker.main()
    finally:
        await worker.close()
    assert peak == 2
    records = await workers.producer.get_many([job.id for job in jobs])
    assert [r.state if r else None for r in records] == [JobState.SUCCEEDED] * 6


async def test_a_claim_that_fails_takes_no_slot(
    workers: InProcessWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    await workers.producer.enqueue("sandbox/echo", {})
    worker = workers.make(burst=False, PREDQ_CONCURRENCY="2")

    async def unreachable(*_: Any, **__: Any) -> None:
        raise redis.exceptions.ConnectionError("Redis went away mid-claim")

    monkeypatch.setattr(Claims, "claim_due", unreachable)
    worker.ctx["claims"] = Claims(workers.redis, workers.config.queue_name, "w1")  # (on_startup's)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await worker.start_jobs([b"any"])
        assert worker.job_counter == 0
        assert worker.sem._value == worker.max_jobs + 1  # every slot free
    finally:
        await worker.close()
