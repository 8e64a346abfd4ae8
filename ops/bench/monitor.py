"""Redis commands counted one by one: ``Monitored`` (a MONITOR connection, split into phases) and
``calls`` (``INFO commandstats``, minus the bench's own).

MONITOR shows every command Redis runs, in the order it runs them, with the client that sent it
(``lua`` for a command run inside a script). ``Monitored`` leaves out the commands of its own
connection, ``own``: the bench polls and marks phases on it (an ``ECHO`` that MONITOR shows in
order with everyone else's commands, so a phase boundary is exact). MONITOR makes Redis slower
(it formats every command for the monitoring client): count with it, time without it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from types import TracebackType
from typing import Any, Self

import redis.asyncio as aioredis

_MARK = "predq-bench:phase:"
_END = "end"
#: How long the monitor may take to read what Redis already sent it, once a block ends.
DRAIN_TIMEOUT_S = 30.0


@dataclass
class Tally:
    """The commands of one phase by name: sent by clients, and run inside Lua scripts. A client's
    EVALSHA is named after its script (``evalsha create.lua``), or its first key's prefix."""

    client: Counter[str] = field(default_factory=Counter)
    lua: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.client.total() + self.lua.total()


def top(counts: Counter[str], per: float, n: int = 8) -> str:
    """``evalsha create.lua 1.00, zadd 0.50, ...``: the ``n`` commonest, each divided by ``per``
    (empty if there are none)."""
    common = [(name, count / per) for name, count in counts.most_common(n) if count > 0]
    return ", ".join(f"{name} {v:.2f}" if v >= 0.005 else f"{name} <0.01" for name, v in common)


def _script_names() -> dict[str, str]:
    """SHA1 -> file name of predq's Lua scripts (redis-py's EVALSHA sends the script's SHA1)."""
    names = {}
    for path in resources.files("producer").joinpath("lua").iterdir():
        if path.name.endswith(".lua"):
            names[hashlib.sha1(path.read_bytes()).hexdigest()] = path.name
    return names


class Monitored:
    """A MONITOR connection counting commands into phases, and ``own``, the bench's connection.

    async with Monitored(url) as monitored:
        await monitored.phase("run")
        ...                        # every command but ``own``'s counts in phases["run"]
    monitored.phases["run"].total

    Commands before the first ``phase`` are not counted; on leaving the block, the count stops at
    an end mark (the block waits until the monitor has read up to it).
    """

    def __init__(self, url: str) -> None:
        # One connection for everything ``own`` sends, pipelines included (a pipeline of a
        # ``single_connection_client`` would take a connection of its own from the pool).
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=1)
        self.own: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._watching: aioredis.Redis = aioredis.Redis.from_url(url)
        self.phases: dict[str, Tally] = {}
        self._scripts = _script_names()
        self._own_addr = ""
        self._monitor: Any = None
        self._task: asyncio.Task[None] | None = None

    async def phase(self, name: str) -> None:
        """Count every command Redis runs from now on (after ``own``'s previous ones) in ``name``."""
        await self.own.echo(_MARK + name)

    async def __aenter__(self) -> Self:
        self._own_addr = (await self.own.client_info())["addr"]
        self._monitor = self._watching.monitor()
        await self._monitor.__aenter__()
        self._task = asyncio.create_task(self._count())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._task is not None and exc is None:
                if (await self.own.client_info())["addr"] != self._own_addr:
                    raise RuntimeError("the bench's own connection reconnected: counts unsure")
                await self.phase(_END)
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await asyncio.shield(self._task)
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            if self._monitor is not None:
                await self._monitor.__aexit__(None, None, None)
            await self._watching.aclose()
            await self.own.aclose()

    async def _count(self) -> None:
        tally: Tally | None = None
        async for seen in self._monitor.listen():
            words = seen["command"].split(" ")
            name = words[0].lower()
            if seen["client_type"] == "lua":
                if tally is not None:
                    tally.lua[name] += 1
                continue
            if f"{seen['client_address']}:{seen['client_port']}" == self._own_addr:
                if name == "echo" and len(words) > 1 and words[1].startswith(_MARK):
                    phase = words[1].removeprefix(_MARK)
                    if phase == _END:
                        return
                    tally = self.phases.setdefault(phase, Tally())
                continue
            if tally is not None:
                tally.client[self._name(name, words)] += 1

    def _name(self, name: str, words: list[str]) -> str:
        if name != "evalsha" or len(words) < 2:
            return name
        script = self._scripts.get(words[1].lower())
        if script is not None:
            return f"evalsha {script}"
        first_key = words[3] if len(words) > 3 and words[2] != "0" else ""
        return f"evalsha ({first_key.rsplit(':', 1)[0]}:...)"


def calls(stats: dict[str, Any], own: dict[str, int]) -> dict[str, int]:
    """``calls`` per command from ``INFO commandstats`` (commands inside scripts count one each),
    minus the bench's own ``own``."""
    counts = {}
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        count = int(value["calls"]) - own.get(name, 0)
        if count > 0:
            counts[name] = count
    return counts
