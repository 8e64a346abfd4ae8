"""JobStore: the only code that writes JobRecords. Every write is one atomic Lua call.

The record is a Redis hash (``keys.job``) whose JSON-valued fields (input, output, error, errors) are
stored as opaque JSON strings, so user data never passes through Lua's cjson. State moves follow
this table; anything else is refused and reported, never applied:

    to \\ from     queued  running  retrying
    running        start   recover  start
    retrying               yes
    succeeded              yes
    failed         *       yes      *        (* only before any claim, without a run token;
                                             and re-drive: failed -> queued, see requeue)
    canceled       yes     yes      yes

A worker holds a *run token* from ``start`` on; its later moves pass it, and a worker whose job was
recovered by another one (new token) is fenced out with status ``stale``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal

import redis.asyncio as aioredis

from producer import arq_wire, clock, keys
from producer.config import Config
from producer.connection import redis_errors
from producer.models import ErrorInfo, JobRecord, JobRequest, JobState
from producer.records import as_text, new_record_fields, pairs, parse_record

Status = Literal["ok", "missing", "illegal", "stale", "claimed", "busy"]
_LIVE = "queued running retrying"


def _lua(name: str) -> str:
    return resources.files("producer").joinpath("lua", name).read_text()


@dataclass(frozen=True)
class Transition:
    """What a state move did: ``ok``, or why not (``missing``, ``illegal``, ``stale``)."""

    status: Status
    previous: JobState | None
    record: JobRecord | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class JobStore:
    """Reads and writes job records on ``redis`` (a ``redis.asyncio.Redis``, bytes or decoded)."""

    def __init__(self, redis: aioredis.Redis, config: Config) -> None:
        self._redis = redis
        self._config = config
        self._create = redis.register_script(_lua("create.lua"))
        self._transition = redis.register_script(_lua("transition.lua"))
        self._prediction = redis.register_script(_lua("prediction.lua"))
        self._requeue = redis.register_script(_lua("requeue.lua"))

    # -- producer side -------------------------------------------------------------------------

    async def create(self, request: JobRequest) -> tuple[JobRecord, bool]:
        """Store a new queued job and put it on the arq queue; returns (record, created).

        With an idempotency key that is still in its window, returns the job it first created
        (whatever its state) and ``created=False``; nothing is written then.
        """
        [result] = await self.create_many([request])
        return result

    async def create_many(self, requests: Sequence[JobRequest]) -> list[tuple[JobRecord, bool]]:
        """``create`` for each request, in one round trip (a pipeline of the same Lua call).

        Each job is created atomically; the batch as a whole is not a transaction (like that many
        ``create`` calls, in order: a repeated idempotency key returns the batch's first job).
        """
        now = clock.now()
        calls = [self._create_call(request, now) for request in requests]
        with redis_errors(self._config):
            async with self._redis.pipeline(transaction=False) as pipe:
                for script_keys, args, _ in calls:
                    await self._create(keys=script_keys, args=args, client=pipe)
                replies = await pipe.execute()
        results = []
        for (_, _, fields), reply in zip(calls, replies, strict=True):
            if as_text(reply[0]) == "existing":
                results.append((parse_record(pairs(reply[1:])), False))
            else:
                results.append((parse_record(fields), True))
        return results

    def _create_call(
        self, request: JobRequest, now: datetime
    ) -> tuple[list[str], list[Any], dict[str, str]]:
        """The keys and arguments of create.lua for one new job, and the record's fields."""
        job_id = uuid.uuid4().hex
        now_ms = clock.to_ms(now)
        fields = new_record_fields(job_id, request, now)
        script_keys = [
            keys.job(job_id),
            keys.state_index(JobState.QUEUED),
            self._config.queue_name,
            arq_wire.job_key(job_id),
        ]
        if request.idempotency_key is not None:
            script_keys.append(keys.idempotency(request.idempotency_key))
        args: list[Any] = [
            job_id,
            arq_wire.due_score(now_ms),
            arq_wire.payload(job_id, now_ms),
            self._config.idempotency_window_s,
            keys.JOB_PREFIX,
        ]
        for name, value in fields.items():
            args += [name, value]
        return script_keys, args, fields

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
        now = clock.now().isoformat()
        return await self._move(
            job_id,
            _LIVE,
            JobState.CANCELED,
            run=run,
            error=error,
            want_record=True,
            fields={"finished_at": now},
        )

    async def requeue(self, job_id: str) -> Transition:
        """Re-drive a failed job: queued again under the same id, with fresh attempts.

        Status ``busy`` while arq still holds the job (its worker has not finished with it).
        """
        now = clock.now()
        now_ms = clock.to_ms(now)
        script_keys = [
            keys.job(job_id),
            keys.state_index(JobState.FAILED),
            keys.state_index(JobState.QUEUED),
            self._config.queue_name,
            arq_wire.job_key(job_id),
            arq_wire.in_progress_key(job_id),
        ]
        args: list[Any] = [
            job_id,
            arq_wire.due_score(now_ms),
            now.isoformat(),
            arq_wire.payload(job_id, now_ms),
            uuid.uuid4().hex,
        ]
        with redis_errors(self._config):
            reply = await self._requeue(keys=script_keys, args=args)
        status: Status = as_text(reply[0])  # type: ignore[assignment]
        previous = JobState(as_text(reply[1])) if reply[1] else None
        return Transition(status, previous)

    async def get_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        """Records for ``job_ids`` in one round trip (None where a record is gone)."""
        with redis_errors(self._config):
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hgetall(keys.job(job_id))
                replies = await pipe.execute()
        return [parse_record(fields) if fields else None for fields in replies]

    async def model_of(self, job_id: str) -> str | None:
        """The job's model reference (None for an unknown job), without reading the whole record."""
        with redis_errors(self._config):
            model = await self._redis.hget(keys.job(job_id), "model")  # type: ignore[misc]
        return as_text(model) if model is not None else None

    async def defer(self, job_id: str, delay_s: float) -> None:
        """Make the job's existing queue entry due again in ``delay_s`` (its record is unchanged)."""
        due = arq_wire.due_score(clock.now_ms() + int(delay_s * 1000))
        with redis_errors(self._config):
            await self._redis.zadd(self._config.queue_name, {job_id: due}, xx=True)

    async def list_ids(self, state: JobState, *, limit: int = 100) -> list[str]:
        """Ids of jobs in ``state``, most recently changed first."""
        with redis_errors(self._config):
            ids = await self._redis.zrevrange(keys.state_index(state), 0, limit - 1)
        return [as_text(i) for i in ids]

    async def count(self, state: JobState) -> int:
        with redis_errors(self._config):
            return int(await self._redis.zcard(keys.state_index(state)))

    async def counts(self) -> dict[JobState, int]:
        """Jobs per state, from the state indexes, in one round trip."""
        with redis_errors(self._config):
            async with self._redis.pipeline(transaction=False) as pipe:
                for state in JobState:
                    pipe.zcard(keys.state_index(state))
                replies = await pipe.execute()
        return {state: int(n) for state, n in zip(JobState, replies, strict=True)}

    # -- worker side ---------------------------------------------------------------------------

    async def start(self, job_id: str) -> tuple[Transition, str]:
        """Claim a job for an attempt (or resume a running one after a crash).

        Returns the transition, with the whole record, and the new run token that fences the
        worker's later moves.
        """
        run = uuid.uuid4().hex
        transition = await self._move(job_id, _LIVE, JobState.RUNNING, start=run, want_record=True)
        return transition, run

    async def set_prediction_id(self, job_id: str, run: str, prediction_id: str) -> Status:
        """Record (and claim for this job) the prediction this attempt waits on.

        Returns ``ok``; ``illegal`` if the job is no longer running (canceled meanwhile); ``stale``
        if another worker took it over; ``claimed`` if another job already owns the prediction.
        """
        with redis_errors(self._config):
            reply = await self._prediction(
                keys=[keys.job(job_id), keys.prediction(prediction_id)],
                args=[
                    run,
                    job_id,
                    prediction_id,
                    self._config.retention_s,
                    clock.now().isoformat(),
                ],
            )
        status: Status = as_text(reply)  # type: ignore[assignment]
        return status

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
        fields = {"resume": "1", "prediction_id": prediction_id or ""}
        if create_unconfirmed_at is not None:
            fields["create_unconfirmed_at"] = create_unconfirmed_at
        return await self._move(
            job_id,
            "running",
            JobState.QUEUED,
            run=run,
            due_ms=clock.now_ms(),
            fields=fields,
        )

    async def succeed(
        self, job_id: str, run: str, output_json: str, *, prediction_id: str | None
    ) -> Transition:
        """Final success; ``output_json`` is the prediction's output encoded as JSON."""
        fields = {"output": output_json, "finished_at": clock.now().isoformat()}
        if prediction_id:
            fields["prediction_id"] = prediction_id
        return await self._move(job_id, "running", JobState.SUCCEEDED, run=run, fields=fields)

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
            "running",
            JobState.RETRYING,
            run=run,
            error=error,
            due_ms=clock.now_ms() + delay_ms,
            fields={
                "prediction_id": prediction_id or "",
                "create_unconfirmed_at": create_unconfirmed_at or "",
            },
        )

    async def fail(
        self, job_id: str, run: str | None, error: ErrorInfo, *, prediction_id: str | None = None
    ) -> Transition:
        """Final failure (the dead-letter state), keeping ``error`` as the last one."""
        # Without a run token (a failure before any claim) a running job is not touched.
        allowed = "running" if run is not None else "queued retrying"
        fields = {"finished_at": clock.now().isoformat()}
        if prediction_id:
            fields["prediction_id"] = prediction_id
        return await self._move(
            job_id, allowed, JobState.FAILED, run=run, error=error, fields=fields
        )

    # -- the one writer --------------------------------------------------------------------------

    async def _move(
        self,
        job_id: str,
        allowed: str,
        target: JobState,
        *,
        run: str | None = None,
        start: str | None = None,
        error: ErrorInfo | None = None,
        want_record: bool = False,
        due_ms: int | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> Transition:
        now = clock.now()
        args: list[Any] = [
            allowed,
            target.value,
            clock.to_ms(now),
            self._config.retention_s,
            run or "",
            start or "",
            now.isoformat(),
            error.model_dump_json() if error is not None else "",
            "1" if want_record else "0",
            "" if due_ms is None else arq_wire.due_score(due_ms),
            uuid.uuid4().hex,
            arq_wire.payload(job_id, clock.to_ms(now)),
            "updated_at",
            now.isoformat(),
        ]
        for name, value in (fields or {}).items():
            args += [name, value]
        with redis_errors(self._config):
            reply = await self._transition(
                keys=[
                    keys.job(job_id),
                    *keys.STATE_INDEXES,
                    self._config.queue_name,
                    arq_wire.job_key(job_id),
                ],
                args=args,
            )
        status: Status = as_text(reply[0])  # type: ignore[assignment]
        previous = JobState(as_text(reply[1])) if reply[1] else None
        record = parse_record(pairs(reply[2:])) if len(reply) > 2 else None
        return Transition(status, previous, record)
