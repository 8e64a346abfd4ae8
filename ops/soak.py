"""The soak: thousands of jobs through several workers while things break, then an audit.

    python -m ops.soak --jobs 5000 --workers 3        (make soak)

Starts a private redis-server with ops/redis.conf, the sandbox injecting throttling (429), server
errors (5xx) and slow responses, and worker processes. While the jobs run it SIGKILLs a worker and
restarts it (twice) and restarts Redis (once). Then it audits: every job's final state, the
predictions the sandbox created per job (duplicates are predictions paid twice), jobs lost
(acknowledged by enqueue but missing or unfinished), and how long killed workers' jobs took to be
taken over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devkit.control import SandboxControl
from devkit.launch import SandboxProcess, clean_env, start_worker, stop
from devkit.local_redis import LocalRedis
from producer import RedisUnavailable
from producer.client import Producer
from producer.config import Config
from producer.models import JobRecord, JobState

REDIS_CONF = Path(__file__).resolve().parent / "redis.conf"
WORKER_ENV = {
    "PREDQ_LEASE_S": "5",
    "PREDQ_CONCURRENCY": "100",
    "PREDQ_MAX_ATTEMPTS": "12",
    "PREDQ_ATTEMPT_TIMEOUT_S": "60",
    "PREDQ_CREATE_TIMEOUT_S": "2",
    "PREDQ_BACKOFF_BASE_S": "0.2",
    "PREDQ_BACKOFF_MAX_S": "3",
    "PREDQ_POLL_INTERVAL_S": "0.25",
    "PREDQ_QUEUE_POLL_S": "0.05",
    "PREDQ_SHUTDOWN_GRACE_S": "5",
    "PREDQ_LOG_FORMAT": "json",
    "REPLICATE_API_TOKEN": "r8_predq-soak-token-0000000000",
    # The sandbox here enforces no account limits; predq's limiter has its own test and bench row.
    "PREDQ_CREATES_PER_MIN": "0",
    "PREDQ_REQUESTS_PER_MIN": "0",
}


@dataclass
class SoakReport:
    jobs: int
    states: Counter[str]
    created: int
    duplicates: int
    lost: list[str]
    recovery_s: list[float]
    events: list[str] = field(default_factory=list)
    sandbox: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and self.duplicates == 0
            and self.states.get(JobState.SUCCEEDED.value, 0) == self.jobs
        )

    def render(self) -> str:
        lines = [f"soak: {self.jobs} jobs in {self.wall_s:.1f} s"]
        lines += [f"  chaos: {event}" for event in self.events]
        for state in JobState:
            if self.states.get(state.value):
                lines.append(f"  {state.value:<10} {self.states[state.value]:>6}")
        lines.append(
            f"  predictions created: {self.created} ({self.created / self.jobs:.3f} per job), "
            f"duplicates: {self.duplicates}"
        )
        lines.append(f"  lost jobs: {len(self.lost)}")
        if self.recovery_s:
            lines.append(
                f"  recovered after a worker kill: {len(self.recovery_s)} jobs, "
                f"median {statistics.median(self.recovery_s):.1f} s, "
                f"max {max(self.recovery_s):.1f} s"
            )
        s = self.sandbox
        lines.append(
            f"  sandbox: {s.get('requests')} requests, {s.get('throttled')} throttled, "
            f"{s.get('server_errors')} server errors, {s.get('slow')} slow, "
            f"{s.get('canceled')} canceled"
        )
        lines.append("  RESULT: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


class Soak:
    def __init__(
        self, jobs: int, workers: int, workdir: Path, seed: int, *, timeout_s: float = 600
    ) -> None:
        self.timeout_s = timeout_s
        self.jobs = jobs
        self.worker_count = workers
        self.workdir = workdir
        self.seed = seed
        self.events: list[str] = []
        self.kills_at: list[tuple[datetime, Path]] = []
        self.kills = 0
        self.worker_logs: list[Path] = []
        self.started_workers = 0
        self.started = time.monotonic()

    def _event(self, text: str) -> None:
        self.events.append(f"t={time.monotonic() - self.started:5.1f}s {text}")

    async def run(self) -> SoakReport:
        with LocalRedis(data_dir=self.workdir / "redis", config_file=REDIS_CONF) as redis_server:
            sandbox = SandboxProcess(
                ["--latency", "0.5", "--throttle-rate", "0.10", "--error-rate", "0.05",
                 "--slow-rate", "0.02", "--slow-s", "3", "--retry-after", "1",
                 "--fault-on", "create,get,cancel,list", "--seed", str(self.seed)],
                self.workdir / "sandbox.log",
            )  # fmt: skip
            env = {**clean_env(), **WORKER_ENV, "REDIS_URL": redis_server.url,
                   "REPLICATE_BASE_URL": sandbox.url}  # fmt: skip
            workers = [self._start_worker(env, n) for n in range(self.worker_count)]
            config = Config.from_env({}, redis_url=redis_server.url, redis_timeout_s=2)
            try:
                async with Producer(config=config) as producer:
                    ids = await self._enqueue_all(producer)
                    await self._chaos(producer, redis_server, workers, env, ids)
                    records = await self._wait_all(producer, ids, self.timeout_s)
                control = SandboxControl(sandbox.url)
                stats = control.stats()
                control.close()
            finally:
                stop(workers)
                sandbox.stop()
        states = Counter(r.state.value for r in records.values() if r is not None)
        lost = [i for i in ids if records.get(i) is None or not records[i].is_final]  # type: ignore[union-attr]
        return SoakReport(
            jobs=len(ids),
            states=states,
            created=stats["created"],
            duplicates=stats["duplicate_inputs"],
            lost=lost,
            recovery_s=self._recovery_times(),
            events=self.events,
            sandbox=stats,
            wall_s=time.monotonic() - self.started,
        )

    def _start_worker(self, env: dict[str, str], slot: int) -> Any:
        """A worker in ``slot``; each process gets its own log (a restart gets a new one)."""
        self.started_workers += 1
        log = self.workdir / f"worker-{self.started_workers}.log"
        if slot < len(self.worker_logs):
            self.worker_logs[slot] = log
        else:
            self.worker_logs.append(log)
        return start_worker(env, log)

    async def _enqueue_all(self, producer: Producer) -> list[str]:
        ids: list[str] = []
        for start in range(0, self.jobs, 500):
            batch = range(start, min(start + 500, self.jobs))
            records = await asyncio.gather(*(self._enqueue(producer, n) for n in batch))
            ids += [r.id for r in records]
        self._event(f"enqueued {len(ids)} jobs")
        return ids

    async def _enqueue(self, producer: Producer, n: int) -> JobRecord:
        """Enqueue job n, retrying through a Redis outage: the idempotency key makes it safe."""
        while True:
            try:
                return await producer.enqueue(
                    "sandbox/echo", {"job": n, "seed": self.seed}, idempotency_key=f"soak-{n}"
                )
            except RedisUnavailable:
                await asyncio.sleep(0.2)

    async def _finished(self, producer: Producer, ids: list[str]) -> int:
        while True:
            try:
                counts = await producer.counts()
                return sum(n for state, n in counts.items() if state.is_final)
            except RedisUnavailable:
                await asyncio.sleep(0.2)

    async def _chaos(
        self,
        producer: Producer,
        redis_server: LocalRedis,
        workers: list[Any],
        env: dict[str, str],
        ids: list[str],
    ) -> None:
        plan = [(0.15, "kill"), (0.40, "redis"), (0.65, "kill")]
        for fraction, action in plan:
            while await self._finished(producer, ids) < fraction * len(ids):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            if action == "kill":
                await self._kill_worker(workers, env)
            else:
                redis_server.stop()
                self._event("redis stopped")
                await asyncio.sleep(1.0)
                redis_server.start()
                self._event("redis restarted")

    async def _kill_worker(self, workers: list[Any], env: dict[str, str]) -> None:
        slot = self.kills % len(workers)  # a different worker each time, one that has jobs
        victim = workers[slot]
        victim.kill()
        victim.wait()
        self.kills_at.append((datetime.now(UTC), self.worker_logs[slot]))
        self.kills += 1
        self._event(f"SIGKILLed worker {slot} (pid {victim.pid})")
        await asyncio.sleep(2.0)
        workers[slot] = self._start_worker(env, slot)
        self._event(f"restarted worker {slot}")

    def _recovery_times(self) -> list[float]:
        """For every job a killed worker was running, seconds from the kill to its recovery.

        Read from the workers' logs: the victim's log says which jobs it had in flight (started,
        never ended), the others' ``job.recovered`` events say when each was taken over.
        """
        recovered: dict[str, datetime] = {}
        for log in self.workdir.glob("worker-*.log"):
            for event in _events(log):
                if event.get("event") == "job.recovered":
                    at = datetime.fromisoformat(event["timestamp"])
                    recovered.setdefault(event["job_id"], at)
                    recovered[event["job_id"]] = min(recovered[event["job_id"]], at)
        times = []
        for killed_at, log in self.kills_at:
            for job_id in _in_flight(log, before=killed_at):
                if job_id in recovered and recovered[job_id] > killed_at:
                    times.append((recovered[job_id] - killed_at).total_seconds())
        return sorted(times)

    async def _wait_all(
        self, producer: Producer, ids: list[str], timeout_s: float = 600
    ) -> dict[str, JobRecord | None]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self._finished(producer, ids) >= len(ids):
                break
            await asyncio.sleep(0.25)
        records: dict[str, JobRecord | None] = {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            records.update(zip(chunk, await producer.get_many(chunk), strict=True))
        return records


_ENDS = {"job.succeeded", "job.failed", "job.canceled", "job.retrying", "job.handed_over",
         "job.stopped", "job.outcome_discarded", "job.handed_back"}  # fmt: skip


def _events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"job_id"' in line:
            try:
                events.append(json.loads(line))
            except ValueError:  # a line cut short by a SIGKILL
                continue
    return events


def _in_flight(log: Path, *, before: datetime) -> set[str]:
    """Jobs that ``log``'s worker had started and not ended by ``before``."""
    running: set[str] = set()
    for event in _events(log):
        if datetime.fromisoformat(event["timestamp"]) > before:
            break
        if event.get("event") in ("job.running", "job.recovered"):
            running.add(event["job_id"])
        elif event.get("event") in _ENDS:
            running.discard(event["job_id"])
    return running


def run_soak(
    jobs: int,
    workers: int = 3,
    seed: int = 1,
    workdir: Path | None = None,
    timeout_s: float = 600,
) -> SoakReport:
    """Run the soak and return its report (``report.ok`` says whether every promise held).
    Jobs not final after ``timeout_s`` count as lost."""
    with tempfile.TemporaryDirectory(prefix="predq-soak-") as tmp:
        soak = Soak(jobs, workers, workdir or Path(tmp), seed, timeout_s=timeout_s)
        return asyncio.run(soak.run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    report = run_soak(args.jobs, args.workers, args.seed)
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
