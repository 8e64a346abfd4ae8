"""Streaming and waiting: how fast a token reaches a producer, and what idle waiters cost Redis."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Coroutine
from typing import Any

from ops.bench.harness import Bench
from ops.bench.runs import predq_progress, predq_worker
from ops.bench.table import Check, Result, Target, fmt
from producer.client import Producer
from producer.events import OutputEvent
from producer.models import JobState

LATENCY_TOKENS = 300
LATENCY_RUN_S = 6.0


async def row_token_latency(bench: Bench) -> Result:
    """One streaming job: each token's time from the sandbox producing it (stamped in the token)
    to ``Producer.stream`` yielding it in the bench, through the worker's relay and Redis."""
    job = {"model": "sandbox/llm", "stream": True,
           "input": {"prompt": "lighthouses", "max_tokens": LATENCY_TOKENS, "stamp": True}}  # fmt: skip
    latencies_ms: list[float] = []
    with bench.sandbox("latency-sandbox", "--latency", f"{LATENCY_RUN_S:g}") as sandbox:
        async with predq_worker(bench, sandbox, "latency-predq", [job]) as (run, producer):
            [record] = (await producer.list_jobs(JobState.QUEUED, limit=1)).jobs
            reader = asyncio.create_task(_stamps(producer, record.id, latencies_ms))
            stats = await run.measure(predq_progress(producer), 1, 60.0)
            await asyncio.wait_for(reader, 10)
    ordered = sorted(latencies_ms)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return Result(
        measured=p50,
        unit="ms p50",
        shown=f"p50 {fmt(p50)} ms, p99 {fmt(p99)} ms",
        checks=[Check(len(ordered), "tokens", Target(">=", LATENCY_TOKENS, "tokens"))],
        notes=[
            f"one sandbox/llm job, stream=True, {LATENCY_TOKENS} tokens over {LATENCY_RUN_S:g} s "
            f"(one every {LATENCY_RUN_S / LATENCY_TOKENS * 1000:.0f} ms), each stamped by the "
            "sandbox when produced; received by one Producer.stream reader in this process; "
            f"max {fmt(ordered[-1])} ms; the job took {stats.elapsed_s:.2f} s from release",
            "path: sandbox SSE -> worker (relay, one Lua call per token) -> Redis stream -> "
            "XREAD BLOCK -> reader; all on this 2-core machine",
        ],
    )


async def _stamps(producer: Producer, job_id: str, into: list[float]) -> None:
    async for event in producer.stream(job_id):
        if isinstance(event, OutputEvent) and isinstance(event.output, str):
            received = time.time()
            stamp = float(event.output.rsplit("@", 1)[1])
            into.append((received - stamp) * 1000)


WAITERS = 1000
WINDOW_S = 10.0


async def row_idle_waiters(bench: Bench) -> Result:
    """1,000 ``Producer.wait`` calls on jobs no worker runs: Redis commands per second while
    they wait, against the poll loop ``wait`` used before (a read every 50 ms growing to 1 s)."""
    async with bench.producer() as producer:
        jobs = await producer.enqueue_many(
            [{"model": "sandbox/echo", "input": {"n": n}} for n in range(WAITERS)]
        )
        ids = [job.id for job in jobs]
        now = await _commands_per_s(bench, [producer.wait(i, timeout_s=600) for i in ids])
        old = await _commands_per_s(bench, [_poll_wait(producer, i) for i in ids])
    return Result(
        measured=now,
        unit="commands/s",
        shown=f"{fmt(now)} commands/s (poll loop: {fmt(old)})",
        target=Target("<=", 10, "commands/s"),
        notes=[
            f"{WAITERS:,} waits in one Producer on queued jobs that no worker takes; Redis "
            f"commands per second over {WINDOW_S:g} s (INFO commandstats), after the waiters "
            f"settled: Producer.wait {fmt(now)}/s (a pub/sub subscription, woken by final "
            f"transitions), the old poll loop {fmt(old)}/s",
        ],
    )


async def _poll_wait(producer: Producer, job_id: str) -> None:
    """How ``Producer.wait`` waited before: re-read the record, 50 ms growing to 1 s."""
    poll_s = 0.05
    while True:
        record = await producer.get(job_id)
        if record is None or record.is_final:
            return
        await asyncio.sleep(poll_s)
        poll_s = min(poll_s * 1.5, 1.0)


async def _commands_per_s(bench: Bench, waits: list[Coroutine[Any, Any, Any]]) -> float:
    tasks = [asyncio.create_task(wait) for wait in waits]
    try:
        await asyncio.sleep(5.0)  # every waiter has settled into its steady state
        before = await _total_calls(bench)
        await asyncio.sleep(WINDOW_S)
        after = await _total_calls(bench)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    return (after - before - 1) / WINDOW_S  # less the INFO itself


async def _total_calls(bench: Bench) -> int:
    stats = await bench.redis.info("commandstats")
    return sum(int(value["calls"]) for value in stats.values())
