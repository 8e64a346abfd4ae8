"""Leases: a running job stays claimed only while its worker keeps saying so.

arq marks a job taken with ``arq:in-progress:{id}`` whose TTL is the largest function timeout + 10 s
and is never renewed, so a SIGKILLed worker's job would wait that long (hours, for a long deadline).
Instead, while a job runs, this worker keeps both of arq's claims on it short and fresh:

- ``arq:in-progress:{id}`` gets a TTL of ``lease_s``;
- the job's score in the arq queue is moved to ``now + lease_s`` (``ZADD XX``: never re-adds a job
  arq already removed), which also keeps running jobs out of every worker's ``ZRANGEBYSCORE`` window.

Both are renewed every ``lease_s / 3``. When the worker dies, both run out together: the job is due
again and unclaimed ``lease_s`` after the last renewal, and the next worker's poll takes it.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from producer import clock, keys

log = structlog.get_logger(__name__)


class Leases:
    """The leases of the jobs this worker process is running."""

    def __init__(self, redis: aioredis.Redis, *, queue_name: str, lease_s: float) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._lease_ms = int(lease_s * 1000)
        self._held: set[str] = set()

    @property
    def renew_every_s(self) -> float:
        return self._lease_ms / 3000

    async def hold(self, job_id: str) -> None:
        """Start renewing ``job_id``'s lease, shortening arq's long claim right away."""
        self._held.add(job_id)
        await self._extend([job_id])

    def drop(self, job_id: str) -> None:
        """Stop renewing (before the job's last write, so no renewal lands after it)."""
        self._held.discard(job_id)

    async def keep_renewing(self) -> None:
        """Renew every held lease each ``renew_every_s``, until cancelled; Redis errors are logged."""
        while True:
            await asyncio.sleep(self.renew_every_s)
            if not self._held:
                continue
            try:
                await self._extend(list(self._held))
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("lease.renew_failed", jobs=len(self._held), error=type(exc).__name__)

    async def _extend(self, job_ids: list[str]) -> None:
        due_ms = clock.to_ms(clock.now()) + self._lease_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.pexpire(keys.arq_in_progress(job_id), self._lease_ms)
                pipe.zadd(self._queue_name, {job_id: due_ms}, xx=True)
            await pipe.execute()
