"""Relaying a streaming prediction's output into its job's events, as it is produced.

For a job enqueued with ``stream=True``, the attempt reads the prediction's server-sent events
(``urls.stream``, beside its usual polls) and appends each output chunk and logs line to the
job's event stream, where ``Producer.stream`` readers get them live. Replicate's event ids say how
far the relay got (``stream_last_id`` on the record): an attempt resumed after a worker died asks
Replicate for the events after it, and the store skips any it already has, so a reader sees each
chunk once. Before the job's final state is written, the relay is let finish (``done``), so every
chunk comes before the final event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog

from producer.store import JobStore
from worker.replicate_client import Predictions

log = structlog.get_logger(__name__)

#: How long the final state waits for the relay to deliver the stream's last events.
FINISH_WAIT_S = 10.0


class StreamRelay:
    """One attempt's relay; ``start`` it when the prediction's stream URL is known."""

    def __init__(
        self,
        predictions: Predictions,
        store: JobStore,
        *,
        job_id: str,
        run: str,
        after: str | None,
    ) -> None:
        self._predictions = predictions
        self._store = store
        self._job_id = job_id
        self._run = run
        self._after = after
        self._task: asyncio.Task[None] | None = None

    def start(self, prediction: dict[str, Any]) -> None:
        """Start relaying, once, if ``prediction`` (its JSON) has a stream URL."""
        urls = prediction.get("urls")
        url = urls.get("stream") if isinstance(urls, dict) else None
        if self._task is None and isinstance(url, str):
            self._task = asyncio.create_task(self._relay(url))

    async def finish(self, timeout_s: float = FINISH_WAIT_S) -> None:
        """Let the relay deliver the rest of the stream (up to ``timeout_s``), then stop it."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _relay(self, url: str) -> None:
        try:
            async for source_id, event, data in self._predictions.stream_events(
                url, after=self._after
            ):
                if event not in ("output", "logs"):
                    continue
                status = await self._store.append_event(
                    self._job_id, self._run, source_id=source_id, kind=event, data=_value(data)
                )
                if status in ("illegal", "stale", "missing"):
                    return  # the job ended or moved on: nothing more to relay here
        except Exception as exc:  # the polls still finish the job; only live chunks are lost
            log.warning(
                "prediction.stream_lost", job_id=self._job_id, error=f"{type(exc).__name__}: {exc}"
            )


def _value(data: str) -> Any:
    """An output event's data: JSON when it is (objects, file URLs as strings), else the text."""
    if data[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            return json.loads(data)
    return data
