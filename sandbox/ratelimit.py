"""A sliding-window request limit, like Replicate's per-minute limits (600 creates, 3000 others)."""

from __future__ import annotations

import collections
import math


class SlidingWindowLimiter:
    """Admits at most `limit` requests in any `window_s`-second window.

    Only admitted requests occupy the window, so a client that keeps retrying while throttled is
    not locked out forever. The limit is passed on each call so it can change at run time.
    """

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._admitted: collections.deque[float] = collections.deque()

    def admit(self, now_s: float, limit: int | None) -> int | None:
        """Admit one request at `now_s`: None if admitted, else the whole seconds (>= 1) until
        a slot frees up (the `Retry-After` value). `limit=None` admits without counting."""
        if limit is None:
            return None
        admitted = self._admitted
        while admitted and admitted[0] <= now_s - self.window_s:
            admitted.popleft()
        if len(admitted) < limit:
            admitted.append(now_s)
            return None
        # The oldest requests beyond `limit - 1` must leave before one more fits.
        frees_at_s = admitted[len(admitted) - limit] + self.window_s
        return max(1, math.ceil(frees_at_s - now_s))

    def clear(self) -> None:
        """Forget every admitted request."""
        self._admitted.clear()
