"""What ``ops.bench`` rows are built from: results and targets, processes, timed worker runs.

- ``Result`` / ``Target``: one table row, and how its gap to the target is told.
- ``Bench``: the private redis-server, the work directory (logs), and context managers that start
  a sandbox or a worker and always stop it.
- ``WorkerRun``: a worker measured from the moment its jobs are released. Jobs are enqueued
  first and parked (the queue key renamed away), the worker is started and waits until it polls
  (its arq health-check key exists), then the queue is renamed back: process start-up (imports)
  is timed separately and not counted in the run.
- ``PeakSampler`` / ``rss_sampler``, ``cpu_seconds``: peaks sampled in the background, and what a
  process used (from /proc).
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import redis.asyncio as aioredis

from producer.client import Producer
from producer.config import Config
from sandbox.launch import WORKER_COMMAND, SandboxProcess, stop
from sandbox.local_redis import LocalRedis

ROOT = Path(__file__).resolve().parent.parent
BARE_ARQ_COMMAND = (sys.executable, "-m", "arq", "ops.bench_arq.Settings")
PREDQ_COMMAND = WORKER_COMMAND
PARKED_SUFFIX = ":bench-parked"
READY_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1
#: Creates and requests per minute for predq's shared rate limiter: far above anything a bench
#: run reaches, so the limiter does all its work (one Redis call per request) but never paces.
#: At Replicate's published limits (the defaults, 600 creates/min) every worker row would only
#: measure the pacing; the limiter's own row measures that.
UNBINDING_PER_MIN = "6000000"
#: What every predq worker in the bench runs with, unless a row says otherwise.
PREDQ_ENV = {
    "PREDQ_CREATES_PER_MIN": UNBINDING_PER_MIN,
    "PREDQ_REQUESTS_PER_MIN": UNBINDING_PER_MIN,
    "PREDQ_LOG_LEVEL": "WARNING",
    "PREDQ_LOG_FORMAT": "json",
    "PREDQ_QUEUE_POLL_S": "0.05",
    "PREDQ_SHUTDOWN_GRACE_S": "5",
    "REPLICATE_API_TOKEN": "bench",
}

_SYMBOLS = {">=": "≥", "<=": "≤", "<": "<"}

Progress = Callable[[], Awaitable[tuple[int, int]]]
"""Returns (succeeded, failed) jobs so far."""


def fmt(value: float) -> str:
    """A number with as many digits as it deserves: 12,345 / 123 / 80 / 12.3 / 1.23."""
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass(frozen=True)
class Target:
    """``measured <op> value``, e.g. ``Target(">=", 3000, "jobs/s")``.

    A unit starting with ``%`` is a share: its gap is told in percentage points.
    """

    op: Literal[">=", "<=", "<"]
    value: float
    unit: str

    def met(self, measured: float) -> bool:
        if self.op == ">=":
            return measured >= self.value
        if self.op == "<=":
            return measured <= self.value
        return measured < self.value

    def _amount(self, value: float) -> str:
        if self.unit.startswith("%"):
            return f"{fmt(value)}{self.unit}"
        return f"{fmt(value)} {self.unit}"

    def text(self) -> str:
        return f"{_SYMBOLS[self.op]} {self._amount(self.value)}"

    def gap(self, measured: float) -> str:
        """How far from the target: ``32% margin``, ``360 jobs/s short (-12%)``, or in points
        for shares: ``14 points margin``, ``6 points short``."""
        diff = abs(measured - self.value)
        word = "margin" if self.met(measured) else ("short" if self.op == ">=" else "over")
        if self.unit.startswith("%"):
            return f"{fmt(diff)} points {word}"
        share = diff / self.value * 100 if self.value else 0.0
        if self.met(measured):
            return f"{share:.0f}% margin"
        sign = "-" if self.op == ">=" else "+"
        return f"{fmt(diff)} {self.unit} {word} ({sign}{share:.0f}%)"


@dataclass
class Result:
    """One row of the table. ``shown`` replaces the default ``measured unit`` text."""

    name: str = ""
    measured: float | None = None
    unit: str = ""
    target: Target | None = None
    shown: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def measured_text(self) -> str:
        if self.error is not None:
            return "-"
        if self.shown is not None:
            return self.shown
        return f"{fmt(self.measured or 0.0)} {self.unit}".strip()

    def target_text(self) -> str:
        return self.target.text() if self.target is not None else "none (reported)"

    def verdict(self) -> str:
        if self.error is not None:
            return "FAILED (see notes)"
        if self.target is None or self.measured is None:
            return "-"
        if self.target.met(self.measured):
            return f"met ({self.target.gap(self.measured)})"
        return f"NOT MET: {self.target.gap(self.measured)}"

    @property
    def ok(self) -> bool:
        return self.error is None and (
            self.target is None or self.measured is None or self.target.met(self.measured)
        )


@dataclass
class Sandbox:
    """A running ``python -m sandbox``: where it listens and its pid."""

    process: SandboxProcess
    log: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def pid(self) -> int:
        return self.process.process.pid

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            stats: dict[str, Any] = (await http.get("/sandbox/stats")).json()
            return stats

    async def reset(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            (await http.post("/sandbox/reset")).raise_for_status()


class Bench:
    """Shared by every row: the private Redis, the work directory, process starters."""

    def __init__(self, redis_server: LocalRedis, workdir: Path) -> None:
        self.redis_server = redis_server
        self.workdir = workdir
        self.redis: aioredis.Redis = aioredis.Redis.from_url(redis_server.url)

    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def flush(self) -> None:
        """Forget every key (each row starts from an empty Redis)."""
        await self.redis.flushall()

    def producer(self) -> Producer:
        return Producer(config=Config.from_env({}, redis_url=self.redis_url))

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    async def redis_pid(self) -> int:
        info = await self.redis.info("server")
        return int(info["process_id"])

    @contextmanager
    def sandbox(self, name: str, *args: str) -> Iterator[Sandbox]:
        log = self.log(name)
        process = SandboxProcess(["--log-level", "warning", *args], log)
        try:
            yield Sandbox(process, log)
        finally:
            process.stop()

    def predq_env(self, sandbox: Sandbox, **settings: str) -> dict[str, str]:
        """A predq worker's whole environment: the bench's defaults, then ``settings``."""
        return {**base_env(), **PREDQ_ENV, **settings, "REDIS_URL": self.redis_url,
                "REPLICATE_BASE_URL": sandbox.url}  # fmt: skip

    def bare_env(self, sandbox: Sandbox, **settings: str) -> dict[str, str]:
        return {**base_env(), **settings, "REDIS_URL": self.redis_url,
                "REPLICATE_BASE_URL": sandbox.url, "REPLICATE_API_TOKEN": "bench"}  # fmt: skip

    @contextmanager
    def worker(self, name: str, command: tuple[str, ...], env: dict[str, str]) -> Iterator[Worker]:
        log = self.log(name)
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        try:
            yield Worker(process, log)
        finally:
            stop([process], timeout_s=20)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"the worker exited with code {code}; see {self.log}")


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the bench dies (Linux), so no worker outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def base_env() -> dict[str, str]:
    """This process's environment without any predq, Replicate or Redis settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREDQ_", "REPLICATE_", "BENCH_")) and k != "REDIS_URL"
    }


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.01,
) -> float:
    """Poll ``check`` until it is true; returns the seconds it took, or raises TimeoutError."""
    started = time.monotonic()
    deadline = started + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout_s:g} s")
        await asyncio.sleep(interval_s)
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler:
    """Calls ``read`` every ``interval_s`` in the background and keeps the largest value.

    ``read`` raising OSError (the process is gone) ends the sampling; anything else propagates
    out of the ``async with`` block's exit.
    """

    def __init__(self, read: Callable[[], Awaitable[float]], interval_s: float) -> None:
        self.read = read
        self.interval_s = interval_s
        self.peak = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            try:
                value = await self.read()
            except OSError:
                return
            self.peak = max(self.peak, value)
            self.samples += 1
            await asyncio.sleep(self.interval_s)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is None:
            return
        self._task.cancel()
        [outcome] = await asyncio.gather(self._task, return_exceptions=True)
        if isinstance(outcome, Exception) and exc is None:
            raise outcome


