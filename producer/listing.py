"""Finding jobs: pages of the per-state indexes, lookups by idempotency key and prediction id,
and the queue's counts. Reads only (JobStore is the only writer).

Each state index is a sorted set of job ids scored by their last change (ms). A page is the
newest first; its cursor is the last job's score and, per index, how many of that score's jobs
were already shown, so the next page starts right after it even among thousands of jobs changed
in the same millisecond (an ``enqueue_many`` batch). Without a state, the six indexes are read side
by side and merged. A model filter is applied to the records read: a page holds at most ``limit``
jobs, and may hold fewer when many jobs of other models are in the way (its ``next_cursor`` still
goes on from where it stopped).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

from producer import clock, keys
from producer.config import Config
from producer.connection import redis_errors
from producer.errors import InvalidRequest
from producer.models import JobRecord, JobState
from producer.records import as_text, parse_record

MAX_PAGE = 500


class JobPage(BaseModel):
    """One page of jobs, newest change first; ``next_cursor`` is None on the last page."""

    model_config = ConfigDict(frozen=True)

    jobs: list[JobRecord]
    next_cursor: str | None = None


def _encode(score: int, shown: dict[str, int]) -> str:
    text = json.dumps({"s": score, "o": shown}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, dict[str, int]]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        return int(data["s"]), {str(k): int(v) for k, v in data["o"].items()}
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidRequest(f"not a cursor of this listing: {cursor[:100]!r}") from None


def _same_model(ref: str, model: str) -> bool:
    """``ref`` is ``model``, or a version of it (``model`` without a version)."""
    return ref == model or (":" not in model and ref.split(":", 1)[0] == model)


class JobIndex:
    """Reads the indexes and records on ``redis``."""

    def __init__(self, redis: aioredis.Redis, config: Config) -> None:
        self._redis = redis
        self._config = config

    async def page(
        self,
        *,
        states: Sequence[JobState] = tuple(JobState),
        model: str | None = None,
        changed_after: datetime | None = None,
        changed_before: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs in ``states`` (all by default), of ``model`` (``owner/name``, any version) if
        given, last changed inside the time range, newest first, after ``cursor``."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be 1-{MAX_PAGE}, got {limit}")
        top: int | str = clock.to_ms(changed_before) if changed_before else "+inf"
        bottom = clock.to_ms(changed_after) if changed_after else "-inf"
        shown: dict[str, int] = {}
        if cursor:
            top, shown = _decode(cursor)
        fetch = limit + 1 if model is None else min(MAX_PAGE, limit * 4)
        with redis_errors(self._config):
            async with self._redis.pipeline(transaction=False) as pipe:
                for state in states:
                    pipe.zrevrangebyscore(
                        keys.state_index(state), top, bottom,
                        start=shown.get(state.value, 0), num=fetch, withscores=True,
                    )  # fmt: skip
                replies = await pipe.execute()
        merged = sorted(
            (
                (int(score), as_text(member), state.value)
                for state, reply in zip(states, replies, strict=True)
                for member, score in reply
            ),
            reverse=True,
        )
        window = merged[:fetch]
        records = await self.get_many([job_id for _, job_id, _ in window])
        jobs: list[JobRecord] = []
        examined = 0
        for record in records:
            examined += 1
            if record is not None and (model is None or _same_model(record.model, model)):
                jobs.append(record)
                if len(jobs) == limit:
                    break
        # More beyond this page: entries merged but not examined, or an index read to its
        # ``fetch`` (Redis may hold more of it).
        more = examined < len(merged) or any(len(reply) == fetch for reply in replies)
        if not (more and examined):
            return JobPage(jobs=jobs)
        last = window[examined - 1][0]
        carried = shown if last == top else {}
        for score, _, state_value in window[:examined]:
            if score == last:
                carried[state_value] = carried.get(state_value, 0) + 1
        return JobPage(jobs=jobs, next_cursor=_encode(last, carried))

    async def get_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        """Records for ``job_ids`` in one round trip (None where a record is gone)."""
        with redis_errors(self._config):
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hgetall(keys.job(job_id))
                replies = await pipe.execute()
        return [parse_record(fields) if fields else None for fields in replies]

    async def counts(self) -> dict[JobState, int]:
        """Jobs per state, from the state indexes, in one round trip."""
        with redis_errors(self._config):
            async with self._redis.pipeline(transaction=False) as pipe:
                for state in JobState:
                    pipe.zcard(keys.state_index(state))
                replies = await pipe.execute()
        return {state: int(n) for state, n in zip(JobState, replies, strict=True)}

    async def by_idempotency_key(self, key: str) -> str | None:
        """The id of the job an idempotency key created (within its window)."""
        with redis_errors(self._config):
            found = await self._redis.get(keys.idempotency(key))
        return as_text(found) if found is not None else None

    async def by_prediction_id(self, prediction_id: str) -> str | None:
        """The id of the job that owns a Replicate prediction."""
        with redis_errors(self._config):
            found = await self._redis.get(keys.prediction(prediction_id))
        return as_text(found) if found is not None else None

    async def oldest_queued_age_s(self) -> float:
        """How long the job waiting longest has been queued (0 when none waits)."""
        with redis_errors(self._config):
            oldest = await self._redis.zrange(
                keys.state_index(JobState.QUEUED), 0, 0, withscores=True
            )
        if not oldest:
            return 0.0
        return max(0.0, (clock.now_ms() - float(oldest[0][1])) / 1000)
