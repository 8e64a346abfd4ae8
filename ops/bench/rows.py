"""The table of rows (``ROWS``), running one (``run_row``), and the whole bench (``bench_main``)."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from devkit.local_redis import LocalRedis
from ops.bench.harness import Bench
from ops.bench.rows_api import row_api
from ops.bench.rows_enqueue import row_enqueue_many, row_enqueue_single
from ops.bench.rows_lean import row_idle, row_redis_commands
from ops.bench.rows_limits import row_rate_limit, row_webhooks
from ops.bench.rows_outputs import row_copy
from ops.bench.rows_streaming import row_idle_waiters, row_token_latency
from ops.bench.rows_worker import row_io, row_memory, row_overhead
from ops.bench.table import Result, machine_facts, render

ROW_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    run: Callable[[Bench], Awaitable[Result]]


#: The table, in order. To add a row: write ``async def row_x(bench: Bench) -> Result`` (start
#: what it needs with ``bench.sandbox`` / ``bench.worker`` / ``bench.webhook_receiver`` /
#: ``WorkerRun`` so it is always stopped) and append ``Row("x", "title", row_x)``.
ROWS: list[Row] = [
    Row("enqueue", "Enqueue, single calls", row_enqueue_single),
    Row("enqueue-many", "Enqueue, enqueue_many", row_enqueue_many),
    Row("overhead", "predq's overhead vs bare arq", row_overhead),
    Row("io", "I/O-bound efficiency", row_io),
    Row("memory", "Worker memory, 1,000 in flight", row_memory),
    Row("redis-commands", "Redis commands per job", row_redis_commands),
    Row("idle", "Idle worker's cost", row_idle),
    Row("rate-limit", "Shared rate limit, 3 workers", row_rate_limit),
    Row("webhooks", "Webhooks instead of polling, 1,000 in flight", row_webhooks),
    Row("copy", "Output files copied to the store, 20 x 50 MB", row_copy),
    Row("token-latency", "Streamed token, sandbox to producer", row_token_latency),
    Row("idle-waiters", "Redis load of 1,000 idle waiters", row_idle_waiters),
    Row("api", "HTTP API, 50 concurrent clients", row_api),
]


async def run_row(bench: Bench, row: Row) -> Result:
    """Run one row; a row that fails says so in its result instead of ending the bench."""
    await bench.flush()
    try:
        async with asyncio.timeout(ROW_TIMEOUT_S):
            result = await row.run(bench)
    except Exception as exc:
        result = Result(error=f"{type(exc).__name__}: {exc}", notes=[f"logs in {bench.workdir}"])
    result.name = row.title
    return result


async def bench_main(rows: list[Row], workdir: Path, console: Console) -> list[Result]:
    """Run ``rows`` on a private redis-server (no persistence, never the shared one), then print
    the table."""
    results: list[Result] = []
    load_before = os.getloadavg()[0]
    with LocalRedis(data_dir=workdir / "redis", appendonly=False) as redis_server:
        bench = Bench(redis_server, workdir)
        try:
            redis_version = (await bench.redis.info("server"))["redis_version"]
            for n, row in enumerate(rows, 1):
                print(f"[{n}/{len(rows)}] {row.title} ...", file=sys.stderr, flush=True)
                results.append(await run_row(bench, row))
        finally:
            await bench.aclose()
    command = shlex.join([_shown_path(sys.executable), "-m", "ops.bench", *sys.argv[1:]])
    header = [
        f"command: {command}",
        *(f"machine: {fact}" for fact in machine_facts(redis_version)),
        f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
        "(the bench's own processes count; anything else running shares the cores)",
    ]
    render(console, results, header)
    return results


def _shown_path(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
