"""A rate limiter shared by every worker process, in front of every request made to Replicate.

Replicate allows 600 prediction creates per minute and 3,000 other requests per minute per account
(short bursts above that are allowed). Each budget is a GCRA bucket in Redis (one key holding the
"theoretical arrival time"): a request reserves the next free slot in one atomic Lua call and
sleeps until it, so the requests of all workers together never exceed the rate, whatever their
number, and waiting requests are served in the order they asked.

A 429 from Replicate pauses its budget for every worker at once (``predq:ratelimit:{kind}:pause``,
for Retry-After or a default), instead of each worker discovering the limit alone.

Polling stays within budget by the same means: the replicate client polls each prediction every
``poll_interval_s``, and when that adds up to more than the budget, each poll waits for its slot,
so the effective interval per prediction stretches to (predictions in flight / budget).

If Redis cannot be reached, requests go out unlimited (and Replicate's own 429s still apply):
a Redis blip must not fail predictions that are otherwise fine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from producer import clock, keys
from worker.config import Budget, Kind

log = structlog.get_logger(__name__)

# KEYS[1] the bucket (TAT, ms)   KEYS[2] the bucket's pause flag
# ARGV[1] now (ms)   ARGV[2] emission interval (ms)   ARGV[3] burst tolerance (ms)
# ARGV[4] how many requests (one after the other)
# Returns how long each request must wait (ms) before sending, in order; their slots are reserved.
_RESERVE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local pause = redis.call('PTTL', KEYS[2])
local waits = {}
for i = 1, tonumber(ARGV[4]) do
  local at = math.max(now, tat - tolerance)
  if pause > 0 then at = math.max(at, now + pause) end
  tat = math.max(tat, at) + interval
  waits[i] = at - now
end
redis.call('SET', KEYS[1], tat, 'PX', math.ceil(tat - now + tolerance) + 1000)
return waits
"""


class RateLimiter:
    """Reserves send times for requests to Replicate, shared by all workers through Redis.

    The requests of one worker that ask in the same turn of its event loop (a poll's worth of
    jobs starting together) reserve their slots in one Lua call, in the order they asked: the
    same slots, one round trip instead of one each.
    """

    def __init__(self, redis: aioredis.Redis, budgets: dict[Kind, Budget]) -> None:
        self._redis = redis
        self._budgets = budgets
        self._reserve = redis.register_script(_RESERVE)
        #: Per budget, the requests waiting for the next reservation call, and that call's task.
        self._asking: dict[Kind, list[asyncio.Future[float]]] = {}
        self._calls: set[asyncio.Task[None]] = set()

    async def acquire(
        self, kind: Kind, on_wait: Callable[[float], Awaitable[None]] | None = None
    ) -> float:
        """Wait for this request's slot in ``kind``'s budget; returns the seconds waited.
        ``on_wait(seconds)`` is awaited first when there is a wait (the job says so)."""
        budget = self._budgets.get(kind)
        if budget is None:
            return 0.0
        loop = asyncio.get_running_loop()
        slot: asyncio.Future[float] = loop.create_future()
        asking = self._asking.setdefault(kind, [])
        asking.append(slot)
        if len(asking) == 1:  # the first to ask this turn has the call made for all who join it
            loop.call_soon(self._call, kind, budget)
        wait_s = await slot
        if wait_s > 0:
            if on_wait is not None:
                await on_wait(wait_s)
            await asyncio.sleep(wait_s)
        return wait_s

    def _call(self, kind: Kind, budget: Budget) -> None:
        """Start the reservation call for the requests that asked for ``kind`` this turn."""
        slots = self._asking.pop(kind, [])
        call = asyncio.create_task(self._reserve_for(kind, budget, slots))
        self._calls.add(call)
        call.add_done_callback(lambda done: self._settle(done, slots))

    async def _reserve_for(
        self, kind: Kind, budget: Budget, slots: list[asyncio.Future[float]]
    ) -> None:
        try:
            waits_ms = await self._reserve(
                keys=[keys.rate_bucket(kind), keys.rate_pause(kind)],
                args=[
                    clock.now_ms(),
                    budget.interval_ms,
                    budget.burst * budget.interval_ms,
                    len(slots),
                ],
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("ratelimit.unavailable", kind=kind, error=type(exc).__name__)
            waits_ms = [0] * len(slots)  # unlimited: a Redis blip must not fail predictions
        for slot, wait_ms in zip(slots, waits_ms, strict=True):
            if not slot.done():  # (a request canceled while it asked: its slot goes unused)
                slot.set_result(max(0.0, float(wait_ms) / 1000))

    def _settle(self, call: asyncio.Task[None], slots: list[asyncio.Future[float]]) -> None:
        """No request waits for a call that ended without answering it: canceled (the worker is
        stopping), or failed (a bug, raised to each of them)."""
        self._calls.discard(call)
        error = None if call.cancelled() else call.exception()
        for slot in slots:
            if slot.done():
                continue
            if error is None:
                slot.cancel()
            else:
                slot.set_exception(error)

    async def pause(self, kind: Kind, seconds: float) -> None:
        """Hold every worker's ``kind`` requests for ``seconds`` (extends, never shortens; 0
        holds nothing)."""
        pause_ms = int(seconds * 1000)
        if pause_ms <= 0:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(keys.rate_pause(kind), 1, px=pause_ms, nx=True)
                pipe.pexpire(keys.rate_pause(kind), pause_ms, gt=True)
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("ratelimit.unavailable", kind=kind, error=type(exc).__name__)
            return
        log.warning("ratelimit.paused", kind=kind, seconds=round(seconds, 3))
