"""Rows 3 to 5: the worker against bare arq, on slow predictions, and in memory."""

from __future__ import annotations

from ops.bench.harness import Bench
from ops.bench.runs import MODEL, bare_arq_run, predq_progress, predq_run, predq_worker, sampled
from ops.bench.table import Check, Result, Target, fmt
from ops.bench.worker_run import RunStats

OVERHEAD_JOBS = 2_000
OVERHEAD_CONCURRENCY = "300"
OVERHEAD_POLL_S = "0.05"
#: Runs of each, alternated; the better one counts. Other processes on the machine (tests run
#: alongside) slow single runs by up to a third, and the best run is the least disturbed one.
OVERHEAD_ROUNDS = 3
#: predq's rate as a share of bare arq's, at least (the issue "Lean worker").
OVERHEAD_SHARE = 90


async def row_overhead(bench: Bench) -> Result:
    """predq's worker against ``ops/bench/bare_arq.py`` on the same jobs at zero latency: jobs/s
    (the main measurement) and Redis CPU per job (a check: predq's at most bare arq's), the best
    run of each."""
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
    redis_ms = best_predq.cpu_ms_per_job("redis"), best_bare.cpu_ms_per_job("redis")
    redis_share = redis_ms[0] / redis_ms[1] * 100
    redis_shown = (f"Redis CPU {redis_ms[0]:.3f} vs {redis_ms[1]:.3f} ms/job "
                   f"({redis_share:.0f}% of bare arq's)")  # fmt: skip
    redis_check = Check(redis_share, "% of bare arq's Redis CPU/job",
                        Target("<=", 100, "% of bare arq's Redis CPU/job"), shown=redis_shown)  # fmt: skip
    return Result(
        measured=share,
        unit="% of bare arq",
        target=Target(">=", OVERHEAD_SHARE, "% of bare arq"),
        shown=f"{share:.0f}% of bare arq ({fmt(best_predq.rate)} vs {fmt(best_bare.rate)} jobs/s)",
        checks=[redis_check],
        notes=_overhead_notes(predq, bare, best_predq, best_bare),
    )


def _overhead_notes(
    predq: list[RunStats], bare: list[RunStats], best_predq: RunStats, best_bare: RunStats
) -> list[str]:
    def rates(runs: list[RunStats]) -> str:
        return " / ".join(f"{fmt(r.rate)}" for r in runs)

    def cpu(run: RunStats) -> str:
        return ", ".join(f"{name} {run.cpu_ms_per_job(name):.2f}" for name in run.cpu_s)

    return [
        f"{OVERHEAD_JOBS:,} pre-enqueued {MODEL} jobs per run, sandbox --latency 0, "
        f"max_jobs {OVERHEAD_CONCURRENCY}, arq poll_delay (predq: PREDQ_QUEUE_POLL_S and "
        f"PREDQ_IDLE_POLL_S) and replicate poll interval {OVERHEAD_POLL_S} s, JSON payloads, "
        "keep_result 0, arq logs at WARNING",
        "bare arq: one plain arq function calling replicate's Client.async_run with httpx's "
        "default transport (httpx.AsyncHTTPTransport, pool sized as predq's) on arq's default "
        "asyncio loop; predq's worker: its defaults, so uvloop's loop and an aiohttp-backed "
        "httpx transport (httpx-aiohttp), with records, leases and the rate limiter",
        f"{OVERHEAD_ROUNDS} runs each, alternated predq, bare, ...; the best run of each is used: "
        f"predq {rates(predq)} jobs/s, bare arq {rates(bare)} jobs/s",
        f"worker CPU per job (best runs): predq {best_predq.cpu_ms_per_job('worker'):.2f} ms, "
        f"bare arq {best_bare.cpu_ms_per_job('worker'):.2f} ms; all CPU ms per job: predq "
        f"[{cpu(best_predq)}]; bare arq [{cpu(best_bare)}] (Redis: the redis-server process, "
        f"from release to the last success)",
        f"timed from release to the last success; start-up excluded (predq "
        f"{best_predq.startup_s:.2f} s, bare {best_bare.startup_s:.2f} s)",
    ]


IO_JOBS = 2_000
IO_CONCURRENCY = 500
IO_LATENCY_S = 1.0
IO_POLL_S = "0.1"
#: Worker CPU per job, at most (the issue "Lean worker").
IO_CPU_MS = 1.5


async def row_io(bench: Bench) -> Result:
    """IO_JOBS one-second predictions on IO_CONCURRENCY slots of one worker: wall time against
    1.25 x the ideal, and the worker's CPU per job (the whole run's, over the jobs)."""
    ideal_s = IO_JOBS / IO_CONCURRENCY * IO_LATENCY_S
    with bench.sandbox("io-sandbox", "--latency", f"{IO_LATENCY_S:g}") as sandbox:
        run = await predq_run(
            bench, sandbox, "io-predq", IO_JOBS, 120.0,
            PREDQ_CONCURRENCY=str(IO_CONCURRENCY), PREDQ_POLL_INTERVAL_S=IO_POLL_S,
        )  # fmt: skip
        requests = int((await sandbox.stats())["requests"])
    cpu_ms = run.cpu_ms_per_job("worker")
    return Result(
        measured=run.elapsed_s,
        unit="s",
        target=Target("<=", 1.25 * ideal_s, "s"),
        shown=f"{run.elapsed_s:.2f} s ({run.elapsed_s / ideal_s:.2f} x ideal {ideal_s:g} s)",
        checks=[
            Check(cpu_ms, "ms worker CPU/job", Target("<=", IO_CPU_MS, "ms worker CPU/job")),
        ],
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
MEMORY_MB = 150
#: Polls are not what this row measures: at the default 1 s, 1,000 predictions ask for 1,000
#: polls/s, more than one worker's CPU serves (~500 requests/s here), and the creates then lag so
#: far behind that the first predictions finish before the last start (~780 in flight at once).
MEMORY_POLL_S = "5"


async def row_memory(bench: Bench) -> Result:
    """The worker's peak RSS with MEMORY_JOBS predictions in flight at once."""
    with bench.sandbox("memory-sandbox", "--latency", f"{MEMORY_LATENCY_S:g}") as sandbox:
        settings = {"PREDQ_CONCURRENCY": str(MEMORY_JOBS), "PREDQ_POLL_INTERVAL_S": MEMORY_POLL_S}
        started = predq_worker(bench, sandbox, "memory-predq", MEMORY_JOBS, **settings)
        async with started as (run, producer), sampled(run, sandbox, producer) as peaks:
            stats = await run.measure(predq_progress(producer), MEMORY_JOBS, 90.0)
    return Result(
        measured=peaks.rss.peak,
        unit="MB",
        target=Target("<", MEMORY_MB, "MB"),
        notes=[
            f"{MEMORY_JOBS:,} {MODEL} jobs, sandbox --latency {MEMORY_LATENCY_S:g}, "
            f"PREDQ_CONCURRENCY {MEMORY_JOBS}, PREDQ_POLL_INTERVAL_S {MEMORY_POLL_S} (so that "
            f"polling does not hold back creates); all done in {stats.elapsed_s:.1f} s",
            f"in flight at once: {peaks.in_flight.peak:,.0f} predictions (sandbox in_flight), "
            f"{peaks.running.peak:,.0f} running records (peaks); worker RSS idle "
            f"{peaks.idle_mb:.1f} MB, peak of {peaks.rss.samples} samples every 50 ms",
        ],
    )
