"""What the rows share: the echo jobs, progress readers, and timed predq and bare-arq runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from arq.connections import RedisSettings, create_pool

from ops.bench import bare_arq
from ops.bench.harness import BARE_ARQ_COMMAND, PREDQ_COMMAND, Bench, Sandbox, enqueue_in_batches
from ops.bench.sampling import PeakSampler, rss_mb, rss_sampler
from ops.bench.worker_run import Progress, RunStats, WorkerRun
from producer.client import Producer
from producer.config import Config
from producer.models import JobState

MODEL = "sandbox/echo"
QUEUE = Config.from_env({}).queue_name


def echo_jobs(count: int) -> list[dict[str, Any]]:
    return [
        {"model": MODEL, "input": {"prompt": "a lighthouse at dusk", "n": n}} for n in range(count)
    ]


def predq_progress(producer: Producer) -> Progress:
    """(succeeded, failed) from predq's records: one ``Producer.counts`` (a ZCARD per state)."""

    async def progress() -> tuple[int, int]:
        counts = await producer.counts()
        return counts[JobState.SUCCEEDED], counts[JobState.FAILED]

    return progress


def bare_progress(redis: aioredis.Redis) -> Progress:
    async def progress() -> tuple[int, int]:
        done, failed = await redis.mget(bare_arq.DONE_KEY, bare_arq.FAILED_KEY)
        return int(done or 0), int(failed or 0)

    return progress


@dataclass
class Peaks:
    """What ``sampled`` watched during a run: the worker's RSS when idle, before the run (MB),
    and the peaks of its RSS (every 50 ms), of the sandbox's predictions in flight and of
    predq's running records (every 0.25 s)."""

    idle_mb: float
    rss: PeakSampler
    in_flight: PeakSampler
    running: PeakSampler


@asynccontextmanager
async def sampled(run: WorkerRun, sandbox: Sandbox, producer: Producer) -> AsyncIterator[Peaks]:
    """Sample the peaks of ``run``'s (first) worker, ``sandbox`` and ``producer``'s records for as
    long as the block runs."""
    assert run.worker is not None
    idle_mb = rss_mb(run.worker.pid)

    async def in_flight() -> float:
        return float((await sandbox.stats())["in_flight"])

    async def running() -> float:
        return float((await producer.counts())[JobState.RUNNING])

    async with (
        rss_sampler(run.worker.pid) as rss,
        PeakSampler(in_flight, 0.25) as in_flight_peak,
        PeakSampler(running, 0.25) as running_peak,
    ):
        yield Peaks(idle_mb, rss, in_flight_peak, running_peak)


@asynccontextmanager
async def predq_worker(
    bench: Bench, sandbox: Sandbox, name: str, jobs: int | list[dict[str, Any]], **settings: str
) -> AsyncIterator[tuple[WorkerRun, Producer]]:
    """``jobs`` echo jobs enqueued and parked, and a predq worker polling, ready to release."""
    async with predq_workers(bench, sandbox, name, jobs, 1, settings) as started:
        yield started


@asynccontextmanager
async def predq_workers(
    bench: Bench,
    sandbox: Sandbox,
    name: str,
    jobs: int | list[dict[str, Any]],
    workers: int,
    settings: dict[str, str],
) -> AsyncIterator[tuple[WorkerRun, Producer]]:
    """``jobs`` (a number of echo jobs, or the jobs themselves) enqueued and parked, and
    ``workers`` predq workers polling."""
    await bench.flush()
    await sandbox.reset()
    async with bench.producer() as producer:
        await enqueue_in_batches(producer, echo_jobs(jobs) if isinstance(jobs, int) else jobs)
        env = bench.predq_env(sandbox, **settings)
        async with WorkerRun(bench, name, PREDQ_COMMAND, env, QUEUE, sandbox, workers) as run:
            yield run, producer


async def predq_run(
    bench: Bench, sandbox: Sandbox, name: str, jobs: int, timeout_s: float, **settings: str
) -> RunStats:
    async with predq_worker(bench, sandbox, name, jobs, **settings) as (run, producer):
        return await run.measure(predq_progress(producer), jobs, timeout_s)


async def bare_arq_run(
    bench: Bench, sandbox: Sandbox, name: str, jobs: int, timeout_s: float, **settings: str
) -> RunStats:
    """The same jobs through ``ops/bench/bare_arq.py`` (enqueued with arq's own ``enqueue_job``)."""
    await bench.flush()
    await sandbox.reset()
    pool = await create_pool(
        RedisSettings.from_dsn(bench.redis_url),
        job_serializer=bare_arq.serialize,
        job_deserializer=bare_arq.deserialize,
        default_queue_name=bare_arq.QUEUE,
    )
    try:
        all_jobs = echo_jobs(jobs)
        for start in range(0, jobs, 500):
            batch = all_jobs[start : start + 500]
            queued = await asyncio.gather(
                *(pool.enqueue_job(bare_arq.FUNCTION, j["model"], j["input"]) for j in batch)
            )
            if not all(queued):
                raise RuntimeError("arq refused to enqueue a bare job")
    finally:
        await pool.aclose()
    env = bench.bare_env(sandbox, **settings)
    async with WorkerRun(bench, name, BARE_ARQ_COMMAND, env, bare_arq.QUEUE, sandbox) as run:
        return await run.measure(bare_progress(bench.redis), jobs, timeout_s)
