"""Rows 6 and "idle": what a job costs Redis in commands, and what an idle worker costs."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from devkit.wait import eventually
from ops.bench.harness import PREDQ_COMMAND, Bench, enqueue_in_batches
from ops.bench.monitor import Monitored, Tally, calls, top
from ops.bench.runs import MODEL, QUEUE, echo_jobs, predq_progress, predq_worker
from ops.bench.sampling import cpu_seconds
from ops.bench.table import Check, Result, Target, fmt
from ops.bench.worker_run import PARKED_SUFFIX, Progress, WorkerRun
from producer.client import Producer
from producer.models import JobState
from worker.config import WorkerConfig

COMMANDS_JOBS = 1_000
COMMANDS_CONCURRENCY = "300"
COMMANDS_POLL_S = "0.05"
COMMANDS_PER_JOB = 20


async def row_redis_commands(bench: Bench) -> Result:
    """Redis commands per job from the worker's claim to the job's success, counted with MONITOR
    (those inside Lua scripts included), on the plain path: the prediction ends within the held
    create (sandbox --latency 0), no retries. The same jobs again without MONITOR give Redis's
    own count (``INFO commandstats``) and its CPU."""
    settings = {"PREDQ_CONCURRENCY": COMMANDS_CONCURRENCY, "PREDQ_POLL_INTERVAL_S": COMMANDS_POLL_S,
                "PREDQ_QUEUE_POLL_S": COMMANDS_POLL_S}  # fmt: skip
    with bench.sandbox("commands-sandbox", "--latency", "0") as sandbox:
        await bench.flush()
        await sandbox.reset()
        env = bench.predq_env(sandbox, **settings)
        async with Monitored(bench.redis_url) as monitored, bench.producer() as producer:
            await monitored.phase("enqueue")
            await enqueue_in_batches(producer, echo_jobs(COMMANDS_JOBS), batch=500)
            await monitored.phase("start-up")
            async with (
                WorkerRun(bench, "commands-predq", PREDQ_COMMAND, env, QUEUE, sandbox),
                Producer(config=producer.config, redis=monitored.own) as watcher,
            ):
                await monitored.phase("run")
                await monitored.own.rename(QUEUE + PARKED_SUFFIX, QUEUE)
                await eventually(_done(predq_progress(watcher), COMMANDS_JOBS), timeout_s=60,
                                 what=f"{COMMANDS_JOBS} jobs", interval_s=0.05)  # fmt: skip
                await monitored.phase("after")
        # The same run without MONITOR: Redis's own count, its CPU, and the worker's.
        started = predq_worker(bench, sandbox, "commands-predq-2", COMMANDS_JOBS, **settings)
        async with started as (run, producer):
            await bench.redis.config_resetstat()
            polls = _Counted(predq_progress(producer))
            stats = await run.measure(polls, COMMANDS_JOBS, 60.0)
            commandstats = await bench.redis.info("commandstats")
    # The bench's own: the reset, INFO server (Redis's pid), EXISTS and RENAME (the release),
    # a ZCARD per state per poll.
    own = {"config|resetstat": 1, "info": 1, "exists": 1, "rename": 1,
           "zcard": polls.calls * len(JobState)}  # fmt: skip
    counted = sum(calls(commandstats, own).values()) / COMMANDS_JOBS
    jobs = COMMANDS_JOBS
    run_phase, enqueue = monitored.phases["run"], monitored.phases["enqueue"]
    per_job, sent = run_phase.total / jobs, run_phase.client.total() / jobs
    return Result(
        measured=per_job,
        unit="commands/job",
        target=Target("<=", COMMANDS_PER_JOB, "commands/job"),
        shown=f"{per_job:.1f} commands/job, claim to success, Lua included "
        f"(+{enqueue.total / jobs:.1f} to enqueue)",
        checks=[Check(sent, "client-sent/job", Target("<=", COMMANDS_PER_JOB, "client-sent/job"))],
        notes=[
            f"{jobs:,} {MODEL} jobs, sandbox --latency 0 (the prediction ends within the held "
            f"create), no retries; enqueue_many (500 per call) with the queue parked, then one "
            f"worker (PREDQ_CONCURRENCY {COMMANDS_CONCURRENCY}, PREDQ_QUEUE_POLL_S and "
            f"PREDQ_IDLE_POLL_S {COMMANDS_POLL_S}) released on them; counted with MONITOR from the "
            f"release to the "
            f"last success (the worker's idle queue polls at the end included; the bench's own "
            f"connection, which releases and polls, left out)",
            f"claim to success, per job: {_split(run_phase, jobs)}",
            f"enqueue, per job: {_split(enqueue, jobs)}",
            f"without MONITOR, the same run: {counted:.1f} commands/job claim to success (INFO "
            f"commandstats, the bench's own left out), Redis CPU "
            f"{stats.cpu_ms_per_job('redis'):.3f} ms/job, worker CPU "
            f"{stats.cpu_ms_per_job('worker'):.2f} ms/job, {fmt(stats.rate)} jobs/s",
        ],
    )


def _split(tally: Tally, jobs: int) -> str:
    return (
        f"sent by clients {tally.client.total() / jobs:.2f} [{top(tally.client, jobs)}]; "
        f"inside Lua {tally.lua.total() / jobs:.2f} [{top(tally.lua, jobs)}]"
    )


def _done(progress: Progress, jobs: int) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        succeeded, failed = await progress()
        if failed:
            raise RuntimeError(f"{failed} jobs failed")
        return succeeded >= jobs

    return done


class _Counted:
    """A ``Progress`` that counts its calls (each is a ZCARD per state)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.calls = 0

    async def __call__(self) -> tuple[int, int]:
        self.calls += 1
        return await self.progress()


