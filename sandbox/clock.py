"""Time for the sandbox: one clock type and the ISO-8601 format Replicate uses.

All sandbox times are wall-clock unix seconds (float) read from a `Clock`, so a prediction's
timestamps, its lazily derived status and the `created_after` filters agree with each other.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

#: Returns the current unix time in seconds.
Clock = Callable[[], float]

wall_clock: Clock = time.time


def iso8601(ts_s: float) -> str:
    """Format unix seconds as Replicate does: `2023-09-08T16:19:34.765994Z`."""
    stamp = dt.datetime.fromtimestamp(ts_s, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso8601(text: str) -> float:
    """Parse an ISO-8601 date or datetime into unix seconds; naive values are taken as UTC.

    Raises:
        ValueError: `text` is not ISO-8601.
    """
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        # An unescaped "+01:00" offset in a query string arrives as " 01:00".
        head, sep, tail = text.rpartition(" ")
        if not sep:
            raise
        stamp = dt.datetime.fromisoformat(f"{head}+{tail}")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()
