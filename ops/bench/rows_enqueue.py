"""Rows 1 and 2: how fast the producer enqueues, one call at a time and in batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ops.bench.harness import Bench, enqueue_in_batches
from ops.bench.runs import MODEL, echo_jobs
from ops.bench.table import Result, Target
from producer.client import Producer
from producer.models import JobState

ENQUEUE_JOBS = 20_000
ENQUEUE_CHUNK = 1_000
ENQUEUE_BATCH = 1_000

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
    what = (
        f"{ENQUEUE_JOBS:,} x Producer.enqueue, asyncio.gather {ENQUEUE_CHUNK:,} at a time "
        "(one Producer, stdlib asyncio loop)"
    )
    return await _row(bench, _gathered, 3000, what)


async def row_enqueue_many(bench: Bench) -> Result:
    what = (
        f"{ENQUEUE_JOBS:,} jobs, Producer.enqueue_many {ENQUEUE_BATCH:,} per call, calls one "
        "after another"
    )
    return await _row(bench, _batched, 8000, what)
