"""Copying output files into the output store: throughput and worker memory."""

from __future__ import annotations

from ops.bench.harness import Bench
from ops.bench.runs import predq_progress, predq_worker, sampled
from ops.bench.table import Check, Result, Target, fmt
from producer.models import JobState

COPY_FILES = 20
COPY_FILE_BYTES = 50 * 1024 * 1024
COPY_LATENCY_S = 0.5


async def row_copy(bench: Bench) -> Result:
    """20 predictions that each return a 50 MB file, copied into a local output store by one
    worker: MB/s from the jobs' release to the last success, and the worker's peak RSS."""
    jobs = [
        {"model": "sandbox/video", "input": {"size_bytes": COPY_FILE_BYTES, "n": n}}
        for n in range(COPY_FILES)
    ]
    total_mb = COPY_FILES * COPY_FILE_BYTES / 1e6
    settings = {"PREDQ_CONCURRENCY": str(COPY_FILES), "PREDQ_CREATE_WAIT_S": "0",
                "PREDQ_POLL_INTERVAL_S": "0.1"}  # fmt: skip
    with bench.sandbox("copy-sandbox", "--latency", f"{COPY_LATENCY_S:g}") as sandbox:
        async with predq_worker(bench, sandbox, "copy-predq", jobs, **settings) as (run, producer):
            async with sampled(run, sandbox, producer) as peaks:
                stats = await run.measure(predq_progress(producer), COPY_FILES, 120.0)
            records = (await producer.list_jobs(JobState.SUCCEEDED, limit=COPY_FILES)).jobs
    stored = sum(f.size_bytes for r in records for f in r.files)
    copy_s = max(0.001, stats.elapsed_s - COPY_LATENCY_S)
    return Result(
        measured=total_mb / copy_s,
        unit="MB/s",
        shown=f"{fmt(total_mb / copy_s)} MB/s, worker RSS {fmt(peaks.rss.peak)} MB",
        checks=[Check(peaks.rss.peak, "MB RSS", Target("<", 200, "MB RSS"))],
        notes=[
            f"{COPY_FILES} sandbox/video jobs of {COPY_FILE_BYTES / 2**20:g} MiB each "
            f"({total_mb:,.0f} MB), sandbox --latency {COPY_LATENCY_S:g}, one worker "
            f"(PREDQ_CONCURRENCY {COPY_FILES}, no held creates), a local output store; "
            f"{stored / 1e6:,.0f} MB stored, every file with its sha256",
            f"{stats.elapsed_s:.2f} s from release to the last success; the rate counts the "
            f"{COPY_LATENCY_S:g} s the predictions run as not copying; worker RSS idle "
            f"{peaks.idle_mb:.0f} MB, peak {peaks.rss.peak:.0f} MB ({peaks.rss.samples} samples "
            f"every 50 ms); CPU busy: {stats.busy()}",
        ],
    )
