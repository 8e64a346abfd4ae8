"""How the ``predq`` command shows records, jobs, workers and stats to people (``--json`` is
for programs)."""

from __future__ import annotations

import json
from typing import Any

from producer.models import JobRecord, JobState
from producer.stats import Stats, WorkerInfo

OUTPUT_PREVIEW_CHARS = 500


def render(record: JobRecord) -> str:
    """A record as aligned ``name: value`` lines for people (``--json`` is for programs)."""
    rows: list[tuple[str, Any]] = [
        ("id", record.id),
        ("state", record.state.value),
        ("model", record.model),
        ("attempts", record.attempts),
        ("prediction_id", record.prediction_id or "-"),
        ("created_at", record.created_at.isoformat(timespec="seconds")),
    ]
    if record.phase is not None:
        rows.append(("phase", record.phase.value))
    if record.progress is not None:
        rows.append(("progress", f"{record.progress:.0%}"))
    if record.finished_at is not None:
        rows.append(("finished_at", record.finished_at.isoformat(timespec="seconds")))
    if record.recoveries:
        rows.append(("recoveries", record.recoveries))
    if record.error is not None:
        rows.append(
            ("error", f"[{record.error.kind.value}] {record.error.message.splitlines()[0]}")
        )
    if record.metrics:
        rows.append(("metrics", ", ".join(f"{k} {v:.2f} s" for k, v in record.metrics.items())))
    if record.state is JobState.SUCCEEDED:
        output = json.dumps(record.output)
        if len(output) > OUTPUT_PREVIEW_CHARS:
            output = output[:OUTPUT_PREVIEW_CHARS] + "... (--json for all)"
        rows.append(("output", output))
    for n, file in enumerate(record.files):
        rows.append((f"file {n}", f"{file.url} ({file.content_type}, {file.size_bytes:,} bytes)"))
    if record.logs and not record.is_final:
        rows.append(("logs", record.logs.strip().splitlines()[-1][:200]))
    return "\n".join(f"{name + ':':<15}{value}" for name, value in rows)


def dead_letter_line(record: JobRecord) -> str:
    finished = record.finished_at.isoformat(timespec="seconds") if record.finished_at else "-"
    error = record.error
    reason = f"[{error.kind.value}] {error.message.splitlines()[0]}" if error else "-"
    return f"{record.id}  {finished}  {record.model}  attempts={record.attempts}  {reason}"


def job_line(record: JobRecord) -> str:
    """One line per job: ``predq jobs``."""
    changed = record.updated_at.isoformat(timespec="seconds")
    extra = f" {record.progress:.0%}" if record.progress is not None else ""
    phase = f" ({record.phase.value}{extra})" if record.phase is not None else ""
    return f"{record.id}  {changed}  {record.state.value:<9}{phase}  {record.model}"


def worker_line(worker: WorkerInfo) -> str:
    """One line per worker: ``predq workers``."""
    seen = worker.last_seen.isoformat(timespec="seconds")
    status = "alive" if worker.alive else "dead "
    return (
        f"{status}  {worker.id}  slots {worker.in_flight}/{worker.concurrency}  "
        f"done {worker.done}  failed {worker.failed}  last seen {seen}  v{worker.version}"
    )


def stats_text(stats: Stats) -> str:
    """``predq stats``: the queue now, and its last hour and day."""
    lines = ["jobs:    " + "  ".join(f"{s.value} {stats.jobs[s]}" for s in JobState)]
    lines.append(f"oldest queued: {stats.oldest_queued_age_s:.1f} s   callbacks pending: "
                 f"{stats.callbacks_pending}   workers: {stats.workers_alive} alive, "
                 f"{stats.workers_dead} dead")  # fmt: skip
    for name, span in (("last hour", stats.last_hour), ("last day", stats.last_day)):
        mean = f"{span.mean_duration_s:.2f} s" if span.mean_duration_s is not None else "-"
        lines.append(
            f"{name + ':':<10} succeeded {span.succeeded}  failed {span.failed}  canceled "
            f"{span.canceled}  retried {span.retried}  429s {span.throttled}  creates "
            f"{span.creates}  mean duration {mean}"
        )
    by_model = stats.last_hour.by_model
    for model in sorted(by_model):
        counts = "  ".join(f"{k} {v}" for k, v in sorted(by_model[model].items()))
        lines.append(f"  {model}: {counts}")
    return "\n".join(lines)


def as_json(value: Any) -> str:
    return json.dumps(value, default=str)
