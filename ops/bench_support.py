"""What ``ops.bench`` rows are built from: results and targets, processes, timed worker runs.

- ``Result`` / ``Target`` / ``Check``: one table row, and how its gap to the target is told (a
  row with several targets adds a ``Check`` per extra measurement).
- ``Bench``: the private redis-server, the work directory (logs), and context managers that start
  a sandbox, a worker or the webhook receiver and always stop it.
- ``WorkerRun``: one or more workers measured from the moment their jobs are released. Jobs are
  enqueued first and parked (the queue key renamed away), the workers are started one after
  another, each waited for until it polls (the arq health-check key, deleted before each start,
  exists again), then the queue is renamed back: process start-up (imports) is timed separately
  and not counted in the run.
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
from sandbox.clock import parse_iso8601
from sandbox.launch import WORKER_COMMAND, SandboxProcess, stop
from sandbox.local_redis import LocalRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
BARE_ARQ_COMMAND = (sys.executable, "-m", "arq", "ops.bench_arq.Settings")
RECEIVER_PATH = "/replicate/webhook"
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
#: The API token every bench process sends (the sandbox checks it only if started with one).
API_TOKEN = PREDQ_ENV["REPLICATE_API_TOKEN"]

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
        for shares: ``14 points margin``, ``6 points short``; against a target of zero, no share:
        ``""`` when met, ``3 over`` when not."""
        diff = abs(measured - self.value)
        word = "margin" if self.met(measured) else ("short" if self.op == ">=" else "over")
        if self.unit.startswith("%"):
            return f"{fmt(diff)} points {word}"
        if not self.value:
            return "" if self.met(measured) else f"{fmt(diff)} {word}"
        share = diff / self.value * 100 if self.value else 0.0
        if self.met(measured):
            return f"{share:.0f}% margin"
        sign = "-" if self.op == ">=" else "+"
        return f"{fmt(diff)} {self.unit} {word} ({sign}{share:.0f}%)"


def _verdict(target: Target, measured: float) -> str:
    gap = target.gap(measured)
    if target.met(measured):
        return f"met ({gap})" if gap else "met"
    return f"NOT MET: {gap}"


@dataclass(frozen=True)
class Check:
    """One more measurement of a row, against a target of its own (shown on a line of its own
    in the row's measured, target and met? cells, below the row's main measurement)."""

    measured: float
    unit: str
    target: Target

    def text(self) -> str:
        return f"{fmt(self.measured)} {self.unit}"


@dataclass
class Result:
    """One row of the table. ``shown`` replaces the default ``measured unit`` text; ``checks``
    are further measurements with targets of their own; the row is met when all are."""

    name: str = ""
    measured: float | None = None
    unit: str = ""
    target: Target | None = None
    shown: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    checks: list[Check] = field(default_factory=list)

    def measured_text(self) -> str:
        if self.error is not None:
            return "-"
        main = self.shown if self.shown is not None else f"{fmt(self.measured or 0.0)} {self.unit}"
        return "\n".join([main.strip(), *(check.text() for check in self.checks)])

    def target_text(self) -> str:
        main = self.target.text() if self.target is not None else "none (reported)"
        return "\n".join([main, *(check.target.text() for check in self.checks)])

    def verdict(self) -> str:
        if self.error is not None:
            return "FAILED (see notes)"
        main = "-"
        if self.target is not None and self.measured is not None:
            main = _verdict(self.target, self.measured)
        return "\n".join([main, *(_verdict(c.target, c.measured) for c in self.checks)])

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and (self.target is None or self.measured is None or self.target.met(self.measured))
            and all(check.target.met(check.measured) for check in self.checks)
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

    async def created_times(self) -> list[float]:
        """Every prediction's ``created_at`` (unix seconds), oldest first, read page by page from
        ``GET /v1/predictions`` (100 per page; these count in ``requests``, not in ``polls``)."""
        times: list[float] = []
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=10, headers=headers) as http:
            url: str | None = "/v1/predictions"
            while url is not None:
                response = await http.get(url)
                response.raise_for_status()
                page = response.json()
                times.extend(parse_iso8601(p["created_at"]) for p in page["results"])
                url = page["next"]
        return sorted(times)


