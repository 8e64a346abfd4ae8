"""SyncProducer: the blocking twin of Producer, for threaded web apps (Django, Flask).

with SyncProducer() as producer:                # safe to share between a process's threads
    job = producer.enqueue("owner/name", {"prompt": "..."})
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
import weakref
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from producer.client import Producer
from producer.config import Config
from producer.events import JobEvent
from producer.listing import JobPage
from producer.models import JobRecord, JobState


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
        stream: bool = False,
        callback_url: str | None = None,
    ) -> JobRecord:
        """See Producer.enqueue."""
        result: JobRecord = self._call(
            Producer.enqueue,
            model,
            input,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            attempt_timeout_s=attempt_timeout_s,
            stream=stream,
            callback_url=callback_url,
        )
        return result

    def stream(self, job_id: str, *, after: str = "0") -> Iterator[JobEvent]:
        """See Producer.stream: the same events, blocking between them."""
        loop, producer = self._ensure_started()
        events: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def pump() -> None:
            try:
                async for event in producer.stream(job_id, after=after):
                    events.put(("event", event))
            except BaseException as exc:
                events.put(("error", exc))
                raise
            events.put(("end", None))

        future = asyncio.run_coroutine_threadsafe(pump(), loop)
        try:
            while True:
                kind, item = events.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise item
                yield item
        finally:
            future.cancel()

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

    def list_jobs(self, state: JobState | None = None, **filters: Any) -> JobPage:
        """See Producer.list_jobs (the same keyword filters)."""
        result: JobPage = self._call(Producer.list_jobs, state, **filters)
        return result

    def find(
        self, *, idempotency_key: str | None = None, prediction_id: str | None = None
    ) -> JobRecord | None:
        """See Producer.find."""
        result: JobRecord | None = self._call(
            Producer.find, idempotency_key=idempotency_key, prediction_id=prediction_id
        )
        return result

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        """See Producer.get_many."""
        result: list[JobRecord | None] = self._call(Producer.get_many, job_ids)
        return result

    def counts(self) -> dict[JobState, int]:
        """See Producer.counts."""
        result: dict[JobState, int] = self._call(Producer.counts)
        return result

    def file_url(self, job_id: str, n: int = 0, *, expires_s: int = 3600) -> str:
        """See Producer.file_url."""
        result: str = self._call(Producer.file_url, job_id, n, expires_s=expires_s)
        return result

    def read_file(self, job_id: str, n: int = 0) -> bytes:
        """See Producer.read_file."""
        result: bytes = self._call(Producer.read_file, job_id, n)
        return result
