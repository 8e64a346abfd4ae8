"""JobStore: the only code that writes JobRecords. Every write is one atomic Lua call.

The record is a Redis hash (layout: ``producer/records.py``); the scripts and their arguments are
in ``producer/scripts.py``. State moves follow this table; anything else is refused and reported,
never applied:

    to \\ from     queued  running  retrying
    running        start   recover  start
    retrying               yes
    succeeded              yes
    failed         *       yes      *        (* only before any claim, without a run token;
                                             and re-drive: failed -> queued, see requeue)
    canceled       yes     yes      yes

A worker holds a *run token* from ``start`` on; its later moves pass it, and a worker whose job was
recovered by another one (new token) is fenced out with status ``stale``. Final moves clear the
running job's ``phase`` and ``progress``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from producer import arq_wire, clock, keys
from producer.config import Config
from producer.connection import redis_errors
from producer.events import progress_event, state_event
from producer.models import (
    CallbackState,
    ErrorInfo,
    ErrorKind,
    JobPhase,
    JobRecord,
    JobRequest,
    JobState,
)
from producer.records import as_text, new_record_fields, pairs, parse_record
from producer.scripts import Scripts

Status = Literal["ok", "missing", "illegal", "stale", "claimed", "busy"]
_LIVE = ("queued", "running", "retrying")
#: What a final move clears: a running job's live state.
_NOT_RUNNING = {"phase": "", "progress": "", "worker": ""}


@dataclass(frozen=True)
class Transition:
    """What a state move did: ``ok``, or why not (``missing``, ``illegal``, ``stale``)."""

    status: Status
    previous: JobState | None
    record: JobRecord | None = None
    #: The running attempt's own move to a final state: arq's entries for the job went with it
    #: (producer/arq_wire.py, "The end"), so arq's own finish has nothing left to do.
    ended_arq: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class JobStore:
    """Reads and writes job records on ``redis`` (a ``redis.asyncio.Redis``, bytes or decoded)."""

    def __init__(self, redis: aioredis.Redis, config: Config) -> None:
        self._redis = redis
        self._config = config
        self._scripts = Scripts(redis, config.queue_name)

    async def load_scripts(self) -> None:
        """Put the store's Lua scripts in Redis's cache ahead of the first calls."""
        with redis_errors(self._config):
            await self._scripts.load()

    # -- producer side -------------------------------------------------------------------------

    async def create(self, request: JobRequest) -> tuple[JobRecord, bool]:
        """Store a new queued job and put it on the arq queue; returns (record, created).

        With an idempotency key that is still in its window, returns the job it first created
        (whatever its state) and ``created=False``; nothing is written then.
        """
        now = clock.now()
        fields = new_record_fields(uuid.uuid4().hex, request, now)
        with redis_errors(self._config):
            # Not a pipeline of one: redis-py sends SCRIPT EXISTS before every pipeline that
            # holds a script, a second round trip per job.
            reply = await self._scripts.create(
                job_id=fields["id"],
                now_ms=clock.to_ms(now),
                idempotency_key=request.idempotency_key,
                idempotency_window_s=self._config.idempotency_window_s,
                fields=fields,
            )
        return _created(fields, reply)

    async def create_many(self, requests: Sequence[JobRequest]) -> list[tuple[JobRecord, bool]]:
        """``create`` for each request, in one round trip (a pipeline of the same Lua call).

        Each job is created atomically; the batch as a whole is not a transaction (like that many
        ``create`` calls, in order: a repeated idempotency key returns the batch's first job).
        """
        now = clock.now()
        news = [new_record_fields(uuid.uuid4().hex, request, now) for request in requests]
        with redis_errors(self._config):
            async with self._redis.pipeline(transaction=False) as pipe:
                for request, fields in zip(requests, news, strict=True):
                    await self._scripts.create(
                        job_id=fields["id"],
                        now_ms=clock.to_ms(now),
                        idempotency_key=request.idempotency_key,
                        idempotency_window_s=self._config.idempotency_window_s,
                        fields=fields,
                        client=pipe,
                    )
                replies = await pipe.execute()
        return [_created(fields, reply) for fields, reply in zip(news, replies, strict=True)]

    async def get(self, job_id: str) -> JobRecord | None:
        """The record, or None when no job has this id (or its retention ran out)."""
        with redis_errors(self._config):
            fields: dict[bytes, bytes] = await self._redis.hgetall(keys.job(job_id))  # type: ignore[misc]
        return parse_record(fields) if fields else None

    async def cancel(
        self, job_id: str, *, run: str | None = None, error: ErrorInfo | None = None
    ) -> Transition:
        """Move a live job to ``canceled``. A final job is left as it is (status ``illegal``).

        Producers cancel without a run token; a worker that saw the prediction canceled on
        Replicate passes its token and what it saw as ``error``. The transition carries the
        record as it is afterwards (whichever way it went).
        """
        fields = {"finished_at": clock.now().isoformat(), **_NOT_RUNNING}
        return await self._move(
            job_id, _LIVE, JobState.CANCELED, run=run, error=error, want_record=True, fields=fields
        )

    async def requeue(self, job_id: str) -> Transition:
        """Re-drive a failed job: queued again under the same id, with fresh attempts.

        Status ``busy`` while arq still holds the job (its worker has not finished with it).
        """
        now = clock.now()
        with redis_errors(self._config):
            reply = await self._scripts.requeue(
                job_id=job_id,
                now_ms=clock.to_ms(now),
                now_iso=now.isoformat(),
                operation=uuid.uuid4().hex,
            )
        status: Status = as_text(reply[0])  # type: ignore[assignment]
        previous = JobState(as_text(reply[1])) if reply[1] else None
        return Transition(status, previous)

    # -- worker side ---------------------------------------------------------------------------

    async def model_of(self, job_id: str) -> str | None:
        """The job's model reference (None for an unknown job), without reading the whole record."""
        with redis_errors(self._config):
            model = await self._redis.hget(keys.job(job_id), "model")  # type: ignore[misc]
        return as_text(model) if model is not None else None

    async def defer(self, job_id: str, delay_s: float, *, phase: JobPhase) -> None:
        """Make the job's existing queue entry due again in ``delay_s`` (nothing counted), and
        say why on the record (``phase``)."""
        due = arq_wire.due_score(clock.now_ms() + int(delay_s * 1000))
        event = {"t": "progress", "d": progress_event(phase.value, None)}
        with redis_errors(self._config):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(self._config.queue_name, {job_id: due}, xx=True)
                pipe.hset(keys.job(job_id), "phase", phase.value)
                pipe.xadd(keys.events(job_id), event, maxlen=keys.EVENTS_MAXLEN)  # type: ignore[arg-type]
                await pipe.execute()

    async def start(
        self, job_id: str, *, worker: str = "", lease_ms: int | None = None
    ) -> tuple[Transition, str]:
        """Claim a job for an attempt (or resume a running one after a crash), for ``worker``;
        with ``lease_ms``, arq's claim of it is shortened to that lease in the same call.

        Returns the transition, with the whole record, and the new run token that fences the
        worker's later moves.
        """
        run = uuid.uuid4().hex
        fields = {"phase": JobPhase.CREATING.value, "progress": "", "worker": worker}
        transition = await self._move(
            job_id,
            _LIVE,
            JobState.RUNNING,
            start=run,
            want_record=True,
            fields=fields,
            lease_ms=lease_ms,
        )
        return transition, run

    async def set_prediction_id(
        self, job_id: str, run: str, prediction_id: str, *, phase: JobPhase | None = None
    ) -> Status:
        """Record (and claim for this job) the prediction this attempt waits on, with its phase.

        Returns ``ok``; ``illegal`` if the job is no longer running (canceled meanwhile); ``stale``
        if another worker took it over; ``claimed`` if another job already owns the prediction.
        """
        with redis_errors(self._config):
            reply = await self._scripts.prediction(
                job_id=job_id,
                run=run,
                prediction_id=prediction_id,
                claim_ttl_s=self._config.retention_s,
                now_iso=clock.now().isoformat(),
                event=progress_event(phase.value, None) if phase is not None else "",
                fields={"phase": phase.value} if phase is not None else {},
            )
        status: Status = as_text(reply)  # type: ignore[assignment]
        return status

    async def set_progress(self, job_id: str, run: str, fields: Mapping[str, str]) -> Status:
        """Write a running attempt's ``phase``, ``progress`` and ``logs`` (one small write; an
        empty value deletes). ``illegal``/``stale`` when the attempt no longer owns the job."""
        event = progress_event(fields.get("phase"), fields.get("progress"))
        with redis_errors(self._config):
            reply = await self._scripts.progress(job_id=job_id, run=run, event=event, fields=fields)
        status: Status = as_text(reply)  # type: ignore[assignment]
        return status

    async def append_event(
        self, job_id: str, run: str, *, source_id: str | None, kind: str, data: Any
    ) -> str:
        """Append a streamed ``output`` chunk or ``logs`` line to the job's events, once per
        ``source_id`` (Replicate's event id); returns ``ok``, ``duplicate``, ``illegal`` or
        ``stale``."""
        with redis_errors(self._config):
            reply = await self._scripts.append(
                job_id=job_id, run=run, source_id=source_id, kind=kind, data=json.dumps(data)
            )
        return as_text(reply)

    async def hand_over(
        self,
        job_id: str,
        run: str,
        prediction_id: str | None,
        *,
        create_unconfirmed_at: str | None = None,
    ) -> Transition:
        """A shutting-down worker gives a running job back: it is due again at once, and the next
        worker goes on with the same attempt and prediction (nothing counted, nothing re-created).
        ``create_unconfirmed_at``: a create was in flight (the next worker looks for it first)."""
        fields = {"resume": "1", "prediction_id": prediction_id or "", **_NOT_RUNNING}
        if create_unconfirmed_at is not None:
            fields["create_unconfirmed_at"] = create_unconfirmed_at
        return await self._move(
            job_id, ("running",), JobState.QUEUED, run=run, due_ms=clock.now_ms(), fields=fields
        )

    async def succeed(
        self,
        job_id: str,
        run: str,
        output_json: str,
        *,
        prediction_id: str | None,
        files: Sequence[Any] = (),
        metrics: Mapping[str, Any] | None = None,
    ) -> Transition:
        """Final success. ``output_json``: the output as JSON, files replaced by their durable
        urls; ``files``: their OutputFiles (they then expire with the record); ``metrics``:
        Replicate's."""
        fields = {
            "output": output_json,
            "finished_at": clock.now().isoformat(),
            "files": json.dumps([f.model_dump(mode="json") for f in files]),
            "metrics": json.dumps(metrics) if metrics else "",
            **_NOT_RUNNING,
        }
        if prediction_id:
            fields["prediction_id"] = prediction_id
        return await self._move(
            job_id, ("running",), JobState.SUCCEEDED, run=run, fields=fields, has_files=bool(files)
        )

    async def retry_later(
        self,
        job_id: str,
        run: str,
        error: ErrorInfo,
        *,
        prediction_id: str | None,
        create_unconfirmed_at: str | None = None,
    ) -> Transition:
        """The attempt failed in a retryable way; the job's queue entry is due again after
        ``error.retry_in_s`` (the caller then ends the arq run without a defer of its own).

        The next attempt resumes ``prediction_id``, or creates a new prediction when it is None
        (the old one was canceled, vanished, or never existed). ``create_unconfirmed_at`` (ISO)
        says a create got no answer at that time: the next attempt looks for it before creating.
        """
        delay_ms = int((error.retry_in_s or 0) * 1000)
        return await self._move(
            job_id,
            ("running",),
            JobState.RETRYING,
            run=run,
            error=error,
            due_ms=clock.now_ms() + delay_ms,
            fields={
                "prediction_id": prediction_id or "",
                "create_unconfirmed_at": create_unconfirmed_at or "",
                **_NOT_RUNNING,
            },
        )

    async def fail(
        self,
        job_id: str,
        run: str | None,
        error: ErrorInfo,
        *,
        prediction_id: str | None = None,
        output_json: str | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> Transition:
        """Final failure (the dead-letter state), keeping ``error`` as the last one.

        A ``storage`` failure keeps the prediction's own output (``output_json``, Replicate's
        URLs) and lets a re-drive resume the prediction instead of creating another one.
        """
        # Without a run token (a failure before any claim) a running job is not touched.
        allowed = ("running",) if run is not None else ("queued", "retrying")
        fields = {"finished_at": clock.now().isoformat(), **_NOT_RUNNING}
        if prediction_id:
            fields["prediction_id"] = prediction_id
        if output_json is not None:
            fields["output"] = output_json
        if metrics:
            fields["metrics"] = json.dumps(metrics)
        if error.kind is ErrorKind.STORAGE:
            fields["resume_prediction"] = "1"
        return await self._move(
            job_id, allowed, JobState.FAILED, run=run, error=error, fields=fields
        )

    async def claim_callbacks(self, *, claim_s: float, limit: int) -> list[str]:
        """Ids of jobs whose completion callback is due, claimed for ``claim_s`` seconds."""
        with redis_errors(self._config):
            ids = await self._scripts.claim_callbacks(
                now_ms=clock.now_ms(), claim_ms=int(claim_s * 1000), limit=limit
            )
        return [as_text(job_id) for job_id in ids]

    async def record_callback(
        self, job_id: str, state: CallbackState, *, due_ms: int | None
    ) -> bool:
        """Write how a callback attempt went; ``due_ms`` None takes it out of the outbox.
        False when the job's record is gone (it left the outbox too)."""
        with redis_errors(self._config):
            reply = await self._scripts.callback(
                job_id=job_id, state_json=state.model_dump_json(), due_ms=due_ms
            )
        return as_text(reply) == "ok"

    # -- the one writer --------------------------------------------------------------------------

    async def _move(
        self,
        job_id: str,
        allowed: Sequence[str],
        target: JobState,
        *,
        run: str | None = None,
        start: str | None = None,
        error: ErrorInfo | None = None,
        want_record: bool = False,
        due_ms: int | None = None,
        has_files: bool = False,
        fields: Mapping[str, str] | None = None,
        lease_ms: int | None = None,
    ) -> Transition:
        now = clock.now()
        with redis_errors(self._config):
            reply = await self._scripts.transition(
                job_id=job_id,
                allowed=allowed,
                target=target,
                now_ms=clock.to_ms(now),
                now_iso=now.isoformat(),
                retention_s=self._config.retention_s,
                run=run,
                start=start,
                error_json=error.model_dump_json() if error is not None else None,
                want_record=want_record,
                due_ms=due_ms,
                operation=uuid.uuid4().hex,
                has_files=has_files,
                event=state_event(target, error),
                fields=fields or {},
                lease_ms=lease_ms,
            )
        status: Status = as_text(reply[0])  # type: ignore[assignment]
        previous = JobState(as_text(reply[1])) if reply[1] else None
        record = parse_record(pairs(reply[2:])) if len(reply) > 2 else None
        ended_arq = status == "ok" and target.is_final and bool(run)  # as transition.lua decides
        return Transition(status, previous, record, ended_arq)


def _created(fields: dict[str, str], reply: Any) -> tuple[JobRecord, bool]:
    """create.lua's reply as (record, created): the new record, or the one its key points at."""
    if as_text(reply[0]) == "existing":
        return parse_record(pairs(reply[1:])), False
    return parse_record(fields), True