@dataclass
class Receiver:
    """A running ``python -m worker.webhook_receiver``: its webhook URL and its process."""

    process: Worker
    port: int

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{RECEIVER_PATH}"

    @property
    def pid(self) -> int:
        return self.process.pid

    async def healthy(self) -> bool:
        self.process.check_alive()
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                response = await http.get(f"http://127.0.0.1:{self.port}/health")
        except httpx.TransportError:
            return False
        return response.status_code == 200


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
                "REPLICATE_BASE_URL": sandbox.url, "REPLICATE_API_TOKEN": API_TOKEN}  # fmt: skip

    @asynccontextmanager
    async def webhook_receiver(self, name: str, sandbox: Sandbox) -> AsyncIterator[Receiver]:
        """The webhook receiver on a free local port, healthy; it asks ``sandbox`` for the signing
        secret at start-up (as it asks Replicate without ``PREDQ_WEBHOOK_SECRET``)."""
        port = free_port()
        command = (sys.executable, "-m", "worker.webhook_receiver", "--host", "127.0.0.1",
                   "--port", str(port))  # fmt: skip
        env = {**base_env(), "REDIS_URL": self.redis_url, "REPLICATE_BASE_URL": sandbox.url,
               "REPLICATE_API_TOKEN": API_TOKEN, "PREDQ_LOG_LEVEL": PREDQ_ENV["PREDQ_LOG_LEVEL"],
               "PREDQ_LOG_FORMAT": PREDQ_ENV["PREDQ_LOG_FORMAT"]}  # fmt: skip
        with self.worker(name, command, env) as process:
            receiver = Receiver(process, port)
            await wait_for(receiver.healthy, timeout_s=READY_TIMEOUT_S, what=f"{name} start-up",
                           interval_s=0.05)  # fmt: skip
            yield receiver

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
    """Start workers on parked jobs, release them, time them to the end; always stop them.

    async with WorkerRun(bench, "predq", PREDQ_COMMAND, env, queue, sandbox) as run:
        stats = await run.measure(progress, jobs, timeout_s)

    ``workers`` > 1 starts that many identical processes (logs ``{name}-1.log``, ...), one after
    another, each ready before the next starts; ``startup_s`` is then the time for all of them.
    """

    def __init__(self, bench: Bench, name: str, command: tuple[str, ...], env: dict[str, str],
                 queue: str, sandbox: Sandbox, workers: int = 1) -> None:  # fmt: skip
        self.bench = bench
        self.name = name
        self.command = command
        self.env = env
        self.queue = queue
        self.sandbox = sandbox
        self.count = workers
        self.startup_s = 0.0
        self._stack = ExitStack()
        self.workers: list[Worker] = []

    @property
    def worker(self) -> Worker | None:
        """The first (or only) worker, once started."""
        return self.workers[0] if self.workers else None

    def _names(self) -> list[str]:
        if self.count == 1:
            return [self.name]
        return [f"{self.name}-{n}" for n in range(1, self.count + 1)]

    async def __aenter__(self) -> Self:
        redis = self.bench.redis
        if await redis.exists(self.queue):
            await redis.rename(self.queue, self.queue + PARKED_SUFFIX)
        started = time.monotonic()
        try:
            for name in self._names():
                # Every worker of the queue writes the same health-check key: gone until this
                # one polls (the others rewrite theirs only every health_check_interval, 10 s).
                await redis.delete(self._health_key)
                worker = self._stack.enter_context(self.bench.worker(name, self.command, self.env))
                self.workers.append(worker)
                await self._wait_ready(worker, name)
        except BaseException:
            self._stack.close()
            raise
        self.startup_s = time.monotonic() - started
        return self

    @property
    def _health_key(self) -> str:
        return f"{self.queue}:health-check"

    async def _wait_ready(self, worker: Worker, name: str) -> None:
        async def ready() -> bool:
            worker.check_alive()
            return bool(await self.bench.redis.exists(self._health_key))

        await wait_for(ready, timeout_s=READY_TIMEOUT_S, what=f"{name} start-up")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    async def measure(
        self,
        progress: Progress,
        jobs: int,
        timeout_s: float,
        others: dict[str, int] | None = None,
    ) -> RunStats:
        """Release the parked jobs and wait until ``jobs`` succeeded (raises on any failure).

        CPU is counted for each worker (``worker``, or ``worker-1``, ... with several), the
        sandbox, Redis and the processes in ``others`` (name: pid)."""
        assert self.workers
        names = ["worker"] if self.count == 1 else [f"worker-{n}" for n in range(1, self.count + 1)]
        pids = {**{name: w.pid for name, w in zip(names, self.workers, strict=True)},
                "sandbox": self.sandbox.pid, "redis": await self.bench.redis_pid(),
                **(others or {})}  # fmt: skip
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
        workers = self.workers
        assert workers

        async def done() -> bool:
            succeeded, failed = await progress()
            if failed:
                logs = ", ".join(str(w.log) for w in workers)
                raise RuntimeError(f"{self.name}: {failed} jobs failed; see {logs}")
            for worker in workers:
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
