"""``WorkerRun``: one or more workers measured from the moment their jobs are released.

Jobs are enqueued first and parked (the queue key renamed away), the workers are started one after
another, each waited for until it polls (the arq health-check key, deleted before each start,
exists again), then the queue is renamed back: process start-up (imports) is timed separately and
not counted in the run. ``RunStats`` is what one run measured.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from devkit.wait import eventually
from ops.bench.harness import Bench, Sandbox, Worker
from ops.bench.sampling import cpu_seconds

PARKED_SUFFIX = ":bench-parked"
READY_TIMEOUT_S = 30.0
#: How often a run checks whether its workers are ready, or done.
CHECK_INTERVAL_S = 0.01

Progress = Callable[[], Awaitable[tuple[int, int]]]
"""Returns (succeeded, failed) jobs so far."""


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

    def busy(self) -> str:
        """Each process's CPU as a share of the run's wall time: ``worker 85%, sandbox 40%``."""
        return ", ".join(f"{name} {cpu / self.elapsed_s:.0%}" for name, cpu in self.cpu_s.items())


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

        await eventually(ready, timeout_s=READY_TIMEOUT_S, what=f"{name} start-up",
                         interval_s=CHECK_INTERVAL_S)  # fmt: skip

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
        await eventually(self._done_check(progress, jobs), timeout_s=timeout_s,
                         what=f"{self.name}: {jobs} jobs", interval_s=CHECK_INTERVAL_S)  # fmt: skip
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
