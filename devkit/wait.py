"""``eventually``: wait on a condition with a deadline, never on a fixed sleep.

One helper for the tests, the bench, the soak and the demo. ``eventually`` is the async one (its
check may be a plain function or a coroutine function); ``eventually_blocking`` is the same loop
for code without an event loop (process launchers, sync tests). Both return the check's first
truthy value and raise ``NotYet`` (a TimeoutError, so pytest shows it as a failure with ``what``)
when the deadline passes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

DEFAULT_INTERVAL_S = 0.02
DEFAULT_TIMEOUT_S = 10.0


class NotYet(TimeoutError):
    """The condition did not hold before the deadline."""


class _Deadline:
    def __init__(self, timeout_s: float, what: str) -> None:
        self.timeout_s = timeout_s
        self.what = what
        self.started = time.monotonic()

    def check(self, last: Any) -> None:
        if time.monotonic() - self.started > self.timeout_s:
            shown = "" if last is None else f" (last seen: {str(last)[:500]})"
            raise NotYet(f"timed out after {self.timeout_s:g} s waiting for {self.what}{shown}")


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str = "a condition",
    interval_s: float = DEFAULT_INTERVAL_S,
    show: Callable[[], Any] | None = None,
) -> Any:
    """Call ``check`` (awaiting it if it returns an awaitable) until it returns something truthy;
    returns that value. ``show`` describes the state in the timeout message."""
    deadline = _Deadline(timeout_s, what)
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        deadline.check(show() if show is not None else value)
        await asyncio.sleep(interval_s)


def eventually_blocking(
    check: Callable[[], Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str = "a condition",
    interval_s: float = DEFAULT_INTERVAL_S,
) -> Any:
    """``eventually`` for callers without an event loop: blocks the thread between checks."""
    deadline = _Deadline(timeout_s, what)
    while True:
        value = check()
        if value:
            return value
        deadline.check(value)
        time.sleep(interval_s)
