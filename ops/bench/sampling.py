"""What a process used, from /proc (``cpu_seconds``, ``rss_mb``), and peaks sampled in the
background (``PeakSampler``, ``rss_sampler``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Self


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler:
    """Calls ``read`` every ``interval_s`` in the background and keeps the largest value.

    ``read`` raising OSError (the process is gone) ends the sampling; anything else propagates
    out of the ``async with`` block's exit.
    """

    def __init__(self, read: Callable[[], Awaitable[float]], interval_s: float) -> None:
        self.read = read
        self.interval_s = interval_s
        self.peak = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            try:
                value = await self.read()
            except OSError:
                return
            self.peak = max(self.peak, value)
            self.samples += 1
            await asyncio.sleep(self.interval_s)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is None:
            return
        self._task.cancel()
        [outcome] = await asyncio.gather(self._task, return_exceptions=True)
        if isinstance(outcome, Exception) and exc is None:
            raise outcome


def rss_sampler(pid: int, interval_s: float = 0.05) -> PeakSampler:
    """The peak VmRSS (MB) of process ``pid``, sampled every ``interval_s``."""

    async def read() -> float:
        return rss_mb(pid)

    return PeakSampler(read, interval_s)
