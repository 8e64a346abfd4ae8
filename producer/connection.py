"""The Redis connection producers use, and how redis-py's failures look to callers.

Every redis-py exception is translated here, at the boundary, into RedisUnavailable: one line that
says what went wrong (refused, unknown host, no answer in time, the server's own refusal) and
names neither the password nor the command's arguments (they hold users' inputs).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

try:
    import hiredis
except ImportError:  # redis[hiredis] is a dependency; a stripped install still works
    hiredis = None  # type: ignore[assignment]

from producer.config import Config
from producer.errors import RedisUnavailable

T = TypeVar("T")
#: A producer call gives up after this many Redis timeouts (a Redis that accepts connections but
#: never replies must not hang a web request).
BOUND_TIMEOUTS = 3


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
    return packing_in_c(client)


class _PackingInC:
    """A redis-py asyncio connection that packs commands with hiredis, as redis-py's sync
    connections do: its own Python packer spends ~30 µs on a Lua call with 40 arguments (a
    transition), hiredis ~4 µs, for the same bytes (tests/unit/test_connection_packing.py)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):  # "CONFIG GET" and the like: the words go separately
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # None, a bool, a dict: what redis-py's encoder refuses too
            raise redis.exceptions.DataError(str(exc)) from exc


def packing_in_c(client: aioredis.Redis) -> aioredis.Redis:
    """``client``, whose connections made from now on pack commands with hiredis (unchanged
    without hiredis). Whatever their class: TCP, TLS or a Unix socket."""
    pool = client.connection_pool
    encoding = str(pool.connection_kwargs.get("encoding", "utf-8")).lower().replace("-", "")
    errors = pool.connection_kwargs.get("encoding_errors", "strict")
    if hiredis is None or encoding != "utf8" or errors != "strict":  # hiredis writes strict UTF-8
        return client
    if not issubclass(pool.connection_class, _PackingInC):
        base = pool.connection_class
        pool.connection_class = type(f"PackingInC{base.__name__}", (_PackingInC, base), {})
    return client


async def bounded(call: Awaitable[T], config: Config) -> T:
    """``call``, or RedisUnavailable if Redis has not answered within ``BOUND_TIMEOUTS`` timeouts.

    A cancellation requested while a redis-py 5 command is in flight can be lost (the command
    completes and the task goes on): it is raised here instead, so that a Ctrl-C or a web
    request's cancellation stops the caller."""
    limit_s = BOUND_TIMEOUTS * config.redis_timeout_s
    try:
        async with asyncio.timeout(limit_s):
            result = await call
    except TimeoutError:
        raise RedisUnavailable(
            f"Redis at {config.redis_url_redacted} did not answer within {limit_s:g} s"
        ) from None
    raise_lost_cancellation()
    return result


def raise_lost_cancellation() -> None:
    """Raise CancelledError if this task was cancelled during a Redis call that went on anyway.

    redis-py 5 can complete a command whose task was cancelled meanwhile, and the cancellation
    is then lost: a worker shutting down would not hand its job over, a Ctrl-C would not stop.
    Called after every Redis call of the store and the producer."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


@contextmanager
def redis_errors(config: Config) -> Iterator[None]:
    """Translate redis-py's failures inside the block into RedisUnavailable (and raise a
    cancellation the block lost: ``raise_lost_cancellation``)."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise RedisUnavailable(
            f"Redis at {config.redis_url_redacted} is unavailable: {why_unreachable(exc, config)}"
        ) from None
    except redis.exceptions.RedisError as exc:
        raise RedisUnavailable(
            f"Redis at {config.redis_url_redacted} refused the command: {server_reason(exc)}"
        ) from None
    raise_lost_cancellation()


def why_unreachable(exc: BaseException, config: Config | None = None) -> str:
    """What a connection failure was, in a few words: connection refused, unknown host, no answer
    within the timeout, the connection closed, or the error's own first line."""
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            return "unknown host (the name does not resolve)"
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return "connection refused (is redis-server running there?)"
        if isinstance(cause, TimeoutError | redis.exceptions.TimeoutError):
            timeout = f" within {config.redis_timeout_s:g} s" if config is not None else ""
            return f"no answer{timeout} (the server accepts connections but does not reply)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "closed by server" in text.lower():
        return "the server closed the connection"
    return f"{type(exc).__name__}: {text[:200]}"


def server_reason(exc: Exception) -> str:
    """The server's own words (e.g. "OOM command not allowed ..."), without the command that
    redis-py quotes in pipeline errors."""
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    text = first.rsplit("caused error: ", 1)[-1].split(" script: ", 1)[0]
    lines = text.strip().splitlines() or [type(exc).__name__]
    return lines[0][:200]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
