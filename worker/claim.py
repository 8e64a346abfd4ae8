"""arq's claim on due jobs, a batch per round trip.

arq 0.28 claims each job it read from the queue with its own WATCH, EXISTS, ZSCORE, MULTI, PSETEX
and EXEC: four round trips and six commands per job, the largest share of a job's Redis work after
predq's own record writes (ops/bench/, row "Redis commands per job"). ``claim_due`` makes the same
decision for every job of a poll in one Lua call, atomically as arq's transaction does: a job is
claimed when it is still in the queue, due (score <= now) and not claimed by anyone; its claim is
arq's own key (``arq:in-progress:{id}``) with arq's TTL, so arq's run and finish, predq's leases
(worker/lease.py) and a worker still running arq's own claim all see the same claims. The claim
holds the claiming worker's id (arq's holds ``1``; arq only asks whether it exists): the transition
that ends a job deletes a claim only when it is that of the worker the record says runs the job.

A claim whose reply is lost (redis-py resends the call) leaves the jobs claimed by nobody running
them: the lease sweep releases such long, unrenewed claims (worker/lease.py), as it does for a worker
killed between arq's claim and its first renewal.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from producer import arq_wire
from producer.records import as_text

# KEYS[1] the arq queue   KEYS[2..] arq:in-progress:{id} of each job, in ARGV's order
# ARGV[1] now (ms)   ARGV[2] the claim's TTL (ms)   ARGV[3] at most this many
# ARGV[4] the claiming worker's id (the claims' value)   ARGV[5..] job ids
# Returns {id, score, id, score, ...}: the jobs claimed, in the order given.
_CLAIM = """
local claimed = {}
local now, limit, taken = tonumber(ARGV[1]), tonumber(ARGV[3]), 0
for i = 5, #ARGV do
  if taken >= limit then break end
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now
      and redis.call('SET', KEYS[i - 3], ARGV[4], 'NX', 'PX', ARGV[2]) then
    claimed[#claimed + 1] = ARGV[i]
    claimed[#claimed + 1] = score
    taken = taken + 1
  end
end
return claimed
"""


class Claims:
    """The claim script of one Redis client, claiming for the worker ``owner``."""

    def __init__(self, redis: aioredis.Redis, queue_name: str, owner: str) -> None:
        self._queue = queue_name
        self._owner = owner
        self._claim = redis.register_script(_CLAIM)

    async def claim_due(
        self, job_ids: Sequence[str], *, limit: int, now_ms: int, ttl_ms: int
    ) -> list[tuple[str, int]]:
        """Claim up to ``limit`` of ``job_ids`` (in their order) that are due and unclaimed;
        returns each claimed job's id and queue score."""
        if limit <= 0 or not job_ids:
            return []
        script_keys = [self._queue, *(arq_wire.in_progress_key(job_id) for job_id in job_ids)]
        reply = await self._claim(
            keys=script_keys, args=[now_ms, ttl_ms, limit, self._owner, *job_ids]
        )
        pairs = iter(reply)
        return [
            (as_text(job_id), int(float(score))) for job_id, score in zip(pairs, pairs, strict=True)
        ]
