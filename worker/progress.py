"""A running job's phase, progress and logs' tail, written to its record as they change.

Everything here rides on responses the worker gets anyway (the create, its polls): nothing is
polled for it, and a response that changes nothing costs nothing. A change costs one small write
(``JobStore.set_progress``), fenced by the run token. Progress is read from the logs the way
Replicate's own UI reads it: the last tqdm-style percentage (`` 45%|####5     | 9/20``).
Writing progress is best effort: a failed write is logged and the attempt goes on.
"""

from __future__ import annotations

import re
from typing import Any

import redis.exceptions
import structlog

from producer.errors import RedisUnavailable
from producer.models import JobPhase
from producer.store import JobStore

log = structlog.get_logger(__name__)

#: How much of the logs the record keeps while the job runs (the end of them).
LOGS_TAIL_CHARS = 2000
_PERCENT = re.compile(r"(\d{1,3})%\|")
_PHASES = {"starting": JobPhase.STARTING, "processing": JobPhase.PROCESSING}


def logs_tail(logs: str, limit: int = LOGS_TAIL_CHARS) -> str:
    """The end of ``logs``, at most ``limit`` characters, starting at a line where it can."""
    if len(logs) <= limit:
        return logs
    tail = logs[-limit:]
    newline = tail.find("\n")
    return tail[newline + 1 :] if 0 <= newline < len(tail) - 1 else tail


def progress_from_logs(logs: str) -> float | None:
    """The last percentage a progress bar printed in ``logs``, as 0-1; None if there is none."""
    matches = _PERCENT.findall(logs[-LOGS_TAIL_CHARS:])
    if not matches:
        return None
    return min(100, int(matches[-1])) / 100


class ProgressReporter:
    """Keeps one running attempt's record up to date with what its prediction says."""

    def __init__(self, store: JobStore, job_id: str, run: str) -> None:
        self._store = store
        self._job_id = job_id
        self._run = run
        self._written: dict[str, str] = {"phase": JobPhase.CREATING.value}

    def seen(self, **fields: str) -> None:
        """Fields another write already put on the record (the prediction id's)."""
        self._written.update(fields)

    async def phase(self, phase: JobPhase) -> None:
        await self._write({"phase": phase.value})

    async def prediction(self, data: dict[str, Any]) -> None:
        """A prediction response arrived (a poll, a create): record what changed."""
        fields: dict[str, str] = {}
        phase = _PHASES.get(str(data.get("status")))
        if phase is not None:
            fields["phase"] = phase.value
        logs = data.get("logs")
        if isinstance(logs, str) and logs:
            fields["logs"] = logs_tail(logs)
            progress = progress_from_logs(logs)
            if progress is not None:
                fields["progress"] = f"{progress:g}"
        await self._write(fields)

    async def _write(self, fields: dict[str, str]) -> None:
        changed = {k: v for k, v in fields.items() if self._written.get(k) != v}
        if not changed:
            return
        try:
            await self._store.set_progress(self._job_id, self._run, changed)
        except (RedisUnavailable, redis.exceptions.RedisError, OSError) as exc:
            log.info("progress.not_written", job_id=self._job_id, error=type(exc).__name__)
            return
        self._written.update(changed)
