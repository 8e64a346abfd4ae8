"""Producer (async) and SyncProducer (blocking): what web apps use to enqueue and poll jobs.

    async with Producer() as producer:              # REDIS_URL, or Producer("redis://...")
        job = await producer.enqueue("owner/name", {"prompt": "..."}, idempotency_key="order-42")
        done = await producer.wait(job.id, timeout_s=60)

    with SyncProducer() as producer:                # Django, Flask: safe to share between threads
        job = producer.enqueue("owner/name", {"prompt": "..."})

Neither imports arq, replicate or the worker: a web app that only enqueues installs ``predq`` alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from producer.config import Config
from producer.errors import (
    InvalidRequest,
    JobNotFound,
    JobNotRetryable,
    RedisUnavailable,
    WaitTimeout,
)
from producer.models import JobRecord, JobRequest, JobState
from producer.store import JobStore

T = TypeVar("T")
#: Largest ``enqueue_many`` batch (its records are built in memory and sent in one pipeline).
MAX_BATCH = 10_000
_JOB_FIELDS = frozenset({"model", "input", "idempotency_key", "max_attempts", "attempt_timeout_s"})
_WAIT_FIRST_POLL_S = 0.05
_WAIT_MAX_POLL_S = 1.0


def connect_redis(config: Config) -> aioredis.Redis:
    """A Redis client whose every call either answers or fails within a few timeouts, never hangs.

    Connection errors are retried twice with a short backoff (a blip, not an outage), then surface.
    """
    client: aioredis.Redis = aioredis.Redis.from_url(
        config.redis_url,
        socket_timeout=config.redis_timeout_s,
        socket_connect_timeout=config.redis_timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )
    return client


class Producer:
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
        if self._redis is not None and self._owns_redis:
            await self._redis.aclose()
            self._redis = None
            self._store = None

    async def _bounded(self, call: Awaitable[T]) -> T:
        """``call``, or RedisUnavailable if Redis has not answered within three timeouts (a Redis
        that accepts connections but never replies must not hang a web request)."""
        limit_s = 3 * self.config.redis_timeout_s
        try:
            async with asyncio.timeout(limit_s):
                return await call
        except TimeoutError:
            raise RedisUnavailable(
                f"Redis at {self.config.redis_url_redacted} did not answer within {limit_s:g} s"
            ) from None

    @property
    def store(self) -> JobStore:
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
    ) -> JobRecord:
        """Queue one prediction of ``model`` (``owner/name`` or ``owner/name:version``) on ``input``.

        Returns the queued record; with an ``idempotency_key`` seen within its window, the job that
        key first created instead (whatever its state). ``max_attempts`` and ``attempt_timeout_s``
        override the worker's defaults for this job. Raises an InvalidRequest subclass for bad
        arguments, having written nothing.
        """
        request = JobRequest.build(
            model,
            input,
            max_input_bytes=self.config.max_input_bytes,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            attempt_timeout_s=attempt_timeout_s,
        )
        record, _created = await self._bounded(self.store.create(request))
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
        return [record for record, _ in await self._bounded(self.store.create_many(requests))]

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
            )
        except InvalidRequest as exc:
            raise type(exc)(f"job {index}: {exc}") from None

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if no job has this id (never a made-up "queued")."""
        return await self._bounded(self.store.get(job_id))

    async def wait(self, job_id: str, timeout_s: float | None = None) -> JobRecord:
        """Block until the job is final and return its record.

        Raises JobNotFound for an unknown id and WaitTimeout after ``timeout_s`` (the job goes on).
        """
        if timeout_s is not None and timeout_s <= 0:
            raise InvalidRequest(f"timeout_s must be positive, got {timeout_s!r}")
        poll_s = _WAIT_FIRST_POLL_S
        state = "queued"
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    record = await self._bounded(self.store.get(job_id))
                    if record is None:
                        raise JobNotFound(job_id)
                    if record.is_final:
                        return record
                    state = record.state.value
                    await asyncio.sleep(poll_s)
                    poll_s = min(poll_s * 1.5, _WAIT_MAX_POLL_S)
        except TimeoutError:
            raise WaitTimeout(f"job {job_id!r} is still {state} after {timeout_s:g} s") from None

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job that has not finished; returns its record (final jobs are left as they are).

        A queued job never runs; a running one is stopped by its worker, which also cancels the
        prediction on Replicate. Raises JobNotFound for an unknown id.
        """
        transition = await self._bounded(self.store.cancel(job_id))
        if transition.record is None:
            raise JobNotFound(job_id)
        return transition.record

    async def retry(self, job_id: str) -> JobRecord:
        """Re-drive a failed job: the same id, queued again with a fresh budget of attempts, its
        error history kept. Raises JobNotFound, or JobNotRetryable unless the job is ``failed``."""
        transition = await self._bounded(self.store.requeue(job_id))
        if transition.status == "missing":
            raise JobNotFound(job_id)
        if transition.status == "busy":
            raise JobNotRetryable(
                f"job {job_id!r} is still being finished by its worker; retry it in a moment"
            )
        if not transition.ok:
            state = transition.previous.value if transition.previous else "unknown"
            raise JobNotRetryable(f"job {job_id!r} is {state}; only failed jobs can be retried")
        record = await self._bounded(self.store.get(job_id))
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def failed(self, limit: int = 100) -> list[JobRecord]:
        """The dead letters: failed jobs, most recently failed first (at most ``limit``)."""
        ids = await self._bounded(self.store.list_ids(JobState.FAILED, limit=limit))
        return [r for r in await self._bounded(self.store.get_many(ids)) if r is not None]


class SyncProducer:
    """The blocking twin of Producer for threaded web apps (Django, Flask).

    One background thread runs an event loop that owns the Redis pool; every method hands its call
    to that loop, so one instance can be shared by all of a process's threads. After a fork
    (gunicorn ``--preload``) the child starts its own thread on first use.
    """

    def __init__(self, redis_url: str | None = None, *, config: Config | None = None) -> None:
        self.config = config or Config.from_env(os.environ, redis_url=redis_url)
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        after_fork = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (method := after_fork()) and method())
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None

    def __enter__(self) -> Self:
        self._ensure_started()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _ensure_started(self) -> tuple[asyncio.AbstractEventLoop, Producer]:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None or self._producer is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="predq-producer", daemon=True
                )
                thread.start()
                producer = Producer(config=self.config)
                producer.connect()
                self._loop, self._thread, self._producer = loop, thread, producer
                self._pid = os.getpid()
                self._pending = set()
            return self._loop, self._producer

    def _call(self, make: Any, *args: Any, **kwargs: Any) -> Any:
        loop, producer = self._ensure_started()
        coroutine: Coroutine[Any, Any, Any] = make(producer, *args, **kwargs)
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        self._pending.add(future)
        try:
            return future.result()
        finally:
            self._pending.discard(future)

    def close(self) -> None:
        """Close the pool and stop the loop thread; calls still in flight in other threads raise
        ``concurrent.futures.CancelledError``. The instance can be used again afterwards."""
        with self._lock:
            loop, thread, producer = self._loop, self._thread, self._producer
            self._loop = self._thread = self._producer = None
            pending, self._pending = self._pending, set()
        if loop is None or thread is None or producer is None or self._pid != os.getpid():
            return
        for future in pending:
            future.cancel()
        asyncio.run_coroutine_threadsafe(producer.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _after_fork(self) -> None:
        # The parent's lock may have been held by another thread at the fork: a new one.
        self._lock = threading.Lock()

    def enqueue(
        self,
        model: str,
        input: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        attempt_timeout_s: float | None = None,
    ) -> JobRecord:
        """See Producer.enqueue."""
        result: JobRecord = self._call(
            Producer.enqueue,
            model,
            input,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            attempt_timeout_s=attempt_timeout_s,
        )
        return result

    def enqueue_many(self, jobs: Sequence[Mapping[str, Any]]) -> list[JobRecord]:
        """See Producer.enqueue_many."""
        result: list[JobRecord] = self._call(Producer.enqueue_many, jobs)
        return result

    def get(self, job_id: str) -> JobRecord | None:
        """See Producer.get."""
        result: JobRecord | None = self._call(Producer.get, job_id)
        return result

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobRecord:
        """See Producer.wait."""
        result: JobRecord = self._call(Producer.wait, job_id, timeout_s)
        return result

    def cancel(self, job_id: str) -> JobRecord:
        """See Producer.cancel."""
        result: JobRecord = self._call(Producer.cancel, job_id)
        return result

    def retry(self, job_id: str) -> JobRecord:
        """See Producer.retry."""
        result: JobRecord = self._call(Producer.retry, job_id)
        return result

    def failed(self, limit: int = 100) -> list[JobRecord]:
        """See Producer.failed."""
        result: list[JobRecord] = self._call(Producer.failed, limit)
        return result
