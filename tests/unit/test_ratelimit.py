"""worker/ratelimit.py: a worker's requests that ask together reserve their slots in one call."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import pytest
import redis.exceptions

from worker.config import Budget
from worker.ratelimit import RateLimiter

#: 60,000 a minute: a slot every millisecond (times the safety factor), so tests wait little.
FAST = Budget(60_000)


def counted(limiter: RateLimiter) -> list[int]:
    """The number of requests each reservation call was made for."""
    calls: list[int] = []
    reserve = limiter._reserve

    async def counting(*, keys: list[str], args: list[Any]) -> Any:
        calls.append(args[3])
        return await reserve(keys=keys, args=args)

    limiter._reserve = counting  # type: ignore[assignment]
    return calls


async def test_requests_asking_together_reserve_consecutive_slots_in_one_call(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    budget = Budget(6_000)  # a slot every 10 ms
    limiter = RateLimiter(fake_redis, {"create": budget})
    calls = counted(limiter)
    together = [asyncio.create_task(limiter.acquire("create")) for _ in range(5)]
    first_wait = await together[0]  # the five's call is answered (the first slot is now)
    later = await limiter.acquire("create")  # asked afterwards: behind all five in the bucket
    waits = [first_wait, *await asyncio.gather(*together[1:])]
    assert calls == [5, 1]
    step = budget.interval_ms / 1000
    assert waits == pytest.approx([0, step, 2 * step, 3 * step, 4 * step], abs=0.002)
    assert 4 * step < later <= 5 * step + 0.001


async def test_each_budget_has_its_own_call(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    limiter = RateLimiter(fake_redis, {"create": FAST, "other": FAST})
    calls = counted(limiter)
    await asyncio.gather(*(limiter.acquire(kind) for kind in ("create", "other", "create")))  # type: ignore[arg-type]
    assert sorted(calls) == [1, 2]


async def test_a_request_canceled_while_asking_leaves_the_others_their_slots(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    limiter = RateLimiter(fake_redis, {"create": FAST})
    first = asyncio.create_task(limiter.acquire("create"))
    second = asyncio.create_task(limiter.acquire("create"))
    await asyncio.sleep(0)  # both asked
    first.cancel()
    assert await second >= 0
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_without_redis_requests_go_out_unlimited(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    limiter = RateLimiter(fake_redis, {"create": Budget(1)})  # one a minute, were Redis up

    async def down(**_: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis is restarting")

    limiter._reserve = down  # type: ignore[assignment]
    waits = await asyncio.wait_for(
        asyncio.gather(*(limiter.acquire("create") for _ in range(3))), timeout=1
    )
    assert waits == [0.0, 0.0, 0.0]


async def test_a_call_cut_short_leaves_no_request_waiting_and_the_next_ones_served(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    limiter = RateLimiter(fake_redis, {"create": FAST})
    reserve = limiter._reserve

    async def hanging(**_: Any) -> Any:
        await asyncio.Event().wait()

    limiter._reserve = hanging  # type: ignore[assignment]
    asking = [asyncio.create_task(limiter.acquire("create")) for _ in range(2)]
    await asyncio.sleep(0.01)
    for call in list(limiter._calls):
        call.cancel()  # as a worker stopping cancels its tasks
    for request in asking:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(request, timeout=1)
    limiter._reserve = reserve  # type: ignore[method-assign]
    assert await asyncio.wait_for(limiter.acquire("create"), timeout=1) >= 0.0