def rss_sampler(pid: int, interval_s: float = 0.05) -> PeakSampler:
    """The peak VmRSS (MB) of process ``pid``, sampled every ``interval_s``."""

    async def read() -> float:
        return rss_mb(pid)

    return PeakSampler(read, interval_s)


@dataclass
class RunStats:
    """One timed worker run: jobs released at once, then run to the end."""

    jobs: int
    elapsed_s: float
    startup_s: float
    cpu_s: dict[str, float]

    @property
    def rate(self) -> float:
        return self.jobs / self.elapsed_s

    def cpu_ms_per_job(self, name: str) -> float:
        return self.cpu_s[name] / self.jobs * 1000


class WorkerRun:
    """Start a worker on parked jobs, release them, time them to the end; always stop it.

    async with WorkerRun(bench, "predq", PREDQ_COMMAND, env, queue, sandbox) as run:
        stats = await run.measure(progress, jobs, timeout_s)
    """

    def __init__(self, bench: Bench, name: str, command: tuple[str, ...], env: dict[str, str],
                 queue: str, sandbox: Sandbox) -> None:  # fmt: skip
        self.bench = bench
        self.name = name
        self.command = command
        self.env = env
        self.queue = queue
        self.sandbox = sandbox
        self.startup_s = 0.0
        self._stack = ExitStack()
        self.worker: Worker | None = None

    async def __aenter__(self) -> Self:
        redis = self.bench.redis
        if await redis.exists(self.queue):
            await redis.rename(self.queue, self.queue + PARKED_SUFFIX)
        started = time.monotonic()
        self.worker = self._stack.enter_context(
            self.bench.worker(self.name, self.command, self.env)
        )
        try:
            await self._wait_ready()
        except BaseException:
            self._stack.close()
            raise
        self.startup_s = time.monotonic() - started
        return self

    async def _wait_ready(self) -> None:
        worker = self.worker
        assert worker is not None

        async def ready() -> bool:
            worker.check_alive()
            return bool(await self.bench.redis.exists(f"{self.queue}:health-check"))

        await wait_for(ready, timeout_s=READY_TIMEOUT_S, what=f"{self.name} start-up")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    async def measure(self, progress: Progress, jobs: int, timeout_s: float) -> RunStats:
        """Release the parked jobs and wait until ``jobs`` succeeded (raises on any failure)."""
        assert self.worker is not None
        pids = {"worker": self.worker.pid, "sandbox": self.sandbox.pid,
                "redis": await self.bench.redis_pid()}  # fmt: skip
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        if await self.bench.redis.exists(self.queue + PARKED_SUFFIX):
            await self.bench.redis.rename(self.queue + PARKED_SUFFIX, self.queue)
        await wait_for(
            self._done_check(progress, jobs), timeout_s=timeout_s, what=f"{self.name}: {jobs} jobs"
        )
        elapsed = time.monotonic() - started
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        return RunStats(jobs, elapsed, self.startup_s, cpu)

    def _done_check(self, progress: Progress, jobs: int) -> Callable[[], Awaitable[bool]]:
        worker = self.worker
        assert worker is not None

        async def done() -> bool:
            succeeded, failed = await progress()
            if failed:
                raise RuntimeError(f"{self.name}: {failed} jobs failed; see {worker.log}")
            worker.check_alive()
            return succeeded >= jobs

        return done


async def enqueue_in_batches(
    producer: Producer, jobs: list[dict[str, Any]], batch: int = 1000
) -> None:
    for start in range(0, len(jobs), batch):
        await producer.enqueue_many(jobs[start : start + batch])


@asynccontextmanager
async def private_redis(workdir: Path) -> AsyncIterator[LocalRedis]:
    """A redis-server of the bench's own (never the shared one), without persistence."""
    with LocalRedis(data_dir=workdir / "redis", appendonly=False) as server:
        yield server


def machine_facts(redis_version: str) -> list[str]:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("arq", "redis", "hiredis", "replicate", "httpx")
    )
    return [
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        f"Python {platform.python_version()} ({sys.implementation.name}), "
        f"Redis {redis_version} (private redis-server, no persistence), {versions}",
    ]
