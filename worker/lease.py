"""Leases: a running job stays claimed only while its worker keeps saying so.

arq marks a job taken with ``arq:in-progress:{id}`` whose TTL is the largest function timeout + 10 s
and is never renewed, so a SIGKILLed worker's job would wait that long (hours, for a long deadline).
Instead, while a job runs, this worker keeps both of arq's claims on it short and fresh:

- ``arq:in-progress:{id}`` gets a TTL of ``lease_s``;
- the job's score in the arq queue is moved to ``now + lease_s`` (``ZADD XX``: never re-adds a job
  arq already removed), which also keeps running jobs out of every worker's ``ZRANGEBYSCORE`` window.

Both are renewed every ``lease_s / 3``. When the worker dies, both run out together: the job is due
again and unclaimed ``lease_s`` after the last renewal, and the next worker's poll takes it.

The same round trip reads each held job's state, so a job canceled by a producer is noticed within
``lease_s / 3`` and its attempt stopped (``Hold.on_cancel``).

Each cycle also sweeps for two kinds of orphaned jobs:

- A job whose lease ran out (its worker died) becomes due at the lease's end, behind every job
  queued before it. Recovered jobs have waited longest, so the sweep moves them to the front of the
  queue (one Lua call over the running index) instead of leaving them behind a backlog.
- Between the claim (long TTL: worker/claim.py claims a poll's jobs at once) and each job's start
  transition, which shortens it, there is a gap (milliseconds, up to the start-up of a whole
  batch): a worker killed right then leaves a job claimed for arq's whole TTL. Due jobs whose claim
  is older than two leases yet still long, which only an unshortened claim can be, get that claim
  deleted so the job is picked up again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from producer import arq_wire, clock, keys
from producer.models import JobState
from producer.records import as_text

log = structlog.get_logger(__name__)
_CANCELED = JobState.CANCELED.value.encode()

# KEYS[1] predq:state:running   KEYS[2] the arq queue
# ARGV[1] now (ms)   ARGV[2] arq's in-progress prefix   ARGV[3] head score
# Returns the ids moved: running jobs that are due again and no longer claimed by anyone.
_FRONT_RECOVERED = """
local moved = {}
local now = tonumber(ARGV[1])
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local score = redis.call('ZSCORE', KEYS[2], id)
  if score and tonumber(score) <= now and tonumber(score) > tonumber(ARGV[3])
      and redis.call('EXISTS', ARGV[2] .. id) == 0 then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[3], id)
    moved[#moved + 1] = id
  end
end
return moved
"""


def _nothing() -> None:
    pass


class Hold:
    """One run's hold on a job's lease: renewed by ``Leases`` until ``release``.

    A process does not claim a job it is still running (worker/arq_patches.py), but a job it ran
    may come back to it later (a re-drive); each run gets a Hold of its own, and an older run's
    ``release`` does not end a newer run's lease.
    """

    def __init__(self, leases: Leases, job_id: str) -> None:
        self._leases = leases
        self.job_id = job_id
        self._on_cancel: Callable[[], None] = _nothing

    @property
    def held(self) -> bool:
        return self._leases._held.get(self.job_id) is self

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once) when a renewal finds the job canceled."""
        self._on_cancel = callback

    def release(self) -> None:
        """Stop renewing (idempotent). Called before a write that sets when the job is due
        again, so that no renewal moves that time, and when the run ends."""
        if self.held:
            del self._leases._held[self.job_id]

    def _canceled(self) -> None:
        self.release()
        self._on_cancel()


class Leases:
    """The leases of the jobs this worker process is running."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        queue_name: str,
        lease_s: float,
        arq_claim_s: float = arq_wire.claim_ttl_s(),
    ) -> None:
        """``arq_claim_s`` is the TTL arq gives a fresh claim (its in-progress timeout)."""
        self._redis = redis
        self._queue_name = queue_name
        self._lease_ms = int(lease_s * 1000)
        self._arq_claim_ms = int(arq_claim_s * 1000)
        #: The current hold per job.
        self._held: dict[str, Hold] = {}
        self._front_recovered = redis.register_script(_FRONT_RECOVERED)

    @property
    def renew_every_s(self) -> float:
        return self._lease_ms / 3000

    @property
    def lease_ms(self) -> int:
        return self._lease_ms

    async def hold(self, job_id: str, *, extend: bool = True) -> Hold:
        """Start renewing ``job_id``'s lease, shortening arq's long claim right away (``extend``;
        without it the caller shortens it itself: the start transition does, in its Lua call)."""
        hold = Hold(self, job_id)
        self._held[job_id] = hold  # before the await: the renewal loop must see it
        if extend:
            try:
                await self._extend([job_id])
            except BaseException:
                hold.release()
                raise
        return hold

    async def keep_renewing(self) -> None:
        """``renew`` and ``sweep`` each ``renew_every_s``, until cancelled; Redis errors are
        logged."""
        while True:
            await asyncio.sleep(self.renew_every_s)
            try:
                await self.renew()
                await self.sweep()
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("lease.renew_failed", jobs=len(self._held), error=type(exc).__name__)

    async def renew(self) -> None:
        """Extend every held lease once (one pipeline), and stop the holds of canceled jobs."""
        if self._held:
            await self._extend(list(self._held))

    async def sweep(self, limit: int = 200) -> list[str]:
        """Put recovered jobs first in the queue, and release due jobs whose arq claim was never
        shortened (their worker died right after claiming); returns the ids it touched."""
        now_ms = clock.now_ms()
        fronted = await self._front_recovered(
            keys=[keys.state_index(JobState.RUNNING), self._queue_name],
            args=[now_ms, arq_wire.IN_PROGRESS_PREFIX, arq_wire.FRONT_SCORE],
        )
        if fronted:
            log.info("lease.recovered_jobs_first", jobs=len(fronted))
        return [as_text(i) for i in fronted] + await self._release_stuck(now_ms, limit)

    async def _release_stuck(self, now_ms: int, limit: int) -> list[str]:
        due = await self._redis.zrangebyscore(self._queue_name, "-inf", now_ms, start=0, num=limit)
        if not due:
            return []
        ids = [as_text(d) for d in due]
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.pttl(arq_wire.in_progress_key(job_id))
            ttls = await pipe.execute()
        oldest_fresh_ms = self._arq_claim_ms - 2 * self._lease_ms
        stuck = [
            job_id
            for job_id, ttl in zip(ids, ttls, strict=True)
            if self._lease_ms < ttl < oldest_fresh_ms and job_id not in self._held
        ]
        if stuck:
            await self._redis.delete(*(arq_wire.in_progress_key(job_id) for job_id in stuck))
            log.warning("lease.released_stuck_claims", jobs=stuck)
        return stuck

    async def _extend(self, job_ids: list[str]) -> None:
        due = arq_wire.due_score(clock.now_ms() + self._lease_ms)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.pexpire(arq_wire.in_progress_key(job_id), self._lease_ms)
                pipe.zadd(self._queue_name, {job_id: due}, xx=True)
                pipe.hget(keys.job(job_id), "state")
            replies = await pipe.execute()
        for job_id, state in zip(job_ids, replies[2::3], strict=True):
            if state in (_CANCELED, JobState.CANCELED.value):
                hold = self._held.get(job_id)
                if hold is not None:
                    hold._canceled()
