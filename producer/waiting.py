"""Waiting on jobs without polling them: ``Producer.wait`` and ``Producer.stream``.

Every final transition announces its job's id on ``keys.FINISHED_CHANNEL`` (in the same Lua call).
Each Producer subscribes once, and wakes the ``wait`` calls of that job: a waiter reads the record
when it starts and when it is woken, nothing in between, so a thousand idle waiters cost Redis no
commands at all (the cost is O(events), not O(waiters x polls)). A reconnected subscription may
have missed messages, so it wakes every waiter to look again; a waiter also looks once every
``RECHECK_S`` whatever happens (a safety net that costs 1/RECHECK_S reads per waiter per second).

``Producer.stream`` reads the job's event stream (history, then ``XREAD BLOCK`` for what comes):
blocking reads go through a client of their own whose socket timeout outlasts the block.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import PubSub

from producer import keys
from producer.config import Config
from producer.connection import redis_errors
from producer.records import as_text

RECHECK_S = 300.0
_RECONNECT_MAX_S = 5.0


def block_s(config: Config) -> float:
    """How long one blocking read waits (within what ``bounded`` allows a call)."""
    return min(5.0, 2 * config.redis_timeout_s)


def blocking_client(config: Config) -> aioredis.Redis:
    """A client for blocking reads and the subscription: its socket outlasts ``block_s``."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        config.redis_url,
        socket_timeout=block_s(config) + config.redis_timeout_s,
        socket_connect_timeout=config.redis_timeout_s,
    )
    return client


class FinishedWaiters:
    """The ``wait`` calls of one Producer, woken by the finished-jobs channel."""

    def __init__(self, redis: aioredis.Redis, config: Config) -> None:
        self._redis = redis
        self._config = config
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        """Subscribe if not yet (raises RedisUnavailable when Redis cannot be reached)."""
        if self._task is None or self._task.done():
            self._subscribed.clear()
            self._task = asyncio.create_task(self._listen())
        if self._subscribed.is_set():
            return
        waiting = asyncio.create_task(self._subscribed.wait())
        await asyncio.wait([waiting, self._task], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not self._subscribed.is_set():
            with redis_errors(self._config):
                self._task.result()  # it failed: say why

    @contextlib.contextmanager
    def watching(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``job_id`` may have become final."""
        event = asyncio.Event()
        self._waiting.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiting.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiting[job_id]

    async def _listen(self) -> None:
        delay_s = 0.1
        first = True
        while True:
            pubsub: PubSub = self._redis.pubsub()
            try:
                await pubsub.subscribe(keys.FINISHED_CHANNEL)
                self._subscribed.set()
                self._wake_all()  # messages may have been missed while not subscribed
                delay_s = 0.1
                first = False
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        self._wake(as_text(message["data"]))
            except (redis.exceptions.RedisError, OSError):
                self._subscribed.clear()
                if first:
                    raise
                await asyncio.sleep(delay_s)
                delay_s = min(_RECONNECT_MAX_S, delay_s * 2)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _wake(self, job_id: str) -> None:
        for event in self._waiting.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiting.values():
            for event in events:
                event.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
