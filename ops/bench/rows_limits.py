"""Rows 7 and 8: the shared rate limit across workers, and webhooks instead of polling."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

from devkit.wait import eventually
from ops.bench.harness import Bench, Sandbox
from ops.bench.runs import (
    MODEL,
    predq_progress,
    predq_worker,
    predq_workers,
    sampled,
)
from ops.bench.table import Check, Result, Target
from producer.client import Producer
from producer.models import JobState

RATE_JOBS = 700
RATE_WORKERS = 3
RATE_CREATES_PER_MIN = 600
RATE_CREATE_BURST = 0
RATE_LATENCY_S = 0.2


async def row_rate_limit(bench: Bench) -> Result:
    """Three workers, one create budget: Replicate's 600 creates per minute, enforced by the
    sandbox over a sliding 60 s window (429 beyond it), and predq's shared limiter set to it."""
    settings = {"PREDQ_CREATES_PER_MIN": str(RATE_CREATES_PER_MIN),
                "PREDQ_CREATE_BURST": str(RATE_CREATE_BURST),
                "PREDQ_REQUESTS_PER_MIN": "0"}  # fmt: skip
    limit = RATE_CREATES_PER_MIN + RATE_CREATE_BURST
    sandbox_args = ("--latency", f"{RATE_LATENCY_S:g}", "--create-limit", str(RATE_CREATES_PER_MIN))
    with bench.sandbox("ratelimit-sandbox", *sandbox_args) as sandbox:
        started = predq_workers(
            bench, sandbox, "ratelimit-predq", RATE_JOBS, RATE_WORKERS, settings
        )
        async with started as (workers, producer):
            run = await workers.measure(predq_progress(producer), RATE_JOBS, 120.0)
            retried = await _retried(producer, RATE_JOBS)
            pauses = sum(w.log.read_text().count('"ratelimit.paused"') for w in workers.workers)
        stats = await sandbox.stats()
        created_at = await sandbox.created_times()
    span_s = created_at[-1] - created_at[0]
    per_min = (len(created_at) - 1) / span_s * 60 if span_s > 0 else 0.0
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(created_at)]
    ideal_s = (RATE_JOBS - 1) * 60 / RATE_CREATES_PER_MIN + RATE_LATENCY_S
    workers_cpu = ", ".join(
        f"{name} {cpu:.1f} s" for name, cpu in run.cpu_s.items() if name.startswith("worker")
    )
    return Result(
        measured=float(stats["max_creates_per_60s"]),
        unit="creates/60 s",
        target=Target("<=", limit, "creates/60 s"),
        checks=[Check(float(stats["throttled"]), "throttled", Target("<=", 0, "throttled"))],
        notes=[
            f"{RATE_JOBS:,} {MODEL} jobs enqueued at once (enqueue_many), {RATE_WORKERS} workers "
            f"(PREDQ_CONCURRENCY 50 each) with PREDQ_CREATES_PER_MIN {RATE_CREATES_PER_MIN}, "
            f"PREDQ_CREATE_BURST {RATE_CREATE_BURST}, PREDQ_REQUESTS_PER_MIN 0, "
            f"PREDQ_CREATE_WAIT_S 5 (default); sandbox --create-limit {RATE_CREATES_PER_MIN} "
            f"--latency {RATE_LATENCY_S:g}",
            f"{stats['created']:,} creates (the sandbox's max_creates_per_60s is the most in any "
            f"sliding 60 s; throttled counts its 429s) over {span_s:.1f} s, first to last: "
            f"{per_min:,.1f} creates/min achieved; gaps between creates min {min(gaps_ms):.1f} ms, "
            f"max {max(gaps_ms):.1f} ms (the budget's interval: "
            f"{60_000 / RATE_CREATES_PER_MIN:g} ms)",
            f"all {RATE_JOBS:,} succeeded in {run.elapsed_s:.1f} s wall (ideal at the limit "
            f"{ideal_s:.1f} s), timed from release (start-up of the {RATE_WORKERS} workers, one "
            f"after another, {run.startup_s:.2f} s, excluded); {stats['polls']:,} polls; "
            f"CPU: {workers_cpu}",
            f"after a 429: {pauses} ratelimit.paused warnings in the worker logs (the budget held "
            f"for every worker for Retry-After), {retried} jobs needed a second attempt",
        ],
    )


