"""predq's benchmark: one table of measurements, each against its target.

    .venv/bin/python -m ops.bench                         (make bench; about 2-3 minutes)
    .venv/bin/python -m ops.bench --only overhead,io --keep-logs

Everything runs here: a private redis-server without persistence (never a shared one), the local
Replicate sandbox (``python -m sandbox``) and real worker processes (``python -m arq ...``).
Redis is flushed before every row. Rows (``ROWS``):

1. enqueue: N ``Producer.enqueue`` calls, ``asyncio.gather``-ed in chunks (concurrent requests of
   a web app); jobs/s.
2. enqueue-many: the same N jobs through ``Producer.enqueue_many`` in batches; jobs/s.
3. overhead: predq's worker against a bare arq function making the same replicate call
   (``ops/bench_arq.py``), same max_jobs, poll delays, Redis and sandbox at zero latency; jobs
   pre-enqueued, alternated runs, the best of three each; predq's rate as a share of bare arq's.
4. io: 2,000 one-second predictions on 500 slots; wall time against the ideal 2,000/500 x 1 s.
5. memory: the worker's peak RSS with 1,000 predictions in flight at once.
6. redis-commands: Redis commands per job (``INFO commandstats``), enqueue to success.

Worker runs are timed from the moment their pre-enqueued jobs are released to a worker that is
already polling (see ``ops/bench_support.py``), to the last job's success; the worker's start-up
is reported separately. Exit status: 0 when every row ran (met or not), 1 when a row failed to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from arq.connections import RedisSettings, create_pool
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ops import bench_arq
from ops.bench_support import (
    BARE_ARQ_COMMAND,
    PREDQ_COMMAND,
    Bench,
    PeakSampler,
    Progress,
    Result,
    RunStats,
    Sandbox,
    Target,
    WorkerRun,
    enqueue_in_batches,
    fmt,
    machine_facts,
    private_redis,
    rss_mb,
    rss_sampler,
    wait_for,
)
from producer.client import Producer
from producer.config import Config
from producer.models import JobState

MODEL = "sandbox/echo"
QUEUE = Config.from_env({}).queue_name
ROW_TIMEOUT_S = 180.0


def echo_jobs(count: int) -> list[dict[str, Any]]:
    return [
        {"model": MODEL, "input": {"prompt": "a lighthouse at dusk", "n": n}} for n in range(count)
    ]


def predq_progress(producer: Producer) -> Progress:
    async def progress() -> tuple[int, int]:
        store = producer.store
        return await store.count(JobState.SUCCEEDED), await store.count(JobState.FAILED)

    return progress


def bare_progress(redis: aioredis.Redis) -> Progress:
    async def progress() -> tuple[int, int]:
        done, failed = await redis.mget(bench_arq.DONE_KEY, bench_arq.FAILED_KEY)
        return int(done or 0), int(failed or 0)

    return progress


@asynccontextmanager
async def predq_worker(
    bench: Bench, sandbox: Sandbox, name: str, jobs: int, **settings: str
) -> AsyncIterator[tuple[WorkerRun, Producer]]:
    """``jobs`` echo jobs enqueued and parked, and a predq worker polling, ready to release."""
    await bench.flush()
    await sandbox.reset()
    async with bench.producer() as producer:
        await enqueue_in_batches(producer, echo_jobs(jobs))
        env = bench.predq_env(sandbox, **settings)
        async with WorkerRun(bench, name, PREDQ_COMMAND, env, QUEUE, sandbox) as run:
            yield run, producer


async def predq_run(
    bench: Bench, sandbox: Sandbox, name: str, jobs: int, timeout_s: float, **settings: str
) -> RunStats:
    async with predq_worker(bench, sandbox, name, jobs, **settings) as (run, producer):
        return await run.measure(predq_progress(producer), jobs, timeout_s)


async def bare_arq_run(
    bench: Bench, sandbox: Sandbox, name: str, jobs: int, timeout_s: float, **settings: str
) -> RunStats:
    """The same jobs through ``ops/bench_arq.py`` (enqueued with arq's own ``enqueue_job``)."""
    await bench.flush()
    await sandbox.reset()
    pool = await create_pool(
        RedisSettings.from_dsn(bench.redis_url),
        job_serializer=bench_arq.serialize,
        job_deserializer=bench_arq.deserialize,
        default_queue_name=bench_arq.QUEUE,
    )
    try:
        all_jobs = echo_jobs(jobs)
        for start in range(0, jobs, 500):
            batch = all_jobs[start : start + 500]
            queued = await asyncio.gather(
                *(pool.enqueue_job(bench_arq.FUNCTION, j["model"], j["input"]) for j in batch)
            )
            if not all(queued):
                raise RuntimeError("arq refused to enqueue a bare job")
    finally:
        await pool.aclose()
    env = bench.bare_env(sandbox, **settings)
    async with WorkerRun(bench, name, BARE_ARQ_COMMAND, env, bench_arq.QUEUE, sandbox) as run:
        return await run.measure(bare_progress(bench.redis), jobs, timeout_s)


# -- rows ------------------------------------------------------------------------------------------

ENQUEUE_JOBS = 20_000
ENQUEUE_CHUNK = 1_000
ENQUEUE_BATCH = 1_000


async def row_enqueue_single(bench: Bench) -> Result:
    async with bench.producer() as producer:
        await producer.enqueue(MODEL, {"warm": "up"})  # connection and script cache
        jobs = echo_jobs(ENQUEUE_JOBS)
        started = time.monotonic()
        for start in range(0, ENQUEUE_JOBS, ENQUEUE_CHUNK):
            chunk = jobs[start : start + ENQUEUE_CHUNK]
            await asyncio.gather(*(producer.enqueue(j["model"], j["input"]) for j in chunk))
        elapsed = time.monotonic() - started
        queued = await producer.store.count(JobState.QUEUED) - 1
    return Result(
        measured=ENQUEUE_JOBS / elapsed,
        unit="jobs/s",
        target=Target(">=", 3000, "jobs/s"),
        notes=[
            f"{ENQUEUE_JOBS:,} x Producer.enqueue, asyncio.gather {ENQUEUE_CHUNK:,} at a time "
            f"(one Producer, stdlib asyncio loop): {elapsed:.2f} s; {queued:,} queued records"
        ],
    )


async def row_enqueue_many(bench: Bench) -> Result:
    async with bench.producer() as producer:
        await producer.enqueue(MODEL, {"warm": "up"})
        jobs = echo_jobs(ENQUEUE_JOBS)
        started = time.monotonic()
        await enqueue_in_batches(producer, jobs, batch=ENQUEUE_BATCH)
        elapsed = time.monotonic() - started
        queued = await producer.store.count(JobState.QUEUED) - 1
    return Result(
        measured=ENQUEUE_JOBS / elapsed,
        unit="jobs/s",
        target=Target(">=", 8000, "jobs/s"),
        notes=[
            f"{ENQUEUE_JOBS:,} jobs, Producer.enqueue_many {ENQUEUE_BATCH:,} per call, calls one "
            f"after another: {elapsed:.2f} s; {queued:,} queued records"
        ],
    )


OVERHEAD_JOBS = 2_000
OVERHEAD_CONCURRENCY = "300"
OVERHEAD_POLL_S = "0.05"
#: Runs of each, alternated; the better one counts. Other processes on the machine (tests run
#: alongside) slow single runs by up to a third, and the best run is the least disturbed one.
OVERHEAD_ROUNDS = 3


async def row_overhead(bench: Bench) -> Result:
    timeout_s = 60.0
    predq_settings = {"PREDQ_CONCURRENCY": OVERHEAD_CONCURRENCY,
                      "PREDQ_POLL_INTERVAL_S": OVERHEAD_POLL_S,
                      "PREDQ_QUEUE_POLL_S": OVERHEAD_POLL_S}  # fmt: skip
    bare_settings = {"BENCH_MAX_JOBS": OVERHEAD_CONCURRENCY,
                     "BENCH_POLL_INTERVAL_S": OVERHEAD_POLL_S,
                     "BENCH_POLL_DELAY_S": OVERHEAD_POLL_S}  # fmt: skip
    predq: list[RunStats] = []
    bare: list[RunStats] = []
    with bench.sandbox("overhead-sandbox", "--latency", "0") as sandbox:
        for n in range(1, OVERHEAD_ROUNDS + 1):
            predq.append(await predq_run(bench, sandbox, f"overhead-predq-{n}", OVERHEAD_JOBS,
                                         timeout_s, **predq_settings))  # fmt: skip
            bare.append(await bare_arq_run(bench, sandbox, f"overhead-bare-{n}", OVERHEAD_JOBS,
                                           timeout_s, **bare_settings))  # fmt: skip
    best_predq = max(predq, key=lambda r: r.rate)
    best_bare = max(bare, key=lambda r: r.rate)
    share = best_predq.rate / best_bare.rate * 100
    return Result(
        measured=share,
        unit="% of bare arq",
        target=Target(">=", 80, "% of bare arq"),
        shown=f"{share:.0f}% of bare arq ({fmt(best_predq.rate)} vs {fmt(best_bare.rate)} jobs/s)",
        notes=_overhead_notes(predq, bare, best_predq, best_bare),
    )


def _overhead_notes(
    predq: list[RunStats], bare: list[RunStats], best_predq: RunStats, best_bare: RunStats
) -> list[str]:
    cpu_share = best_bare.cpu_ms_per_job("worker") / best_predq.cpu_ms_per_job("worker")

    def rates(runs: list[RunStats]) -> str:
        return " / ".join(f"{fmt(r.rate)}" for r in runs)

    def cpu(run: RunStats) -> str:
        return ", ".join(f"{name} {run.cpu_ms_per_job(name):.2f}" for name in run.cpu_s)

    return [
        f"{OVERHEAD_JOBS:,} pre-enqueued {MODEL} jobs per run, sandbox --latency 0, "
        f"max_jobs {OVERHEAD_CONCURRENCY}, arq poll_delay and replicate poll interval "
        f"{OVERHEAD_POLL_S} s, JSON payloads, keep_result 0, arq logs at WARNING",
        f"{OVERHEAD_ROUNDS} runs each, alternated predq, bare, ...; the best run of each is used: "
        f"predq "
        f"{rates(predq)} jobs/s, bare arq {rates(bare)} jobs/s",
        f"CPU ms per job (best runs): predq [{cpu(best_predq)}]; bare arq [{cpu(best_bare)}]; "
        f"worker CPU per job, bare/predq: {cpu_share:.0%}",
        f"timed from release to the last success; start-up excluded (predq "
        f"{best_predq.startup_s:.2f} s, bare {best_bare.startup_s:.2f} s)",
    ]


IO_JOBS = 2_000
IO_CONCURRENCY = 500
IO_LATENCY_S = 1.0
IO_POLL_S = "0.1"


async def row_io(bench: Bench) -> Result:
    ideal_s = IO_JOBS / IO_CONCURRENCY * IO_LATENCY_S
    with bench.sandbox("io-sandbox", "--latency", f"{IO_LATENCY_S:g}") as sandbox:
        run = await predq_run(
            bench, sandbox, "io-predq", IO_JOBS, 120.0,
            PREDQ_CONCURRENCY=str(IO_CONCURRENCY), PREDQ_POLL_INTERVAL_S=IO_POLL_S,
        )  # fmt: skip
        requests = int((await sandbox.stats())["requests"])
    return Result(
        measured=run.elapsed_s,
        unit="s",
        target=Target("<=", 1.25 * ideal_s, "s"),
        shown=f"{run.elapsed_s:.2f} s ({run.elapsed_s / ideal_s:.2f} x ideal {ideal_s:g} s)",
        notes=[
            f"{IO_JOBS:,} {MODEL} jobs, sandbox --latency {IO_LATENCY_S:g}, one worker, "
            f"PREDQ_CONCURRENCY {IO_CONCURRENCY}, PREDQ_POLL_INTERVAL_S {IO_POLL_S}, "
            f"PREDQ_QUEUE_POLL_S 0.05; {fmt(run.rate)} jobs/s; timed from release to the last "
            f"success (start-up {run.startup_s:.2f} s excluded)",
            f"{requests:,} sandbox requests ({requests / IO_JOBS:.1f} per job, "
            f"{requests / run.elapsed_s:,.0f}/s); CPU busy: {_busy(run)}; worker CPU "
            f"{run.cpu_s['worker'] / requests * 1000:.2f} ms per request",
        ],
    )


def _busy(run: RunStats) -> str:
    return ", ".join(f"{name} {cpu / run.elapsed_s:.0%}" for name, cpu in run.cpu_s.items())


MEMORY_JOBS = 1_000
MEMORY_LATENCY_S = 15.0
#: Polls are not what this row measures: at the default 1 s, 1,000 predictions ask for 1,000
#: polls/s, more than one worker's CPU serves (~500 requests/s here), and the creates then lag so
#: far behind that the first predictions finish before the last start (~780 in flight at once).
MEMORY_POLL_S = "5"


async def row_memory(bench: Bench) -> Result:
    with bench.sandbox("memory-sandbox", "--latency", f"{MEMORY_LATENCY_S:g}") as sandbox:
        settings = {"PREDQ_CONCURRENCY": str(MEMORY_JOBS), "PREDQ_POLL_INTERVAL_S": MEMORY_POLL_S}
        async with predq_worker(bench, sandbox, "memory-predq", MEMORY_JOBS, **settings) as (
            run,
            producer,
        ):
            assert run.worker is not None
            idle_mb = rss_mb(run.worker.pid)
            async with (
                rss_sampler(run.worker.pid) as rss,
                PeakSampler(_in_flight(sandbox), 0.25) as in_flight,
                PeakSampler(_running(producer), 0.25) as running,
            ):
                stats = await run.measure(predq_progress(producer), MEMORY_JOBS, 90.0)
    return Result(
        measured=rss.peak,
        unit="MB",
        target=Target("<", 200, "MB"),
        notes=[
            f"{MEMORY_JOBS:,} {MODEL} jobs, sandbox --latency {MEMORY_LATENCY_S:g}, "
            f"PREDQ_CONCURRENCY {MEMORY_JOBS}, PREDQ_POLL_INTERVAL_S {MEMORY_POLL_S} (so that "
            f"polling does not hold back creates); all done in {stats.elapsed_s:.1f} s",
            f"in flight at once: {in_flight.peak:,.0f} predictions (sandbox in_flight), "
            f"{running.peak:,.0f} running records (peaks); worker RSS idle {idle_mb:.1f} MB, "
            f"peak of {rss.samples} samples every 50 ms",
        ],
    )


def _in_flight(sandbox: Sandbox) -> Callable[[], Awaitable[float]]:
    async def read() -> float:
        return float((await sandbox.stats())["in_flight"])

    return read


def _running(producer: Producer) -> Callable[[], Awaitable[float]]:
    async def read() -> float:
        return float(await producer.store.count(JobState.RUNNING))

    return read


COMMANDS_JOBS = 1_000
COMMANDS_TOP = 10


async def row_redis_commands(bench: Bench) -> Result:
    settings = {"PREDQ_CONCURRENCY": OVERHEAD_CONCURRENCY, "PREDQ_POLL_INTERVAL_S": OVERHEAD_POLL_S}
    with bench.sandbox("commands-sandbox", "--latency", "0") as sandbox:
        env = bench.predq_env(sandbox, **settings)
        async with (
            bench.producer() as producer,
            WorkerRun(bench, "commands-predq", PREDQ_COMMAND, env, QUEUE, sandbox),
        ):
            await bench.redis.config_resetstat()
            await enqueue_in_batches(producer, echo_jobs(COMMANDS_JOBS), batch=500)
            polls = await _wait_counting(producer, COMMANDS_JOBS)
            stats = await bench.redis.info("commandstats")
    calls = _calls(stats, own={"config|resetstat": 1, "zcard": polls})
    total = sum(calls.values())
    top = sorted(calls.items(), key=lambda item: -item[1])[:COMMANDS_TOP]
    return Result(
        measured=total / COMMANDS_JOBS,
        unit="commands/job",
        notes=[
            f"{COMMANDS_JOBS:,} {MODEL} jobs, enqueue_many (500 per call) to success, one worker "
            f"(PREDQ_CONCURRENCY {OVERHEAD_CONCURRENCY}, queue poll 0.05 s), sandbox --latency 0; "
            f"{total:,} calls from INFO commandstats (commands inside Lua scripts count "
            f"one each; the bench's own {polls} ZCARD polls left out; idle polls included)",
            "per job: " + ", ".join(f"{name} {count / COMMANDS_JOBS:.2f}" for name, count in top),
        ],
    )


async def _wait_counting(producer: Producer, jobs: int) -> int:
    """Wait until ``jobs`` succeeded; returns how many ZCARDs the waiting itself sent."""
    polls = 0

    async def done() -> bool:
        nonlocal polls
        polls += 2
        succeeded, failed = await predq_progress(producer)()
        if failed:
            raise RuntimeError(f"{failed} jobs failed")
        return succeeded >= jobs

    await wait_for(done, timeout_s=60, what=f"{jobs} jobs", interval_s=0.05)
    return polls


def _calls(stats: dict[str, Any], own: dict[str, int]) -> dict[str, int]:
    """``calls`` per command from ``INFO commandstats``, minus the bench's own ``own``."""
    calls = {}
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        count = int(value["calls"]) - own.get(name, 0)
        if count > 0:
            calls[name] = count
    return calls


# -- the table -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    run: Callable[[Bench], Awaitable[Result]]


#: The table, in order. To add a row (e.g. the rate limiter, webhooks): write
#: ``async def row_x(bench: Bench) -> Result`` (start what it needs with ``bench.sandbox`` /
#: ``bench.worker`` / ``WorkerRun`` so it is always stopped) and append ``Row("x", "title", row_x)``.
ROWS: list[Row] = [
    Row("enqueue", "Enqueue, single calls", row_enqueue_single),
    Row("enqueue-many", "Enqueue, enqueue_many", row_enqueue_many),
    Row("overhead", "predq's overhead vs bare arq", row_overhead),
    Row("io", "I/O-bound efficiency", row_io),
    Row("memory", "Worker memory, 1,000 in flight", row_memory),
    Row("redis-commands", "Redis commands per job", row_redis_commands),
    # -- rows added later go here (rate limiter, webhooks) --
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


def render(console: Console, results: list[Result], header: list[str]) -> None:
    """Print the header lines, the table, then each row's notes (as plain text, no markup)."""

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    for line in header:
        say(line)
    table = Table()
    for column in ("#", "measurement", "measured", "target", "met?"):
        table.add_column(column, overflow="fold")
    for n, result in enumerate(results, 1):
        cells = (str(n), result.name, result.measured_text(), result.target_text(),
                 result.verdict())  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)
    say("notes:")
    for n, result in enumerate(results, 1):
        for line in ([result.error] if result.error else []) + result.notes:
            say(f"  {n}. {line}")


async def bench_main(rows: list[Row], workdir: Path, console: Console) -> list[Result]:
    results: list[Result] = []
    load_before = os.getloadavg()[0]
    async with private_redis(workdir) as redis_server:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated rows: " + ",".join(r.key for r in ROWS))
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs even if all ran")
    args = parser.parse_args(argv)
    rows = ROWS
    if args.only:
        wanted = args.only.split(",")
        rows = [r for r in ROWS if r.key in wanted]
        if len(rows) != len(wanted):
            parser.error(f"unknown row in --only; rows: {', '.join(r.key for r in ROWS)}")
    workdir = Path(tempfile.mkdtemp(prefix="predq-bench-"))
    console = Console(width=None if sys.stdout.isatty() else 140)
    started = time.monotonic()
    results = asyncio.run(bench_main(rows, workdir, console))
    ran = all(r.error is None for r in results)
    console.print(f"total {time.monotonic() - started:.0f} s", markup=False, highlight=False)
    if ran and not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        console.print(f"logs kept in {workdir}", markup=False, highlight=False)
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
