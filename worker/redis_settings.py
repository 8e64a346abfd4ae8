"""arq's Redis connection for a worker: retried through a Redis restart, and never silent about it.

The URL is read by redis-py's own parser (as producers read it: percent-decoding, ``?password=``),
not arq's ``from_dsn``, which ignores both. Every command is retried with backoff (about 50 s in
all) on connection errors, so a Redis restart is ridden out instead of ending the process
(python-arq/arq#9). While Redis cannot be reached the worker says so at once, and again every
``REPORT_EVERY_S`` (a worker started against a dead Redis used to be silent for ~56 s).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions
import structlog
from arq.connections import RedisSettings
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from producer.connection import why_unreachable
from worker.config import WorkerConfig

log = structlog.get_logger(__name__)
T = TypeVar("T")
REPORT_EVERY_S = 10.0
RETRIES = 30


class ReportingRetry(Retry):
    """redis-py's Retry that logs the first failure of an outage at once, then every
    ``REPORT_EVERY_S`` while it lasts, with the reason (refused, unknown host, no answer)."""

    __slots__ = ("_redis_url",)

    def __init__(self, redis_url_redacted: str) -> None:
        super().__init__(ExponentialBackoff(cap=2.0, base=0.1), RETRIES)
        self._redis_url = redis_url_redacted

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[Any], Any]
    ) -> T:
        async def report_then_fail(error: Any) -> None:
            _report(self._redis_url, error)
            await fail(error)

        return await super().call_with_retry(do, report_then_fail)


_last_report = 0.0


def _report(redis_url: str, error: BaseException) -> None:
    global _last_report
    now = time.monotonic()
    if now - _last_report < REPORT_EVERY_S:
        return
    _last_report = now
    log.warning(
        "worker.redis_unavailable",
        redis=redis_url,
        reason=why_unreachable(error),
        retrying=f"with backoff, up to {RETRIES} times per command",
    )


def redis_settings(config: WorkerConfig) -> RedisSettings:
    """arq's connection settings for ``config``."""
    url = parse_url(config.redis_url)
    settings = RedisSettings(
        host=url.get("host", "localhost"),
        port=int(url.get("port", 6379)),
        database=int(url.get("db", 0)),
        username=url.get("username"),
        password=url.get("password"),
        ssl=url.get("connection_class") is SSLConnection,
        unix_socket_path=url.get("path"),
    )
    settings.conn_timeout = int(max(1, config.redis_timeout_s))
    settings.conn_retries = 30
    settings.conn_retry_delay = 1
    settings.max_connections = config.concurrency + 50
    settings.retry_on_timeout = True
    # OSError too: a refused connection (Redis restarting) surfaces as ConnectionRefusedError.
    settings.retry_on_error = [
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        OSError,
    ]
    settings.retry = ReportingRetry(config.redis_url_redacted)
    return settings
