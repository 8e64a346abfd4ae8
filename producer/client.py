"""Producer: what an async web app uses to enqueue jobs and read them (producer/sync.py is its
blocking twin, SyncProducer).

    async with Producer() as producer:              # REDIS_URL, or Producer("redis://...")
        job = await producer.enqueue("owner/name", {"prompt": "..."}, idempotency_key="order-42")
        done = await producer.wait(job.id, timeout_s=60)

It never imports arq, replicate or the worker: a web app that only enqueues installs ``predq`` alone
(redis and pydantic). It reads records and changes them only through the producer-side moves of
JobStore (create, cancel, re-drive); the worker's moves are not reachable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import redis.asyncio as aioredis

from producer import keys
from producer.callbacks import check_public
from producer.config import Config
from producer.connection import bounded, connect_redis
from producer.errors import (
    InvalidRequest,
    JobNotFound,
    JobNotRetryable,
    WaitTimeout,
)
from producer.events import JobEvent, StateEvent, final_event, parse_entry
from producer.files import Files
from producer.models import JobRecord, JobRequest
from producer.outputs import OutputStore
from producer.store import JobStore
from producer.views import Views
from producer.waiting import RECHECK_S, FinishedWaiters, block_s, blocking_client

T = TypeVar("T")
#: Largest ``enqueue_many`` batch (its records are built in memory and sent in one pipeline).
MAX_BATCH = 10_000
_JOB_FIELDS = frozenset(
    {"model", "input", "idempotency_key", "max_attempts", "attempt_timeout_s", "stream",
     "callback_url"}
)  # fmt: skip
#: Events read per round trip.
_EVENT_PAGE = 500


class Producer(Views, Files):
    """Enqueue prediction jobs and read their records. Use as ``async with Producer(...)``.

    ``redis_url`` defaults to ``REDIS_URL`` (then ``redis://localhost:6379/0``); ``config`` replaces
    every setting at once; ``redis`` is an existing client to use instead of a new pool (the caller
    keeps owning it). Methods raise RedisUnavailable when Redis cannot be reached in time.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        config: Config | None = None,
        redis: aioredis.Redis | None = None,
    ) -> None:
        self.config = config or Config.from_env(os.environ, redis_url=redis_url)
        self._owns_redis = redis is None
        self._store_of_outputs: OutputStore | None = None
        self._blocking: aioredis.Redis | None = redis
        self._finished: FinishedWaiters | None = None
        self._redis: aioredis.Redis | None = redis
        self._store: JobStore | None = JobStore(redis, self.config) if redis is not None else None

    async def __aenter__(self) -> Self:
        self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def connect(self) -> None:
        """Create the connection pool (connections are opened lazily, on first use)."""
        if self._redis is None:
            self._redis = connect_redis(self.config)
            self._store = JobStore(self._redis, self.config)

    async def aclose(self) -> None:
        if self._finished is not None:
            await self._finished.aclose()
            self._finished = None
        if self._blocking is not None and self._owns_redis:
            await self._blocking.aclose()
            self._blocking = None
        if self._redis is not None and self._owns_redis:
            await self._redis.aclose()
            self._redis = None
            self._store = None

    def _jobs_redis(self) -> aioredis.Redis:
        self.connect()
        assert self._redis is not None
        return self._redis

    def _blocking_redis(self) -> aioredis.Redis:
        if self._blocking is None:
            self._blocking = blocking_client(self.config)
        return self._blocking

    def _waiters(self) -> FinishedWaiters:
        if self._finished is None:
            self._finished = FinishedWaiters(self._blocking_redis(), self.config)
        return self._finished

    async def _bounded(self, call: Awaitable[T]) -> T:
        return await bounded(call, self.config)

    @property
    def _jobs(self) -> JobStore:
        if self._store is None:
            self.connect()
        assert self._store is not None
        return self._store

    async def enqueue(
        self,
        model: str,
        input: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        attempt_timeout_s: float | None = None,
        stream: bool = False,
        callback_url: str | None = None,
    ) -> JobRecord:
        """Queue one prediction of ``model`` (``owner/name`` or ``owner/name:version``) on ``input``.

        Returns the queued record; with an ``idempotency_key`` seen within its window, the job that
        key first created instead (whatever its state). ``max_attempts`` and ``attempt_timeout_s``
        override the worker's defaults for this job; ``stream`` relays the model's output into
        the job's events as it is produced (``stream()``); ``callback_url`` gets a signed POST
        of the final record (producer/callbacks.py). Raises an InvalidRequest subclass for bad
        arguments (a callback URL that reaches a private address included), having written
        nothing.
        """
        request = JobRequest.build(
            model,
            input,
            max_input_bytes=self.config.max_input_bytes,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            attempt_timeout_s=attempt_timeout_s,
            stream=stream,
            callback_url=callback_url,
        )
        await self._check_callback(request)
        record, _created = await self._bounded(self._jobs.create(request))
        return record

    async def enqueue_many(self, jobs: Sequence[Mapping[str, Any]]) -> list[JobRecord]:
        """Queue many jobs in one round trip; returns their records in the same order.

        Each item holds ``enqueue``'s arguments by name: ``model`` and ``input``, and optionally
        ``idempotency_key``, ``max_attempts``, ``attempt_timeout_s``. Every item is validated
        before anything is written: one bad item raises InvalidRequest naming its index, and no job
        of the batch is queued. Idempotency keys work as in ``enqueue``.
        """
        if len(jobs) > MAX_BATCH:
            raise InvalidRequest(f"at most {MAX_BATCH:,} jobs per batch, got {len(jobs):,}")
        requests = [self._request(n, job) for n, job in enumerate(jobs)]
        for n, request in enumerate(requests):
            try:
                await self._check_callback(request)
            except InvalidRequest as exc:
                raise type(exc)(f"job {n}: {exc}") from None
        return [record for record, _ in await self._bounded(self._jobs.create_many(requests))]

    async def _check_callback(self, request: JobRequest) -> None:
        if request.callback_url is not None:
            allow = self.config.callback_allow_private
            await check_public(request.callback_url, allow_private=allow)

    def _request(self, index: int, job: Mapping[str, Any]) -> JobRequest:
        unknown = set(job) - _JOB_FIELDS
        try:
            if not isinstance(job, Mapping) or "model" not in job or "input" not in job:
                raise InvalidRequest("needs 'model' and 'input'")
            if unknown:
                raise InvalidRequest(f"unknown fields {sorted(unknown)}")
            return JobRequest.build(
                job["model"],
                job["input"],
                max_input_bytes=self.config.max_input_bytes,
                idempotency_key=job.get("idempotency_key"),
                max_attempts=job.get("max_attempts"),
                attempt_timeout_s=job.get("attempt_timeout_s"),
                stream=job.get("stream", False),
                callback_url=job.get("callback_url"),
            )
        except InvalidRequest as exc:
            raise type(exc)(f"job {index}: {exc}") from None

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if no job has this id (never a made-up "queued")."""
        return await self._bounded(self._jobs.get(job_id))

    async def wait(self, job_id: str, timeout_s: float | None = None) -> JobRecord:
        """Block until the job is final and return its record (woken by the final transition
        itself, within milliseconds; nothing is polled meanwhile).

        Raises JobNotFound for an unknown id and WaitTimeout after ``timeout_s`` (the job goes on).
        """
        if timeout_s is not None and timeout_s <= 0:
            raise InvalidRequest(f"timeout_s must be positive, got {timeout_s!r}")
        waiters = self._waiters()
        state = "queued"
        try:
            async with asyncio.timeout(timeout_s):
                await self._bounded(waiters.ready())
                with waiters.watching(job_id) as woken:
                    while True:
                        woken.clear()  # before reading: a wake-up after the read is not lost
                        record = await self.get(job_id)
                        if record is None:
                            raise JobNotFound(job_id)
                        if record.is_final:
                            return record
                        state = record.state.value
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(woken.wait(), RECHECK_S)
        except TimeoutError:
            raise WaitTimeout(f"job {job_id!r} is still {state} after {timeout_s:g} s") from None

    async def stream(self, job_id: str, *, after: str = "0") -> AsyncGenerator[JobEvent, None]:
        """The job's events as they happen, from the first (or after the event id ``after``):
        state changes, progress, and a streaming job's output chunks and logs, in order, ending
        with a ``FinalEvent`` that carries the final record. A reader that starts late gets what
        it missed first. Raises JobNotFound for an unknown id."""
        key = keys.events(job_id)
        last = after
        blocking = self._blocking_redis()
        block_ms = int(block_s(self.config) * 1000)
        if not await self._bounded(self._jobs_redis().exists(key)):
            record = await self.get(job_id)  # no events: an unknown job, or expired ones
            if record is None:
                raise JobNotFound(job_id)
            if record.is_final:
                yield final_event(record, last)
                return
        history = True
        while True:
            if history:
                start = "-" if last in ("0", "0-0") else f"({last}"
                read = self._jobs_redis().xrange(key, min=start, count=_EVENT_PAGE)
                entries = await self._bounded(read)
                history = len(entries) == _EVENT_PAGE
            else:
                reply = await self._bounded(
                    blocking.xread({key: last}, count=_EVENT_PAGE, block=block_ms)
                )
                entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                event = parse_entry(entry_id, fields)
                last = event.id
                yield event
                if isinstance(event, StateEvent) and event.state.is_final:
                    # The end, unless the job was re-driven (``retry``) after this event: then
                    # it is not final now, or later events follow (read first, then peek).
                    record = await self.get(job_id)
                    later = await self._bounded(
                        self._jobs_redis().xrange(key, min=f"({last}", count=1)
                    )
                    if record is None or (record.is_final and not later):
                        if record is not None:
                            yield final_event(record, last)
                        return

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job that has not finished; returns its record (final jobs are left as they are).

        A queued job never runs; a running one is stopped by its worker, which also cancels the
        prediction on Replicate. Raises JobNotFound for an unknown id.
        """
        transition = await self._bounded(self._jobs.cancel(job_id))
        if transition.record is None:
            raise JobNotFound(job_id)
        return transition.record

    async def retry(self, job_id: str) -> JobRecord:
        """Re-drive a failed job: the same id, queued again with a fresh budget of attempts, its
        error history kept. Raises JobNotFound, or JobNotRetryable unless the job is ``failed``."""
        transition = await self._bounded(self._jobs.requeue(job_id))
        if transition.status == "missing":
            raise JobNotFound(job_id)
        if transition.status == "busy":
            raise JobNotRetryable(
                f"job {job_id!r} is still being finished by its worker; retry it in a moment"
            )
        if not transition.ok:
            state = transition.previous.value if transition.previous else "unknown"
            raise JobNotRetryable(f"job {job_id!r} is {state}; only failed jobs can be retried")
        record = await self._bounded(self._jobs.get(job_id))
        if record is None:
            raise JobNotFound(job_id)
        return record
