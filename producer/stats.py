"""What the queue looks like: its workers (alive or dead) and its per-minute history.

Workers register and heartbeat every ``HEARTBEAT_S`` (worker/registry.py); one that has not
beaten for ``DEAD_AFTER_BEATS`` beats is shown dead (a clean shutdown deregisters instead). The
history is a hash per minute of what workers counted (jobs succeeded, failed and canceled, by
model too; retries, 429s, creates, durations), kept for a week: charts and ``predq stats`` read
it. Reading is a handful of round trips, never a scan of keys.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

from producer import clock, keys
from producer.config import Config
from producer.connection import redis_errors
from producer.models import JobState
from producer.records import as_text

HEARTBEAT_S = 5.0
DEAD_AFTER_BEATS = 3
#: A worker's registration lives this long after its last beat (then it is forgotten).
WORKER_TTL_S = 86400


class WorkerInfo(BaseModel):
    """One worker process, as it last said."""

    model_config = ConfigDict(frozen=True)

    id: str
    host: str = ""
    pid: int = 0
    version: str = ""
    queue: str = ""
    concurrency: int = 0
    #: The account's create budget it works to (PREDQ_CREATES_PER_MIN; 0: none).
    creates_per_min: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    started_at: datetime | None = None
    last_seen: datetime
    #: How often it beats; it is shown dead after DEAD_AFTER_BEATS missed beats.
    heartbeat_s: float = HEARTBEAT_S
    alive: bool


class Totals(BaseModel):
    """What workers counted over a time span."""

    minutes: int
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    retried: int = 0
    throttled: int = 0
    creates: int = 0
    #: Mean time from enqueue to the final state of the jobs that ended (s).
    mean_duration_s: float | None = None
    #: Jobs that ended, per model and outcome (``owner/name``: {"succeeded": n, ...}).
    by_model: dict[str, dict[str, int]] = {}


class MinuteCounts(BaseModel):
    """One minute of the history (``at``: its start)."""

    at: datetime
    counts: dict[str, int]


class Stats(BaseModel):
    """The queue now, and its last hour and day."""

    jobs: dict[JobState, int]
    oldest_queued_age_s: float
    callbacks_pending: int
    workers_alive: int
    workers_dead: int
    last_hour: Totals
    last_day: Totals


async def list_workers(redis: aioredis.Redis, config: Config) -> list[WorkerInfo]:
    """Every registered worker, newest beat first, each alive or not."""
    now_ms = clock.now_ms()
    with redis_errors(config):
        await redis.zremrangebyscore(keys.WORKERS, "-inf", now_ms - WORKER_TTL_S * 1000)
        ids = [as_text(i) for i in await redis.zrevrange(keys.WORKERS, 0, -1)]
        async with redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(keys.worker(worker_id))
            replies = await pipe.execute()
    workers = []
    for worker_id, raw in zip(ids, replies, strict=True):
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        if "last_seen" not in fields:
            continue
        last_seen = datetime.fromisoformat(fields["last_seen"])
        beat_s = float(fields.get("heartbeat_s", HEARTBEAT_S))
        alive = now_ms - clock.to_ms(last_seen) < DEAD_AFTER_BEATS * beat_s * 1000
        workers.append(WorkerInfo.model_validate({**fields, "id": worker_id, "alive": alive}))
    return workers


async def history(redis: aioredis.Redis, config: Config, minutes: int) -> list[MinuteCounts]:
    """The last ``minutes`` minutes, oldest first (minutes nothing was counted in are empty)."""
    this_minute = clock.now_ms() // 60_000
    span = range(this_minute - minutes + 1, this_minute + 1)
    with redis_errors(config):
        async with redis.pipeline(transaction=False) as pipe:
            for minute in span:
                pipe.hgetall(keys.history(minute))
            replies = await pipe.execute()
    return [
        MinuteCounts(
            at=clock.from_ms(minute * 60_000),
            counts={as_text(k): int(v) for k, v in raw.items()},
        )
        for minute, raw in zip(span, replies, strict=True)
    ]


def totals(minutes: list[MinuteCounts]) -> Totals:
    """The sum of ``minutes``."""
    summed: Counter[str] = Counter()
    for minute in minutes:
        summed.update(minute.counts)
    by_model: dict[str, dict[str, int]] = {}
    for name, count in summed.items():
        outcome, sep, model = name.partition(":")
        if sep and outcome in ("succeeded", "failed", "canceled"):
            by_model.setdefault(model, {})[outcome] = count
    ended = summed["succeeded"] + summed["failed"] + summed["canceled"]
    return Totals(
        minutes=len(minutes),
        succeeded=summed["succeeded"],
        failed=summed["failed"],
        canceled=summed["canceled"],
        retried=summed["retried"],
        throttled=summed["throttled"],
        creates=summed["creates"],
        mean_duration_s=summed["duration_ms"] / ended / 1000 if ended else None,
        by_model=by_model,
    )