async def _retried(producer: Producer, jobs: int) -> int:
    """How many of the succeeded jobs took more than one attempt."""
    retried, cursor, seen = 0, None, 0
    while seen < jobs:
        page = await producer.list_jobs(JobState.SUCCEEDED, cursor=cursor, limit=500)
        retried += sum(1 for record in page.jobs if record.attempts > 1)
        seen += len(page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            break
    return retried


WEBHOOK_JOBS = 1_000
WEBHOOK_LATENCY_S = 10.0
WEBHOOK_FALLBACK_POLL_S = "120"


async def row_webhooks(bench: Bench) -> Result:
    """1,000 predictions in flight in one worker, each finished by its completion webhook."""
    args = ("--latency", f"{WEBHOOK_LATENCY_S:g}")
    with bench.sandbox("webhooks-sandbox", *args) as sandbox:
        with bench.webhook_receiver("webhooks-receiver", sandbox) as receiver:
            settings = {"PREDQ_CONCURRENCY": str(WEBHOOK_JOBS), "PREDQ_WEBHOOK_URL": receiver.url,
                        "PREDQ_WEBHOOK_FALLBACK_POLL_S": WEBHOOK_FALLBACK_POLL_S,
                        "PREDQ_CREATES_PER_MIN": "0", "PREDQ_REQUESTS_PER_MIN": "0",
                        "PREDQ_CREATE_WAIT_S": "0"}  # fmt: skip
            workers = predq_worker(bench, sandbox, "webhooks-predq", WEBHOOK_JOBS, **settings)
            async with workers as (run, producer):
                async with sampled(run, sandbox, producer) as peaks:
                    others = {"receiver": receiver.pid}
                    stats = await run.measure(predq_progress(producer), WEBHOOK_JOBS, 90.0, others)
                succeeded = (await producer.counts())[JobState.SUCCEEDED]
                counts = await _webhook_counts(sandbox, WEBHOOK_JOBS)
        created_at = await sandbox.created_times()
    creates_s = created_at[-1] - created_at[0]
    return Result(
        measured=float(counts["polls"]),
        unit="polls",
        target=Target("<=", 0, "polls"),
        checks=[
            Check(peaks.in_flight.peak, "in flight", Target(">=", WEBHOOK_JOBS, "in flight")),
            Check(succeeded, "succeeded", Target(">=", WEBHOOK_JOBS, "succeeded")),
        ],
        notes=[
            f"{WEBHOOK_JOBS:,} {MODEL} jobs, sandbox --latency {WEBHOOK_LATENCY_S:g}, the webhook "
            f"receiver (python -m worker.webhook_receiver, secret fetched from the sandbox), one "
            f"worker with PREDQ_CONCURRENCY {WEBHOOK_JOBS}, PREDQ_WEBHOOK_URL set, "
            f"PREDQ_WEBHOOK_FALLBACK_POLL_S {WEBHOOK_FALLBACK_POLL_S}, rate limits off, "
            f"PREDQ_CREATE_WAIT_S 0",
            f"polls: the sandbox's GETs of predictions during the run; in flight: the peak of "
            f"sandbox in_flight ({peaks.in_flight.samples} samples every 0.25 s); "
            f"{peaks.running.peak:,.0f} running records at the peak",
            f"{succeeded:,} succeeded in {stats.elapsed_s:.1f} s from release (start-up "
            f"{stats.startup_s:.2f} s excluded); {counts['created']:,} creates over "
            f"{creates_s:.2f} s; {counts['requests']:,} sandbox requests in all; webhooks sent "
            f"{counts['webhooks_sent']:,}, failed {counts['webhooks_failed']:,}",
            f"worker RSS idle {peaks.idle_mb:.1f} MB, peak {peaks.rss.peak:.1f} MB "
            f"({peaks.rss.samples} samples every 50 ms); CPU busy: {stats.busy()}",
        ],
    )


async def _webhook_counts(sandbox: Sandbox, jobs: int) -> dict[str, Any]:
    """The sandbox's stats once it has counted every webhook (a delivery counts when the
    receiver's answer arrives, which may be a moment after the worker saw the job succeed)."""
    stats: dict[str, Any] = {}

    async def all_counted() -> bool:
        nonlocal stats
        stats = await sandbox.stats()
        return int(stats["webhooks_sent"]) + int(stats["webhooks_failed"]) >= jobs

    with contextlib.suppress(TimeoutError):  # then reported as counted so far
        await eventually(all_counted, timeout_s=5, what="webhook deliveries", interval_s=0.1)
    return stats