IDLE_SETTLE_S = 2.0
IDLE_WINDOW_S = 20.0
IDLE_CPU_PERCENT = 0.5
IDLE_COMMANDS_S = 2.0
#: The bench's settings the idle worker runs without (at the worker's defaults).
IDLE_DEFAULTS = ("PREDQ_QUEUE_POLL_S", "PREDQ_IDLE_POLL_S")


async def row_idle(bench: Bench) -> Result:
    """One predq worker on an empty queue, its start-up done: its CPU as a share of one core, and
    the Redis commands per second it costs (``INFO commandstats``, Lua included; MONITOR for the
    ones it sends), over IDLE_WINDOW_S."""
    with bench.sandbox("idle-sandbox") as sandbox:
        env = bench.predq_env(sandbox)
        for name in IDLE_DEFAULTS:  # what an idle worker in production polls at
            env.pop(name, None)
        async with WorkerRun(bench, "idle-predq", PREDQ_COMMAND, env, QUEUE, sandbox) as run:
            assert run.worker is not None
            await asyncio.sleep(IDLE_SETTLE_S)
            async with Monitored(bench.redis_url) as monitored:
                await monitored.phase("idle")
                before = await monitored.own.info("commandstats")
                cpu_before, started = cpu_seconds(run.worker.pid), time.monotonic()
                await asyncio.sleep(IDLE_WINDOW_S)
                after = await monitored.own.info("commandstats")
                elapsed_s = time.monotonic() - started
                cpu_s = cpu_seconds(run.worker.pid) - cpu_before
                run.worker.check_alive()
    # The first INFO counts in the second one's numbers.
    counted = Counter(calls(after, {"info": 1}))
    counted.subtract(calls(before, {}))
    commands_s = counted.total() / elapsed_s
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    idle = monitored.phases["idle"]
    cpu_percent = cpu_s / elapsed_s * 100
    return Result(
        measured=cpu_percent,
        unit="% of a core",
        target=Target("<", IDLE_CPU_PERCENT, "% of a core"),
        shown=f"{cpu_percent:.2f}% of a core ({cpu_s * 1000:.0f} ms CPU in {elapsed_s:.0f} s)",
        checks=[Check(commands_s, "commands/s", Target("<=", IDLE_COMMANDS_S, "commands/s"))],
        notes=[
            f"one predq worker (the bench's settings, polling at the worker's defaults: "
            f"{_defaults()}) on an empty queue, measured "
            f"for {elapsed_s:.1f} s from {IDLE_SETTLE_S:g} s after its first queue poll; CPU "
            f"from /proc, in clock ticks of {tick_s * 1000:g} ms (a resolution of "
            f"{tick_s / elapsed_s * 100:.2f}% of a core here)",
            f"Redis commands/s from INFO commandstats (Lua included): {top(counted, elapsed_s)}; "
            f"MONITOR: sent by the worker {idle.client.total() / elapsed_s:.2f}/s "
            f"[{top(idle.client, elapsed_s)}], inside Lua {idle.lua.total() / elapsed_s:.2f}/s",
        ],
    )


def _defaults() -> str:
    """``PREDQ_QUEUE_POLL_S 0.2 s, ...``: the worker's defaults of IDLE_DEFAULTS."""
    fields = {field.alias: field.default for field in WorkerConfig.model_fields.values()}
    return ", ".join(f"{name} {fields[name]:g} s" for name in IDLE_DEFAULTS if name in fields)
