"""The one source of "now" for records and indexes, so tests can move time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch: the score of every predq sorted set."""
    return int(moment.timestamp() * 1000)
