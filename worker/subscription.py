"""A pub/sub subscription a worker keeps for its whole life (webhook wake-ups, queue wakes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
import redis.exceptions
import structlog

log = structlog.get_logger(__name__)
_RECONNECT_FIRST_S = 0.1
_RECONNECT_MAX_S = 5.0


async def keep_subscribed(
    client: aioredis.Redis,
    channel: str,
    on_message: Callable[[bytes | str], None],
    *,
    on_lost: Callable[[], None],
    name: str,
) -> None:
    """Call ``on_message`` with each message's data on ``channel`` until cancelled. On a Redis
    error: log ``{name}.listen_failed``, call ``on_lost`` (messages may have been missed) and
    subscribe again, after 0.1 s doubling to 5 s."""
    delay_s = _RECONNECT_FIRST_S
    while True:
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                delay_s = _RECONNECT_FIRST_S
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        on_message(message["data"])
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning(f"{name}.listen_failed", error=type(exc).__name__)
            on_lost()
            await asyncio.sleep(delay_s)
            delay_s = min(_RECONNECT_MAX_S, delay_s * 2)
