"""Rows 3 to 6: the worker against bare arq, on slow predictions, in memory, in Redis commands."""

from __future__ import annotations

from typing import Any

from devkit.wait import eventually
from ops.bench.harness import PREDQ_COMMAND, Bench, enqueue_in_batches
from ops.bench.runs import (
    MODEL,
    QUEUE,
    bare_arq_run,
    echo_jobs,
    predq_progress,
    predq_run,
    predq_worker,
    sampled,
)
from ops.bench.table import Result, Target, fmt
from ops.bench.worker_run import RunStats, WorkerRun
from producer.client import Producer
from producer.models import JobState

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
            f"{requests / run.elapsed_s:,.0f}/s); CPU busy: {run.busy()}; worker CPU "
            f"{run.cpu_s['worker'] / requests * 1000:.2f} ms per request",
        ],
    )


MEMORY_JOBS = 1_000
MEMORY_LATENCY_S = 15.0
#: Polls are not what this row measures: at the default 1 s, 1,000 predictions ask for 1,000
#: polls/s, more than one worker's CPU serves (~500 requests/s here), and the creates then lag so
#: far behind that the first predictions finish before the last start (~780 in flight at once).
MEMORY_POLL_S = "5"


async def row_memory(bench: Bench) -> Result:
    with bench.sandbox("memory-sandbox", "--latency", f"{MEMORY_LATENCY_S:g}") as sandbox:
        settings = {"PREDQ_CONCURRENCY": str(MEMORY_JOBS), "PREDQ_POLL_INTERVAL_S": MEMORY_POLL_S}
        started = predq_worker(bench, sandbox, "memory-predq", MEMORY_JOBS, **settings)
        async with started as (run, producer), sampled(run, sandbox, producer) as peaks:
            stats = await run.measure(predq_progress(producer), MEMORY_JOBS, 90.0)
    return Result(
        measured=peaks.rss.peak,
        unit="MB",
        target=Target("<", 200, "MB"),
        notes=[
            f"{MEMORY_JOBS:,} {MODEL} jobs, sandbox --latency {MEMORY_LATENCY_S:g}, "
            f"PREDQ_CONCURRENCY {MEMORY_JOBS}, PREDQ_POLL_INTERVAL_S {MEMORY_POLL_S} (so that "
            f"polling does not hold back creates); all done in {stats.elapsed_s:.1f} s",
            f"in flight at once: {peaks.in_flight.peak:,.0f} predictions (sandbox in_flight), "
            f"{peaks.running.peak:,.0f} running records (peaks); worker RSS idle "
            f"{peaks.idle_mb:.1f} MB, peak of {peaks.rss.samples} samples every 50 ms",
        ],
    )


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
    """Wait until ``jobs`` succeeded; returns how many ZCARDs the waiting itself sent (one per
    state for each ``Producer.counts``)."""
    polls = 0
    progress = predq_progress(producer)

    async def done() -> bool:
        nonlocal polls
        polls += len(JobState)
        succeeded, failed = await progress()
        if failed:
            raise RuntimeError(f"{failed} jobs failed")
        return succeeded >= jobs

    await eventually(done, timeout_s=60, what=f"{jobs} jobs", interval_s=0.05)
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
