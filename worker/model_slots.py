"""Per-model concurrency caps: at most N predictions of a model in flight across all workers.

Each capped model has a sorted set ``predq:model-slots:{owner/name}`` of the jobs holding a slot,
scored by when the slot lapses. A worker takes a slot (one Lua call: drop lapsed slots, then add
this job if there is room) before it claims a job of a capped model, renews it while the job runs
(every ``lease_s / 3``, like the job's lease) and gives it back when the attempt ends. A worker
that dies stops renewing, so its slots lapse after ``lease_s`` and are reused.

A job that finds no free slot is not started: it goes back to the queue, due again shortly, and
counts no attempt.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from producer import clock, keys
from producer.models import split_model_ref

log = structlog.get_logger(__name__)

# KEYS[1] the model's slot set   ARGV[1] now (ms)   ARGV[2] lapses at (ms)   ARGV[3] cap
# ARGV[4] job id   ARGV[5] the set's TTL (ms). Returns 1 if the job holds a slot now, else 0.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


def model_name(model_ref: str) -> str:
    """``owner/name`` of a model reference (caps apply to every version of a model)."""
    parts = split_model_ref(model_ref)
    return parts[0] if parts else model_ref


class ModelSlots:
    """Takes, renews and gives back per-model slots for this worker's jobs."""

    def __init__(self, redis: aioredis.Redis, caps: dict[str, int], *, lease_s: float) -> None:
        self._redis = redis
        self._caps = caps
        self._lease_ms = int(lease_s * 1000)
        self._held: dict[str, str] = {}  # job id -> model name
        self._take = redis.register_script(_TAKE)

    def cap(self, model_ref: str) -> int | None:
        """The cap on ``model_ref``'s model, or None when it is not capped."""
        return self._caps.get(model_name(model_ref))

    async def take(self, model_ref: str, job_id: str) -> bool:
        """Take a slot of ``model_ref``'s model for ``job_id``; False when all are in use."""
        cap = self.cap(model_ref)
        if cap is None:
            return True
        name = model_name(model_ref)
        now_ms = clock.now_ms()
        taken = await self._take(
            keys=[keys.model_slots(name)],
            args=[now_ms, now_ms + self._lease_ms, cap, job_id, 2 * self._lease_ms],
        )
        if taken:
            self._held[job_id] = name
        return bool(taken)

    async def give_back(self, job_id: str) -> None:
        name = self._held.pop(job_id, None)
        if name is not None:
            await self._redis.zrem(keys.model_slots(name), job_id)

    async def keep_renewing(self) -> None:
        """Renew every held slot each ``lease_s / 3`` until cancelled; Redis errors are logged."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            if not self._held:
                continue
            lapses_ms = clock.now_ms() + self._lease_ms
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for job_id, name in list(self._held.items()):
                        pipe.zadd(keys.model_slots(name), {job_id: lapses_ms}, xx=True)
                        pipe.pexpire(keys.model_slots(name), 2 * self._lease_ms)
                    await pipe.execute()
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("model_slots.renew_failed", error=type(exc).__name__)
