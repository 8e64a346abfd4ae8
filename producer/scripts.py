"""The store's Lua scripts (``producer/lua/``), loaded once per client, with their KEYS and ARGV
built here and only here: each method's parameters are the script's arguments by name, in the
order its header documents. ``JobStore`` is the only caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from producer import arq_wire, keys
from producer.events import state_event
from producer.models import JobState


def _lua(name: str) -> str:
    return resources.files("producer").joinpath("lua", name).read_text()


def _flat(fields: Mapping[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]


class Scripts:
    """The registered scripts of one Redis client; every call returns the script's raw reply."""

    def __init__(self, redis: aioredis.Redis, queue_name: str) -> None:
        self._queue = queue_name
        self._redis = redis
        self._create = redis.register_script(_lua("create.lua"))
        self._transition = redis.register_script(_lua("transition.lua"))
        self._prediction = redis.register_script(_lua("prediction.lua"))
        self._progress = redis.register_script(_lua("progress.lua"))
        self._requeue = redis.register_script(_lua("requeue.lua"))
        self._append = redis.register_script(_lua("append.lua"))
        self._callback = redis.register_script(_lua("callback.lua"))
        self._claim_callbacks = redis.register_script(_lua("claim_callbacks.lua"))
        self._all = (self._create, self._transition, self._prediction, self._progress,
                     self._requeue, self._append, self._callback, self._claim_callbacks)  # fmt: skip

    async def load(self) -> None:
        """Load every script into Redis's cache now (one round trip): otherwise the first calls
        made at once (a worker's first jobs) each find it missing, load it and call again."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for script in self._all:
                pipe.script_load(script.script)
            await pipe.execute()

    async def create(
        self,
        *,
        job_id: str,
        now_ms: int,
        idempotency_key: str | None,
        idempotency_window_s: int,
        fields: Mapping[str, str],
        client: Any = None,
    ) -> Any:
        """create.lua (``client``: a pipeline to queue the call on instead of sending it)."""
        script_keys = [
            keys.job(job_id),
            keys.state_index(JobState.QUEUED),
            self._queue,
            arq_wire.job_key(job_id),
            keys.events(job_id),
            keys.wake_sent(self._queue),
        ]
        if idempotency_key is not None:
            script_keys.append(keys.idempotency(idempotency_key))
        args: list[Any] = [
            job_id,
            arq_wire.due_score(now_ms),
            arq_wire.payload(job_id, now_ms),
            idempotency_window_s,
            keys.JOB_PREFIX,
            state_event(JobState.QUEUED),
            keys.EVENTS_MAXLEN,
            keys.wake_channel(self._queue),
            keys.WAKE_EVERY_MS,
            *_flat(fields),
        ]
        return await self._create(keys=script_keys, args=args, client=client)

    async def transition(
        self,
        *,
        job_id: str,
        allowed: Sequence[str],
        target: JobState,
        now_ms: int,
        now_iso: str,
        retention_s: int,
        run: str | None,
        start: str | None,
        error_json: str | None,
        want_record: bool,
        due_ms: int | None,
        operation: str,
        has_files: bool,
        event: str,
        fields: Mapping[str, str],
        lease_ms: int | None = None,
    ) -> Any:
        """transition.lua: one state move (see its header for what each argument does)."""
        script_keys = [
            keys.job(job_id),
            *keys.STATE_INDEXES,
            self._queue,
            arq_wire.job_key(job_id),
            keys.OUTPUTS_EXPIRY,
            keys.events(job_id),
            keys.CALLBACKS,
            arq_wire.in_progress_key(job_id),
            arq_wire.retry_key(job_id),
        ]
        args: list[Any] = [
            " ".join(allowed),
            target.value,
            now_ms,
            retention_s,
            run or "",
            start or "",
            now_iso,
            error_json or "",
            "1" if want_record else "0",
            "" if due_ms is None else arq_wire.due_score(due_ms),
            operation,
            arq_wire.payload(job_id, now_ms),
            "1" if has_files else "",
            event,
            keys.EVENTS_MAXLEN,
            keys.FINISHED_CHANNEL,
            "" if lease_ms is None else lease_ms,
            "" if lease_ms is None else arq_wire.due_score(now_ms + lease_ms),
            *_flat({"updated_at": now_iso, **fields}),
        ]
        return await self._transition(keys=script_keys, args=args)

    async def prediction(
        self,
        *,
        job_id: str,
        run: str,
        prediction_id: str,
        claim_ttl_s: int,
        now_iso: str,
        event: str,
        fields: Mapping[str, str],
    ) -> Any:
        """prediction.lua: record and claim the prediction a running attempt waits on."""
        return await self._prediction(
            keys=[keys.job(job_id), keys.prediction(prediction_id), keys.events(job_id)],
            args=[
                run,
                job_id,
                prediction_id,
                claim_ttl_s,
                now_iso,
                event,
                keys.EVENTS_MAXLEN,
                *_flat(fields),
            ],
        )

    async def progress(
        self, *, job_id: str, run: str, event: str, fields: Mapping[str, str]
    ) -> Any:
        """progress.lua: a running attempt's phase, progress and logs' tail."""
        return await self._progress(
            keys=[keys.job(job_id), keys.events(job_id)],
            args=[run, event, keys.EVENTS_MAXLEN, *_flat(fields)],
        )

    async def append(
        self, *, job_id: str, run: str, source_id: str | None, kind: str, data: str
    ) -> Any:
        """append.lua: a streamed output chunk or logs line, once per Replicate event id."""
        return await self._append(
            keys=[keys.job(job_id), keys.events(job_id)],
            args=[run, source_id or "", kind, data, keys.EVENTS_MAXLEN],
        )

    async def requeue(self, *, job_id: str, now_ms: int, now_iso: str, operation: str) -> Any:
        """requeue.lua: re-drive a failed job."""
        return await self._requeue(
            keys=[
                keys.job(job_id),
                keys.state_index(JobState.FAILED),
                keys.state_index(JobState.QUEUED),
                self._queue,
                arq_wire.job_key(job_id),
                arq_wire.in_progress_key(job_id),
                keys.events(job_id),
                keys.wake_sent(self._queue),
            ],
            args=[
                job_id,
                arq_wire.due_score(now_ms),
                now_iso,
                arq_wire.payload(job_id, now_ms),
                operation,
                state_event(JobState.QUEUED),
                keys.EVENTS_MAXLEN,
                keys.wake_channel(self._queue),
                keys.WAKE_EVERY_MS,
            ],
        )

    async def callback(self, *, job_id: str, state_json: str, due_ms: int | None) -> Any:
        """callback.lua: a callback attempt recorded, and the outbox entry moved or removed."""
        return await self._callback(
            keys=[keys.job(job_id), keys.CALLBACKS],
            args=[job_id, state_json, "" if due_ms is None else due_ms],
        )

    async def claim_callbacks(self, *, now_ms: int, claim_ms: int, limit: int) -> Any:
        """claim_callbacks.lua: the due callbacks, each claimed for ``claim_ms``."""
        return await self._claim_callbacks(keys=[keys.CALLBACKS], args=[now_ms, claim_ms, limit])
