"""``predq demo``: the whole system on one machine, start to finish, in well under a minute.

Starts what is not configured (a private redis-server when ``REDIS_URL`` is unset; the sandbox
unless ``--model`` names a real model and ``REPLICATE_API_TOKEN`` is set), two
``arq worker.main.Settings`` processes and ``predq serve`` (the API and dashboard, with a new key
it prints), enqueues jobs (most succeed after some latency, a few fail on purpose), shows a live
progress bar, prints a summary and one job's full record; then, at a terminal, keeps the dashboard
up until Ctrl-C (``--keep``/``--no-keep``). It stops everything it started, also on Ctrl-C (a
second Ctrl-C stops at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devkit.launch import ApiProcess, SandboxProcess, clean_env, start_worker, stop
from devkit.local_redis import LocalRedis
from producer.client import Producer
from producer.config import Config
from producer.errors import InvalidRequest
from producer.models import JobRecord, JobState

FAILING_JOBS = 3
REAL_REPLICATE_DEFAULT_JOBS = 5
#: The token the demo's workers send the sandbox (the sandbox accepts any; not a word, so that
#: log redaction never has a reason to touch ordinary text).
SANDBOX_TOKEN = "r8_predq_demo_local_sandbox_token_0000"
#: How long the demo's workers may finish running jobs when stopped (then they hand them back).
WORKER_GRACE_S = 5
#: Where the demo's dashboard listens when the port is free (else any free port).
DASHBOARD_PORT = 8000


def run_demo(args: argparse.Namespace, config: Config, *, environ: Mapping[str, str]) -> int:
    """Run the demo; returns the process exit code (0 when every job ended as planned)."""
    console = Console()
    if args.jobs < 1 or args.workers < 1:
        raise InvalidRequest("--jobs and --workers must be at least 1")
    use_replicate = bool(args.model) and bool(environ.get("REPLICATE_API_TOKEN"))
    if args.model and not use_replicate:
        raise InvalidRequest("--model runs on the real Replicate API: set REPLICATE_API_TOKEN")
    with tempfile.TemporaryDirectory(prefix="predq-demo-") as tmp, ExitStack() as stack:
        logs = Path(tmp)
        redis_url = environ.get("REDIS_URL") or stack.enter_context(_local_redis(console))
        env = {**clean_env(environ), "REDIS_URL": redis_url, "PREDQ_LOG_FORMAT": "json",
               "PREDQ_SHUTDOWN_GRACE_S": str(WORKER_GRACE_S)}  # fmt: skip
        if use_replicate:
            console.print(f"[bold]Replicate[/]: the real API, model {args.model}")
            env["REPLICATE_API_TOKEN"] = environ["REPLICATE_API_TOKEN"]
        else:
            if environ.get("REPLICATE_API_TOKEN"):
                console.print(
                    "REPLICATE_API_TOKEN is set, but no --model was given: the demo runs on the "
                    "local sandbox (free). For the real API: predq demo --model owner/name"
                )
            env["REPLICATE_BASE_URL"] = stack.enter_context(_sandbox(console, logs))
            env["REPLICATE_API_TOKEN"] = SANDBOX_TOKEN
        stack.enter_context(_workers(console, args.workers, env, logs))
        dashboard = stack.enter_context(_dashboard(console, env, logs))
        jobs = args.jobs if not use_replicate or args.jobs != 50 else REAL_REPLICATE_DEFAULT_JOBS
        plan = _plan(jobs, args.model if use_replicate else None, args.input)
        demo_config = config.model_copy(update={"redis_url": redis_url})
        try:
            records, wall_s = asyncio.run(_enqueue_and_watch(demo_config, plan, console))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping everything the demo started[/]")
            return 130
        _summary(console, records, wall_s)
        expected_failures = sum(model == "sandbox/fail" for model, _ in plan)
        failed = sum(r.state is not JobState.SUCCEEDED for r in records)
        if failed != expected_failures:
            console.print(f"[red]{failed} jobs did not succeed; expected {expected_failures}.[/]")
            console.print(f"worker logs: {logs} (removed on exit)")
            _tail_logs(console, logs)
            return 1
        keep = sys.stdin.isatty() if args.keep is None else args.keep
        if keep:
            console.print(
                f"the dashboard stays up at [bold]{dashboard}[/]: Ctrl-C stops everything"
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("stopping everything the demo started")
        return 0


def _plan(
    count: int, model: str | None, input_json: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """(model, input) for every job: sandbox models unless ``model`` is given."""
    if model:
        payload = json.loads(input_json) if input_json else {"prompt": "a lighthouse at dusk"}
        return [(model, {**payload}) for _ in range(count)]
    rng = random.Random(42)
    plan: list[tuple[str, dict[str, Any]]] = []
    failing = set(rng.sample(range(count), min(FAILING_JOBS, count // 10)))
    for n in range(count):
        if n in failing:
            plan.append(("sandbox/fail", {"message": f"job {n} fails on purpose"}))
        elif n % 10 == 3:
            plan.append(("sandbox/image", {"prompt": f"image {n}", "num_outputs": 2}))
        else:
            plan.append(("sandbox/sleep", {"seconds": round(rng.uniform(0.5, 3.0), 2), "n": n}))
    return plan


async def _enqueue_and_watch(
    config: Config, plan: list[tuple[str, dict[str, Any]]], console: Console
) -> tuple[list[JobRecord], float]:
    async with Producer(config=config) as producer:
        started = time.monotonic()
        queued = await producer.enqueue_many([{"model": m, "input": i} for m, i in plan])
        ids = [job.id for job in queued]
        console.print(f"enqueued [bold]{len(queued)}[/] jobs")
        columns = (
            TextColumn("[bold]jobs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("", total=len(queued))
            while True:
                current = [r for r in await producer.get_many(ids) if r is not None]
                counts = Counter(r.state.value for r in current)
                done = sum(r.is_final for r in current)
                progress.update(task, completed=done, description=_counts(counts))
                if done == len(queued):
                    return current, time.monotonic() - started
                await asyncio.sleep(0.2)


def _counts(counts: Counter[str]) -> str:
    return " ".join(f"{state.value} {counts[state.value]}" for state in JobState if counts[state])


def _summary(console: Console, records: list[JobRecord], wall_s: float) -> None:
    latencies = sorted(
        (r.finished_at - r.created_at).total_seconds() for r in records if r.finished_at
    )
    table = Table(title="predq demo: summary")
    table.add_column("state")
    table.add_column("jobs", justify="right")
    counts = Counter(r.state for r in records)
    for state in JobState:
        if counts[state]:
            table.add_row(state.value, str(counts[state]))
    table.add_section()
    if len(latencies) >= 2:
        quantiles = statistics.quantiles(latencies, n=20, method="inclusive")
        table.add_row("p50 latency", f"{statistics.median(latencies):.2f} s")
        table.add_row("p95 latency", f"{quantiles[18]:.2f} s")
    table.add_row("throughput", f"{len(records) / wall_s:.1f} jobs/s ({wall_s:.1f} s wall)")
    table.add_row("attempts", str(sum(r.attempts for r in records)))
    console.print(table)
    shown = max(records, key=lambda r: (r.state is JobState.SUCCEEDED, len(r.errors)))
    console.print(f"[bold]one job's full record[/] ({shown.id}):")
    console.print_json(shown.model_dump_json())
    failed = next((r for r in records if r.state is JobState.FAILED), None)
    if failed is not None and failed.error is not None:
        console.print(f"[bold]a failed job's error[/]: {failed.error.message}")


@contextmanager
def _local_redis(console: Console) -> Iterator[str]:
    server = LocalRedis(appendonly=False)
    server.start()
    console.print(f"[bold]Redis[/]: a private redis-server at {server.url} (REDIS_URL is unset)")
    try:
        yield server.url
    finally:
        server.close()


@contextmanager
def _sandbox(console: Console, logs: Path) -> Iterator[str]:
    args = ["--latency", "1", "--throttle-rate", "0.05", "--retry-after", "1", "--seed", "1"]
    sandbox = SandboxProcess(args, logs / "sandbox.log")
    console.print(
        f"[bold]Replicate[/]: the local sandbox at {sandbox.url} "
        "(5% of requests are throttled, to show retries)"
    )
    try:
        yield sandbox.url
    finally:
        sandbox.stop()


@contextmanager
def _dashboard(console: Console, env: Mapping[str, str], logs: Path) -> Iterator[str]:
    """``predq serve`` with a new full-access key for this demo; yields its URL."""
    key = f"demo-{secrets.token_urlsafe(18)}"
    server = ApiProcess({**env, "PREDQ_API_KEYS": key}, logs / "api.log", port=DASHBOARD_PORT)
    console.print(f"[bold]dashboard[/]: {server.url}  (sign in with the key [bold]{key}[/])")
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def _workers(console: Console, count: int, env: Mapping[str, str], logs: Path) -> Iterator[None]:
    processes = [start_worker(env, logs / f"worker-{n}.log") for n in range(count)]
    console.print(f"[bold]workers[/]: {count} processes (arq worker.main.Settings)")
    try:
        yield
    finally:
        _stop_workers(console, processes)


def _stop_workers(console: Console, processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the workers, saying what is being waited for; a second Ctrl-C kills them at once."""
    if all(p.poll() is not None for p in processes):
        return
    console.print(
        f"stopping {len(processes)} workers: running jobs get up to {WORKER_GRACE_S} s to finish, "
        "then are handed back (Ctrl-C again to stop at once)"
    )
    try:
        stop(processes, timeout_s=WORKER_GRACE_S + 10)
    except KeyboardInterrupt:
        for process in processes:
            process.kill()
        console.print("[yellow]workers killed[/]")


def _tail_logs(console: Console, logs: Path) -> None:
    for path in sorted(logs.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()[-5:]
        console.print(f"[dim]--- {path.name}[/]")
        for line in lines:
            console.print(line, markup=False, highlight=False)
