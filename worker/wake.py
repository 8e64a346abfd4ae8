"""Idle workers wait to be woken instead of polling: an idle worker's cost in Redis.

arq polls its queue every ``poll_delay`` (``PREDQ_QUEUE_POLL_S``), busy or not: five commands a
second per idle worker at 0.2 s. predq's enqueue (and retry) publishes on the queue's wake channel
(``keys.wake_channel``; at most once per ``keys.WAKE_EVERY_MS``, however many jobs are queued),
so a worker whose last poll found nothing waits for that message, or at most
``PREDQ_IDLE_POLL_S``, before it polls again (worker/arq_patches.py): a new job starts at once,
and jobs that become due by themselves (a retry's backoff, a dead worker's lease) are seen within
that time. A lost subscription costs nothing but that delay.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from producer import keys
from worker.subscription import keep_subscribed


class Wake:
    """One worker process's subscription to its queue's wake channel."""

    def __init__(self, redis: aioredis.Redis, *, queue_name: str, idle_poll_s: float) -> None:
        self._redis = redis
        self._channel = keys.wake_channel(queue_name)
        self.idle_poll_s = idle_poll_s
        self._event = asyncio.Event()

    async def listen(self) -> None:
        """Note every wake until cancelled; reconnects on errors (a wake may have been missed
        meanwhile: the next wait ends at once)."""
        await keep_subscribed(
            self._redis,
            self._channel,
            lambda _: self._event.set(),
            on_lost=self._event.set,
            name="wake",
        )

    def nudge(self) -> None:
        """End the current wait (a shutdown began)."""
        self._event.set()

    async def idle(self) -> None:
        """Return when a job was queued since the last call, or after ``idle_poll_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.idle_poll_s):
                await self._event.wait()
        self._event.clear()
