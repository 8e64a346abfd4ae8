"""Workers you can see: each worker process registers, heartbeats, and adds its counts to the
per-minute history.

Every ``HEARTBEAT_S`` one pipeline writes this process's registration (``keys.worker``: host, pid,
version, concurrency, in flight, jobs done and failed, started, last seen), its last-seen time in
``keys.WORKERS``, and what it counted since the last beat into the minute's history
(``keys.history``): a few commands per worker per beat, whatever the number of jobs. A clean
shutdown deregisters; a worker that stops beating (SIGKILL, a lost host) shows as dead after
``DEAD_AFTER_BEATS`` beats (see producer/stats.py, which reads all this).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from importlib import metadata

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from producer import clock, keys
from producer.stats import HEARTBEAT_S, WORKER_TTL_S
from worker.metrics import Metrics

log = structlog.get_logger(__name__)
#: The registration's TTL is set on the first beat and every this many beats after (idle cost).
_EXPIRE_EVERY_BEATS = 12


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Registration:
    """This worker process in the registry."""

    def __init__(
        self,
        redis: aioredis.Redis,
        metrics: Metrics,
        *,
        worker_id: str,
        queue: str,
        concurrency: int,
        creates_per_min: int = 0,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._redis = redis
        self._metrics = metrics
        self.worker_id = worker_id
        self._fields = {
            "id": worker_id,
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "version": metadata.version("predq"),
            "queue": queue,
            "concurrency": str(concurrency),
            "creates_per_min": str(creates_per_min),
            "started_at": clock.now().isoformat(),
            "heartbeat_s": repr(heartbeat_s),
        }
        self._heartbeat_s = heartbeat_s
        self._done = 0
        self._failed = 0
        self._beats = -1  # the first beat sets the TTL

    async def keep_beating(self) -> None:
        """Heartbeat every ``heartbeat_s`` until cancelled; Redis errors are logged."""
        while True:
            try:
                await self.beat()
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("worker.heartbeat_failed", error=type(exc).__name__)
            await asyncio.sleep(self._heartbeat_s)

    async def beat(self) -> None:
        counts = self._metrics.minute
        self._metrics.minute = type(counts)()  # counted from here on goes to the next beat
        self._done += counts.get("succeeded", 0)
        self._failed += counts.get("failed", 0)
        now = clock.now()
        self._beats += 1
        minute_key = keys.history(clock.to_ms(now) // 60_000)
        fields = {**self._fields, "last_seen": now.isoformat(),
                  "in_flight": str(self._metrics.running),
                  "done": str(self._done), "failed": str(self._failed)}  # fmt: skip
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(keys.worker(self.worker_id), mapping=fields)
                if self._beats % _EXPIRE_EVERY_BEATS == 0:  # a day's TTL needs no refresh per beat
                    pipe.expire(keys.worker(self.worker_id), WORKER_TTL_S)
                pipe.zadd(keys.WORKERS, {self.worker_id: clock.to_ms(now)})
                for name, count in counts.items():
                    pipe.hincrby(minute_key, name, count)
                if counts:
                    pipe.expire(minute_key, keys.HISTORY_TTL_S)
                await pipe.execute()
        except BaseException:
            self._metrics.minute.update(counts)  # not written: next beat
            self._done -= counts.get("succeeded", 0)
            self._failed -= counts.get("failed", 0)
            raise

    async def leave(self) -> None:
        """Deregister (a clean shutdown), after one last beat for the history."""
        try:
            await self.beat()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.WORKERS, self.worker_id)
                pipe.delete(keys.worker(self.worker_id))
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("worker.deregister_failed", error=type(exc).__name__)
