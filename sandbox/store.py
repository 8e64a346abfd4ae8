"""Predictions and counters of one sandbox app, in memory.

`PredictionStore` keeps predictions by id and in creation order (for newest-first pages with
cursors and `created_after`/`created_before` filters), remembers every (model, input) pair to
count `duplicate_inputs`, and tracks creates in a sliding 60 s window for `max_creates_per_60s`.
Counts of terminal states are computed on read, from timestamps, so nothing runs per prediction.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import json
from typing import Any, Final

from sandbox.prediction import Prediction

PAGE_SIZE: Final = 100
WINDOW_S: Final = 60.0


@dataclasses.dataclass(slots=True)
class Counters:
    """Event counts since start or the last reset (see `GET /sandbox/stats`).

    Attributes:
        requests: `/v1/*` requests received (any outcome).
        polls: `GET /v1/predictions/{id}` requests received.
        created: predictions made (including lost creates).
        canceled: predictions moved to `canceled` by a cancel request.
        throttled: 429 answers (injected faults and rate limits).
        server_errors: injected 5xx answers (lost creates are counted in `lost_creates` only).
        slow: responses held `slow_s` by a slow fault.
        lost_creates: creates that made a prediction and then answered 502.
        duplicate_inputs: creates whose (model, input) equals an earlier create's.
        webhooks_sent: webhook messages delivered (2xx), retries not counted twice.
        webhooks_failed: webhook messages given up on after all retries.
        max_creates_per_60s: the most creates seen in any sliding 60 s window.
        file_downloads: output files served (`GET /sandbox/files/...`).
    """

    requests: int = 0
    polls: int = 0
    created: int = 0
    canceled: int = 0
    throttled: int = 0
    server_errors: int = 0
    slow: int = 0
    lost_creates: int = 0
    duplicate_inputs: int = 0
    webhooks_sent: int = 0
    webhooks_failed: int = 0
    max_creates_per_60s: int = 0
    file_downloads: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One newest-first page; the cursors are opaque strings for `?cursor=`, or None at an end."""

    results: list[Prediction]
    next_cursor: str | None
    previous_cursor: str | None


class PredictionStore:
    """All predictions of one app, with the counters that describe them."""

    counters: Counters
    _by_id: dict[str, Prediction]
    _order: list[Prediction]
    _created_s: list[float]
    _inputs_seen: set[str]
    _window: collections.deque[float]

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget all predictions and reset every counter."""
        self.counters = Counters()
        self._by_id = {}
        self._order = []
        self._created_s = []
        self._inputs_seen = set()
        self._window = collections.deque()

    def __len__(self) -> int:
        return len(self._order)

    @property
    def last_created_s(self) -> float:
        """The newest prediction's creation time, or 0.0 when empty (creation times never drop)."""
        return self._created_s[-1] if self._created_s else 0.0

    def add(self, prediction: Prediction) -> None:
        """Record a new prediction; its `seq` must equal `len(self)`, its time >= the last one."""
        if prediction.seq != len(self._order):
            raise ValueError(f"seq {prediction.seq} out of order (expected {len(self._order)})")
        self._by_id[prediction.id] = prediction
        self._order.append(prediction)
        self._created_s.append(prediction.created_s)
        counters = self.counters
        counters.created += 1
        key = f"{prediction.model}\x00{json.dumps(prediction.input, sort_keys=True)}"
        if key in self._inputs_seen:
            counters.duplicate_inputs += 1
        else:
            self._inputs_seen.add(key)
        window = self._window
        window.append(prediction.created_s)
        while window[0] <= prediction.created_s - WINDOW_S:
            window.popleft()
        counters.max_creates_per_60s = max(counters.max_creates_per_60s, len(window))

    def get(self, prediction_id: str) -> Prediction | None:
        """The prediction with this id, or None."""
        return self._by_id.get(prediction_id)

    def page(
        self,
        cursor: str | None = None,
        created_after_s: float | None = None,
        created_before_s: float | None = None,
    ) -> Page:
        """A newest-first page of `PAGE_SIZE` predictions created strictly inside the bounds.

        Raises:
            ValueError: `cursor` is not one this store produced.
        """
        upper = len(self._order)
        if created_before_s is not None:
            upper = bisect.bisect_left(self._created_s, created_before_s)
        lower = 0
        if created_after_s is not None:
            lower = min(bisect.bisect_right(self._created_s, created_after_s), upper)
        high = upper if cursor is None else min(max(_decode_cursor(cursor), lower), upper)
        start = max(lower, high - PAGE_SIZE)
        results = self._order[start:high]
        results.reverse()
        return Page(
            results=results,
            next_cursor=str(start) if start > lower else None,
            previous_cursor=str(min(high + PAGE_SIZE, upper)) if high < upper else None,
        )

    def outcome_counts(self, now_s: float) -> dict[str, int]:
        """At `now_s`: `succeeded`, `failed`, `in_flight` (not terminal), and the predictions
        their `Cancel-After` deadline stopped: `aborted` (before they started) and
        `deadline_canceled` (while they processed). User cancels count in `canceled`."""
        counts = dict.fromkeys(
            ("succeeded", "failed", "in_flight", "aborted", "deadline_canceled"), 0
        )
        for prediction in self._order:
            if not prediction.is_terminal(now_s):
                counts["in_flight"] += 1
                continue
            status = prediction.final_status
            if status in ("succeeded", "failed", "aborted"):
                counts[status] += 1
            elif prediction.canceled_s is None:
                counts["deadline_canceled"] += 1
        return counts

    def stats(self, now_s: float) -> dict[str, Any]:
        """All counters plus the derived counts, as `GET /sandbox/stats` returns them."""
        return {**dataclasses.asdict(self.counters), **self.outcome_counts(now_s)}

    def predictions(self) -> list[Prediction]:
        """All predictions, oldest first (a copy)."""
        return list(self._order)


def _decode_cursor(cursor: str) -> int:
    if not cursor.isdigit():
        raise ValueError(f"invalid cursor {cursor!r}")
    return int(cursor)
