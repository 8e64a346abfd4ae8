"""Rows 1 and 2: how fast the producer enqueues, one call at a time (against arq's own
``enqueue_job`` in the same run) and in batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from ops.bench import bare_arq
from ops.bench.harness import Bench, enqueue_in_batches
from ops.bench.runs import MODEL, echo_jobs
from ops.bench.table import Result, Target, fmt
from producer.client import Producer
from producer.models import JobState

ENQUEUE_JOBS = 20_000
ENQUEUE_CHUNK = 1_000
ENQUEUE_BATCH = 1_000
#: Alternated timings of predq's and arq's single enqueues; the better of each counts.
ENQUEUE_ROUNDS = 2
#: The arq queue arq's own ``enqueue_job`` fills (flushed after each timing).
ARQ_QUEUE = "bench:arq-enqueue:queue"

Send = Callable[[Producer, list[dict[str, Any]]], Awaitable[None]]


async def _gathered(producer: Producer, jobs: list[dict[str, Any]]) -> None:
    for start in range(0, len(jobs), ENQUEUE_CHUNK):
        chunk = jobs[start : start + ENQUEUE_CHUNK]
        await asyncio.gather(*(producer.enqueue(j["model"], j["input"]) for j in chunk))


async def _batched(producer: Producer, jobs: list[dict[str, Any]]) -> None:
    await enqueue_in_batches(producer, jobs, batch=ENQUEUE_BATCH)


async def _row(bench: Bench, send: Send, target_jobs_s: float, what: str) -> Result:
    """``send`` timed enqueueing the echo jobs, after one warm-up job (connection and script
    cache), against ``target_jobs_s``; the notes say the queued records then (warm-up left out)."""
    async with bench.producer() as producer:
        await producer.enqueue(MODEL, {"warm": "up"})
        jobs = echo_jobs(ENQUEUE_JOBS)
        started = time.monotonic()
        await send(producer, jobs)
        elapsed = time.monotonic() - started
        queued = (await producer.counts())[JobState.QUEUED] - 1
    return Result(
        measured=ENQUEUE_JOBS / elapsed,
        unit="jobs/s",
        target=Target(">=", target_jobs_s, "jobs/s"),
        notes=[f"{what}: {elapsed:.2f} s; {queued:,} queued records"],
    )


async def row_enqueue_single(bench: Bench) -> Result:
    """ENQUEUE_JOBS ``Producer.enqueue`` calls against as many of arq's own
    ``ArqRedis.enqueue_job``, both ``asyncio.gather``-ed ENQUEUE_CHUNK at a time on the bench's
    Redis; predq's rate as a share of arq's, the better of ENQUEUE_ROUNDS alternated timings."""
    jobs = echo_jobs(ENQUEUE_JOBS)
    predq_s: list[float] = []
    arq_s: list[float] = []
    for _ in range(ENQUEUE_ROUNDS):
        predq_s.append(await _time_predq(bench, jobs))
        await bench.flush()
        arq_s.append(await _time_arq(bench, jobs))
        await bench.flush()
    predq_rate, arq_rate = ENQUEUE_JOBS / min(predq_s), ENQUEUE_JOBS / min(arq_s)
    share = predq_rate / arq_rate * 100

    def times(runs: list[float]) -> str:
        return " / ".join(f"{elapsed:.2f} s" for elapsed in runs)

    return Result(
        measured=share,
        unit="% of arq's enqueue_job",
        target=Target(">=", 100, "% of arq's enqueue_job"),
        shown=f"{fmt(predq_rate)} vs arq {fmt(arq_rate)} jobs/s ({share:.0f}% of arq's)",
        notes=[
            f"{ENQUEUE_JOBS:,} x Producer.enqueue (one Producer) against {ENQUEUE_JOBS:,} x "
            f"arq's ArqRedis.enqueue_job (one create_pool, JSON serializer, queue {ARQ_QUEUE}), "
            f"each asyncio.gather-ed {ENQUEUE_CHUNK:,} at a time on the bench's stdlib asyncio "
            f"loop after one warm-up call; Redis flushed after each",
            f"{ENQUEUE_ROUNDS} timings each, alternated, the better one counts: predq "
            f"{times(predq_s)}, arq {times(arq_s)}; the fixed 3,000 jobs/s target this row had "
            "is replaced by arq's rate in the same run (it depended on the machine)",
        ],
    )


async def _time_predq(bench: Bench, jobs: list[dict[str, Any]]) -> float:
    """Seconds for ``jobs`` through ``Producer.enqueue`` (raises unless all were queued)."""
    async with bench.producer() as producer:
        await producer.enqueue(MODEL, {"warm": "up"})
        started = time.monotonic()
        await _gathered(producer, jobs)
        elapsed = time.monotonic() - started
        queued = (await producer.counts())[JobState.QUEUED] - 1
    if queued != len(jobs):
        raise RuntimeError(f"{queued:,} of {len(jobs):,} predq jobs queued")
    return elapsed


async def _time_arq(bench: Bench, jobs: list[dict[str, Any]]) -> float:
    """Seconds for ``jobs`` through arq's ``enqueue_job`` (raises unless all were queued)."""
    pool: ArqRedis = await create_pool(
        RedisSettings.from_dsn(bench.redis_url),
        job_serializer=bare_arq.serialize,
        job_deserializer=bare_arq.deserialize,
        default_queue_name=ARQ_QUEUE,
    )
    try:
        await pool.enqueue_job(bare_arq.FUNCTION, MODEL, {"warm": "up"})
        started = time.monotonic()
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            chunk = jobs[start : start + ENQUEUE_CHUNK]
            await asyncio.gather(
                *(pool.enqueue_job(bare_arq.FUNCTION, j["model"], j["input"]) for j in chunk)
            )
        elapsed = time.monotonic() - started
        queued = int(await pool.zcard(ARQ_QUEUE)) - 1
    finally:
        await pool.aclose()
    if queued != len(jobs):
        raise RuntimeError(f"{queued:,} of {len(jobs):,} arq jobs queued")
    return elapsed


async def row_enqueue_many(bench: Bench) -> Result:
    what = (
        f"{ENQUEUE_JOBS:,} jobs, Producer.enqueue_many {ENQUEUE_BATCH:,} per call, calls one "
        "after another"
    )
    return await _row(bench, _batched, 8000, what)
