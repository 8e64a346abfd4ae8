"""What a Producer can see of the queue besides single jobs: pages of jobs, lookups, counts,
workers, history and stats. A mixin of Producer (producer/client.py), on its connection."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import TypeVar

import redis.asyncio as aioredis

from producer import clock, keys
from producer.config import Config
from producer.errors import InvalidRequest
from producer.listing import MAX_PAGE, JobIndex, JobPage
from producer.models import JobRecord, JobState
from producer.stats import MinuteCounts, Stats, WorkerInfo, history, list_workers, totals

T = TypeVar("T")


class Views:
    """Reads of the queue as a whole (Producer's)."""

    config: Config

    def _jobs_redis(self) -> aioredis.Redis:
        raise NotImplementedError

    async def _bounded(self, call: Awaitable[T]) -> T:
        raise NotImplementedError

    async def get(self, job_id: str) -> JobRecord | None:
        raise NotImplementedError

    @property
    def _index(self) -> JobIndex:
        return JobIndex(self._jobs_redis(), self.config)

    async def failed(self, limit: int = 100) -> list[JobRecord]:
        """The dead letters: failed jobs, most recently failed first (at most ``limit``)."""
        page = await self.list_jobs(JobState.FAILED, limit=min(limit, MAX_PAGE))
        return page.jobs

    async def list_jobs(
        self,
        state: JobState | Sequence[JobState] | None = None,
        *,
        model: str | None = None,
        changed_after: datetime | None = None,
        changed_before: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """A page of jobs, most recently changed first: in ``state`` (one, several, or any), of
        ``model`` (``owner/name`` matches every version), changed inside the time range;
        ``cursor`` is the previous page's ``next_cursor``. Raises InvalidRequest for a bad
        cursor or limit (1-500)."""
        states = (
            tuple(JobState)
            if state is None
            else (state,)
            if isinstance(state, JobState)
            else tuple(state)
        )
        return await self._bounded(
            self._index.page(
                states=states,
                model=model,
                changed_after=changed_after,
                changed_before=changed_before,
                cursor=cursor,
                limit=limit,
            )
        )

    async def find(
        self, *, idempotency_key: str | None = None, prediction_id: str | None = None
    ) -> JobRecord | None:
        """The job an idempotency key created (within its window), or that owns a Replicate
        prediction; None when there is none."""
        if (idempotency_key is None) == (prediction_id is None):
            raise InvalidRequest("find needs one of idempotency_key or prediction_id")
        if idempotency_key is not None:
            job_id = await self._bounded(self._index.by_idempotency_key(idempotency_key))
        else:
            job_id = await self._bounded(self._index.by_prediction_id(str(prediction_id)))
        return await self.get(job_id) if job_id is not None else None

    async def get_many(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        """Records for ``job_ids`` in one round trip, in order (None where a job is unknown)."""
        return await self._bounded(self._index.get_many(list(job_ids)))

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker process, newest heartbeat first, alive or dead."""
        return await self._bounded(list_workers(self._jobs_redis(), self.config))

    async def history(self, minutes: int = 60) -> list[MinuteCounts]:
        """What workers counted in each of the last ``minutes`` minutes (at most a week)."""
        if not 1 <= minutes <= 7 * 1440:
            raise InvalidRequest(f"minutes must be 1-{7 * 1440}, got {minutes}")
        return await self._bounded(history(self._jobs_redis(), self.config, minutes))

    async def stats(self, *, day: bool = True) -> Stats:
        """The queue now (jobs by state, the oldest queued job's age, callbacks pending,
        workers) and its last hour and day (``day=False``: the last hour only, a 24th of the
        reads, and ``last_day`` covers just that hour)."""
        index = self._index
        redis = self._jobs_redis()
        minutes = await self.history(1440 if day else 60)
        workers = await self.workers()
        return Stats(
            jobs=await self.counts(),
            oldest_queued_age_s=await self._bounded(index.oldest_queued_age_s()),
            callbacks_pending=int(await self._bounded(redis.zcard(keys.CALLBACKS))),
            workers_alive=sum(w.alive for w in workers),
            workers_dead=sum(not w.alive for w in workers),
            last_hour=totals(minutes[-60:]),
            last_day=totals(minutes),
        )

    async def lease_expires_at(self, job_id: str) -> datetime | None:
        """When a running job's lease runs out (its worker must renew it before), or None."""
        score = await self._bounded(self._jobs_redis().zscore(self.config.queue_name, job_id))
        return clock.from_ms(int(score)) if score is not None else None

    async def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (one round trip; final ones within retention)."""
        return await self._bounded(self._index.counts())
