"""Fault injection: decide, per faultable request, whether to misbehave and how.

Faults apply to four request kinds: `create`, `get` (of one prediction), `cancel` and `list`.

- throttle: answer 429 with `Retry-After: retry_after_s`.
- error: answer a 5xx without doing anything: a JSON problem with 500, 502 or 503, or an HTML 502.
- lost (creates only): make the prediction, wait `lost_delay_s`, answer 502 with an HTML body.
- slow: hold the (otherwise normal, or faulted) response `slow_s` seconds.

Random faults use the app's own `random.Random(seed)` and the rates in `SandboxConfig`; one draw
picks at most one of throttle/error/lost (their rates add up to at most 1), and a second,
independent draw picks slow. Random faults only hit kinds in `config.fault_on`.

Queued faults (`POST /sandbox/faults {"queue": [...]}`) are one-shot and deterministic: each
faultable request takes the first queued item for its kind, whatever `fault_on` says.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import random
from collections.abc import Mapping
from typing import Any, Final

from sandbox.config import FAULT_KINDS, ConfigError, SandboxConfig


class Fault(enum.StrEnum):
    """What a faulted request does instead of (or on top of) its normal answer."""

    THROTTLE = "throttle"
    ERROR = "error"
    SLOW = "slow"
    LOST = "lost"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The faults for one request.

    Attributes:
        fault: THROTTLE, ERROR or LOST, or None to answer normally.
        slow: hold the response `slow_s` seconds first.
        error_status: the status of an ERROR (500..599).
        error_html: answer an ERROR with the HTML 502 body instead of JSON.
    """

    fault: Fault | None = None
    slow: bool = False
    error_status: int = 500
    error_html: bool = False


NO_FAULT: Final = Decision()

#: Random ERROR variants, equally likely: (status, HTML body?).
_ERROR_VARIANTS: Final = ((500, False), (502, False), (503, False), (502, True))


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedFault:
    """A one-shot fault for the next request of kind `on`; `status` picks an ERROR's code."""

    on: str
    fault: Fault
    status: int | None = None

    @classmethod
    def parse(cls, item: object) -> QueuedFault:
        """Build from `{"on": kind, "fault": name, "status"?: 5xx}`.

        Raises:
            ConfigError: a missing or unknown kind or fault, or a status on a non-error fault.
        """
        if not isinstance(item, Mapping):
            raise ConfigError(f"queue items must be objects, got {item!r}")
        unknown = set(item) - {"on", "fault", "status"}
        if unknown:
            raise ConfigError(f"queue item has unknown keys {sorted(unknown)}")
        on, name, status = item.get("on"), item.get("fault"), item.get("status")
        if on not in FAULT_KINDS:
            raise ConfigError(f"queue item 'on' must be one of {sorted(FAULT_KINDS)}, got {on!r}")
        allowed = [f.value for f in Fault]
        if name not in allowed:
            raise ConfigError(f"queue item 'fault' must be one of {allowed}, got {name!r}")
        fault = Fault(str(name))
        if fault is Fault.LOST and on != "create":
            raise ConfigError("the 'lost' fault applies to creates only")
        if status is not None and (
            fault is not Fault.ERROR
            or isinstance(status, bool)
            or not isinstance(status, int)
            or not 500 <= status <= 599
        ):
            raise ConfigError(f"'status' must be a 5xx code on an 'error' fault, got {status!r}")
        return cls(on=on, fault=fault, status=status)

    def to_json(self) -> dict[str, Any]:
        """The item as `POST /sandbox/faults` accepts and reports it."""
        body: dict[str, Any] = {"on": self.on, "fault": self.fault.value}
        if self.status is not None:
            body["status"] = self.status
        return body


class FaultInjector:
    """Owns the fault random generator and the one-shot queue of one app."""

    def __init__(self, seed: int | None) -> None:
        self.rng = random.Random(seed)
        self._queue: collections.deque[QueuedFault] = collections.deque()

    def enqueue(self, items: list[QueuedFault]) -> None:
        """Append one-shot faults, consumed in order."""
        self._queue.extend(items)

    def pending(self) -> list[dict[str, Any]]:
        """The queued faults not consumed yet, in order."""
        return [item.to_json() for item in self._queue]

    def clear(self) -> None:
        """Drop every queued fault (the random generator keeps its state)."""
        self._queue.clear()

    def decide(self, kind: str, config: SandboxConfig) -> Decision:
        """The faults for one request of `kind`: a queued one if any, else a random draw."""
        if self._queue:
            queued = self._take(kind)
            if queued is not None:
                return self._from_queue(queued)
        if kind not in config.fault_on:
            return NO_FAULT
        return self._draw(kind, config)

    def _take(self, kind: str) -> QueuedFault | None:
        for index, item in enumerate(self._queue):
            if item.on == kind:
                del self._queue[index]
                return item
        return None

    def _from_queue(self, item: QueuedFault) -> Decision:
        if item.fault is Fault.SLOW:
            return Decision(slow=True)
        if item.fault is Fault.ERROR:
            if item.status is not None:
                return Decision(fault=Fault.ERROR, error_status=item.status)
            return self._random_error()
        return Decision(fault=item.fault)

    def _random_error(self) -> Decision:
        status, html = self.rng.choice(_ERROR_VARIANTS)
        return Decision(fault=Fault.ERROR, error_status=status, error_html=html)

    def _draw(self, kind: str, config: SandboxConfig) -> Decision:
        fault: Fault | None = None
        lost_rate = config.lost_create_rate if kind == "create" else 0.0
        if config.throttle_rate or config.error_rate or lost_rate:
            draw = self.rng.random()
            if draw < config.throttle_rate:
                fault = Fault.THROTTLE
            elif draw < config.throttle_rate + config.error_rate:
                return dataclasses.replace(self._random_error(), slow=self._slow(config))
            elif draw < config.throttle_rate + config.error_rate + lost_rate:
                fault = Fault.LOST
        slow = self._slow(config)
        if fault is None and not slow:
            return NO_FAULT
        return Decision(fault=fault, slow=slow)

    def _slow(self, config: SandboxConfig) -> bool:
        return config.slow_rate > 0 and self.rng.random() < config.slow_rate
