"""The sandbox's settings: one frozen object, validated on construction.

`SandboxConfig` is built once (from CLI flags, or directly in tests) and handed to `create_app`.
The fault and latency fields can be changed while the server runs through `POST /sandbox/faults`;
that builds a new `SandboxConfig` with `dataclasses.replace`, so the same validation applies.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final, TypeGuard

#: The request kinds faults can apply to: the Replicate endpoints, and `file` (downloads of output
#: files). Other endpoints (models, versions, the account, `/sandbox/*`) are never faulted.
FAULT_KINDS: Final[frozenset[str]] = frozenset({"create", "get", "cancel", "list", "file"})

DEFAULT_FAULT_ON: Final[frozenset[str]] = frozenset({"create", "get", "cancel"})

_RATE_FIELDS: Final = ("throttle_rate", "error_rate", "slow_rate", "lost_create_rate")


class ConfigError(ValueError):
    """A sandbox setting is out of range or of the wrong type; the message names the field."""


@dataclasses.dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Settings for one sandbox app.

    Attributes:
        host, port: where `serve` listens; port 0 picks a free port.
        latency_s: how long `sandbox/echo`, `sandbox/fail`, `sandbox/image` and unknown models run,
            from creation to terminal state.
        token: if set, `/v1/*` requests need `Authorization: Bearer <token>` (else 401). Never logged,
            echoed, or shown in `repr`.
        throttle_rate, error_rate, lost_create_rate: probabilities (0..1, summing to at most 1)
            that a faultable request is answered 429, a 5xx, or (creates only) made and then answered
            502 after `lost_delay_s`.
        slow_rate: independent probability that a faultable response is held `slow_s` seconds.
        retry_after_s: the `Retry-After` header (and body `retry_after`) on injected 429s.
        fault_on: which request kinds random and queued faults apply to.
        seed: seeds the fault random generator (prediction ids stay random).
        create_limit_per_min, other_limit_per_min: sliding-60 s request limits (429 past them).
        wait_returns_processing: a `Prefer: wait` that times out answers `processing` instead of
            `starting` (reproduces replicate-python#385: the client then returns partial output).
        output_ttl_s: how long a finished prediction keeps its output, logs and files (Replicate:
            an hour); then `output` is null, `data_removed` true and file URLs answer 404.
        boot_s: how long a prediction stays `starting` (None: a tenth of its run, at most 0.1 s);
            a long boot makes a `Cancel-After` deadline end it `aborted`.
        log_level: uvicorn's log level (`serve` only).
    """

    host: str = "127.0.0.1"
    port: int = 8787
    latency_s: float = 1.0
    token: str | None = dataclasses.field(default=None, repr=False)
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 10.0
    lost_create_rate: float = 0.0
    lost_delay_s: float = 0.0
    retry_after_s: int = 1
    fault_on: frozenset[str] = DEFAULT_FAULT_ON
    seed: int | None = None
    create_limit_per_min: int | None = None
    other_limit_per_min: int | None = None
    wait_returns_processing: bool = False
    output_ttl_s: float = 3600.0
    boot_s: float | None = None
    log_level: str = "warning"

    def __post_init__(self) -> None:
        _check_port(self.port)
        for name in _RATE_FIELDS:
            _check_rate(name, getattr(self, name))
        exclusive = self.throttle_rate + self.error_rate + self.lost_create_rate
        if exclusive > 1.0 + 1e-9:
            raise ConfigError(
                f"throttle_rate + error_rate + lost_create_rate must be at most 1, got {exclusive:g}"
            )
        for name in ("latency_s", "slow_s", "lost_delay_s", "output_ttl_s"):
            _check_seconds(name, getattr(self, name))
        if self.boot_s is not None:
            _check_seconds("boot_s", self.boot_s)
        if isinstance(self.retry_after_s, bool) or not isinstance(self.retry_after_s, int):
            raise ConfigError(f"retry_after_s must be an integer, got {self.retry_after_s!r}")
        if self.retry_after_s < 0:
            raise ConfigError(f"retry_after_s must be >= 0, got {self.retry_after_s}")
        unknown = set(self.fault_on) - FAULT_KINDS
        if unknown:
            raise ConfigError(
                f"fault_on has unknown kinds {sorted(unknown)}; allowed: {sorted(FAULT_KINDS)}"
            )
        for name in ("create_limit_per_min", "other_limit_per_min"):
            _check_limit(name, getattr(self, name))
        if self.token == "":
            raise ConfigError("token must be non-empty when set")

    def fault_settings(self) -> dict[str, object]:
        """The live-tunable settings as JSON-ready values (what `POST /sandbox/faults` returns)."""
        return {
            "latency_s": self.latency_s,
            "throttle_rate": self.throttle_rate,
            "error_rate": self.error_rate,
            "slow_rate": self.slow_rate,
            "slow_s": self.slow_s,
            "lost_create_rate": self.lost_create_rate,
            "lost_delay_s": self.lost_delay_s,
            "retry_after_s": self.retry_after_s,
            "fault_on": sorted(self.fault_on),
            "create_limit_per_min": self.create_limit_per_min,
            "other_limit_per_min": self.other_limit_per_min,
            "wait_returns_processing": self.wait_returns_processing,
            "output_ttl_s": self.output_ttl_s,
            "boot_s": self.boot_s,
        }


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_rate(name: str, value: object) -> None:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a probability between 0 and 1, got {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def _check_port(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"port must be an integer 0..65535, got {value!r}")


def _check_limit(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer or null, got {value!r}")


#: The keys `POST /sandbox/faults` may change (the same names as the fields).
TUNABLE_FIELDS: Final[frozenset[str]] = frozenset(SandboxConfig().fault_settings())
