"""Waiting for a prediction's completion webhook instead of polling for it.

One pub/sub subscription per worker process (``listen``) wakes the waiter of each prediction whose
webhook the receiver stored. A waiter first looks for the stored prediction (the webhook may come
before the wait begins), then sleeps until woken or until ``fallback_poll_s`` passes; the caller
then polls Replicate once, in case the webhook was lost, and waits again. While webhooks arrive,
no prediction is polled at all.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis
import structlog

from producer import keys
from worker.subscription import keep_subscribed

log = structlog.get_logger(__name__)


class WebhookWaiters:
    """The predictions this worker process is waiting on, woken by the receiver's messages."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._events: dict[str, asyncio.Event] = {}

    async def listen(self) -> None:
        """Dispatch the receiver's messages to waiters until cancelled; reconnects on errors."""
        await keep_subscribed(
            self._redis, keys.WEBHOOK_CHANNEL, self._wake, on_lost=self._wake_all, name="webhooks"
        )

    def _wake_all(self) -> None:
        for event in self._events.values():  # messages may have been missed
            event.set()

    def _wake(self, data: bytes | str) -> None:
        prediction_id = data.decode() if isinstance(data, bytes) else data
        event = self._events.get(prediction_id)
        log.debug("webhook.message", prediction_id=prediction_id, waiting=event is not None)
        if event is not None:
            event.set()

    async def wait(self, prediction_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The final prediction its webhook delivered, or None if none came within ``timeout_s``."""
        event = self._events.setdefault(prediction_id, asyncio.Event())
        try:
            stored = await self._stored(prediction_id)
            if stored is not None:
                return stored
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except TimeoutError:
                log.info("webhook.not_received", prediction_id=prediction_id, waited_s=timeout_s)
                return None
            return await self._stored(prediction_id)
        finally:
            self._events.pop(prediction_id, None)

    async def _stored(self, prediction_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(keys.webhook(prediction_id))
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        return data
