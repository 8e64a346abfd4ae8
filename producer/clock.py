"""The one source of "now" for records, indexes, leases and budgets, so tests can move time
instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch: the score of every predq sorted set."""
    return int(moment.timestamp() * 1000)


def now_ms() -> int:
    """The current time in milliseconds since the epoch."""
    return to_ms(now())


def from_ms(ms: int) -> datetime:
    """The moment ``ms`` milliseconds after the epoch, UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC)
