"""producer/connection.py packs commands with hiredis: the same bytes as redis-py's own packer,
the same refusals, on every kind of connection."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from producer.config import Config
from producer.connection import connect_redis, packing_in_c

COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "predq:job:1"),
    ("EVALSHA", "ab" * 20, 2, "k1", "k2", 1_796_234_875_208, "", "ünïcode ✓", b"\x00\xffraw"),
    ("ZRANGEBYSCORE", "q", float("-inf"), 1_796_234_905_208.0, "LIMIT", 0, 100),
    ("CONFIG GET", "maxmemory"),  # a two-word command name
    (b"CLIENT SETNAME", "predq"),
    ("SET", "big", "x" * 200_000),  # what redis-py sends in chunks
    ("SET", "view", memoryview(b"bytes")),
    ("ZADD", "q", 1.5, "a", -2, "b"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_bytes_are_redis_pys_own(command: tuple[Any, ...]) -> None:
    ours = packing_in_c(aioredis.Redis()).connection_pool.make_connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(Connection().pack_command(*command))


@pytest.mark.parametrize("bad", [None, True, {"a": 1}, [1]])
def test_what_redis_py_refuses_is_refused(bad: object) -> None:
    ours = packing_in_c(aioredis.Redis()).connection_pool.make_connection()
    with pytest.raises(redis.exceptions.DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(redis.exceptions.DataError):
        ours.pack_command("SET", "k", bad)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6390/0", Connection),
        ("rediss://127.0.0.1:6390/0", SSLConnection),
        ("unix:///tmp/predq-redis.sock", UnixDomainSocketConnection),
    ],
)
def test_every_kind_of_connection_packs_in_c(url: str, kind: type) -> None:
    client = connect_redis(Config(redis_url=url))
    made = client.connection_pool.make_connection()
    assert isinstance(made, kind)
    assert type(made).pack_command is not Connection.pack_command
    again = packing_in_c(client).connection_pool.connection_class
    assert again is type(made)  # applied once


def test_a_client_with_another_encoding_keeps_redis_pys_packer() -> None:
    """hiredis writes strict UTF-8; a client set to encode otherwise is left as it is."""
    for client in (aioredis.Redis(encoding="latin-1"), aioredis.Redis(encoding_errors="replace")):
        made = packing_in_c(client).connection_pool.make_connection()
        assert type(made).pack_command is Connection.pack_command
    utf8 = packing_in_c(aioredis.Redis(encoding="UTF-8")).connection_pool.make_connection()
    assert type(utf8).pack_command is not Connection.pack_command
