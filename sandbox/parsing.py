"""Parsing and validating create requests: the JSON body, `version` refs and `Prefer: wait`."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Final

from sandbox.models import model_for_version, version_id
from sandbox.webhooks import ALL_EVENTS

MAX_WAIT_S: Final = 60
MIN_CANCEL_AFTER_S: Final = 5
_WAIT_PREF: Final = re.compile(r"^wait(?:=(\d{1,2}))?$")
_MODEL_REF: Final = re.compile(r"^(?P<model>[^/\s:]+/[^/\s:]+)(?::(?P<version>\S+))?$")
_DURATION: Final = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


class InvalidRequest(ValueError):
    """The request body is unusable; `fields` become the 422 answer's `invalid_fields`."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{f['field']}: {f['description']}" for f in fields))
        self.fields = fields


def _invalid(field: str, description: str, kind: str = "type") -> InvalidRequest:
    return InvalidRequest([{"type": kind, "field": field, "description": description}])


@dataclasses.dataclass(frozen=True, slots=True)
class CreateBody:
    """A validated create request body.

    Attributes:
        input: the model input (a JSON object).
        version: the raw `version` value (only for `POST /v1/predictions`), else None.
        webhook: the URL to POST the prediction to, or None.
        webhook_events: the events to send (default: all).
    """

    input: dict[str, Any]
    version: str | None
    webhook: str | None
    webhook_events: frozenset[str]


def parse_create_body(raw: bytes, *, needs_version: bool) -> CreateBody:
    """Validate a create body. `stream` and `webhook_completed` are accepted and ignored.

    Raises:
        InvalidRequest: not a JSON object, `input` not an object, a bad `version` (when
            `needs_version`), `webhook` or `webhook_events_filter`.
    """
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise _invalid("body", "the request body must be JSON") from None
    if not isinstance(body, dict):
        raise _invalid("body", "the request body must be a JSON object")
    inp = body.get("input")
    if not isinstance(inp, dict):
        kind = "required" if inp is None else "type"
        raise _invalid("input", "input must be a JSON object", kind)
    version = body.get("version")
    if needs_version and (not isinstance(version, str) or not version.strip()):
        raise _invalid("version", "version is required: an id, owner/name or owner/name:id")
    return CreateBody(
        input=inp,
        version=version if needs_version else None,
        webhook=_webhook(body.get("webhook")),
        webhook_events=_events(body.get("webhook_events_filter")),
    )


def _webhook(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _invalid("webhook", "webhook must be an http(s) URL")
    return value


def _events(value: object) -> frozenset[str]:
    if value is None:
        return ALL_EVENTS
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid("webhook_events_filter", "webhook_events_filter must be a list of events")
    unknown = set(value) - ALL_EVENTS
    if unknown:
        raise _invalid(
            "webhook_events_filter",
            f"unknown events {sorted(unknown)}; allowed: {sorted(ALL_EVENTS)}",
        )
    return frozenset(value)


class InvalidVersion(ValueError):
    """A version id that no model has (422 "Invalid version or not permitted")."""


def resolve_version(version: str) -> tuple[str, str]:
    """`(model, version_id)` for a `version` value: `owner/name:id`, `owner/name` or a bare id.

    Each model has one version (`sandbox.models.version_id`); `owner/name` means it.

    Raises:
        InvalidVersion: the id is not the model's (or, bare, not any listed model's).
    """
    match = _MODEL_REF.match(version.strip())
    if match is None:
        model = model_for_version(version)
        if model is None:
            raise InvalidVersion(version)
        return model, version
    model = match["model"]
    if match["version"] is not None and match["version"] != version_id(model):
        raise InvalidVersion(match["version"])
    return model, version_id(model)


def parse_cancel_after(header: str | None) -> float | None:
    """Seconds from a `Cancel-After` header (`90`, `30s`, `5m`, `1h30m`), else None.

    Raises:
        InvalidRequest: not a duration, or under `MIN_CANCEL_AFTER_S`.
    """
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _DURATION.match(text)
        if not text or match is None:
            raise _invalid("Cancel-After", f"not a duration like 30s, 5m or 1h30m: {text!r}")
        seconds = 3600 * int(match["h"] or 0) + 60 * int(match["m"] or 0) + int(match["s"] or 0)
    if seconds < MIN_CANCEL_AFTER_S:
        raise _invalid("Cancel-After", f"must be at least {MIN_CANCEL_AFTER_S}s, got {text!r}")
    return float(seconds)


def parse_prefer_wait(header: str | None) -> int | None:
    """The seconds a `Prefer: wait` / `Prefer: wait=N` (N in 1..60) asks to hold, else None.

    Other preferences in the header are ignored, as RFC 7240 allows.

    Raises:
        InvalidRequest: a `wait=` value outside 1..60 or not a number.
    """
    if not header:
        return None
    for preference in header.split(","):
        token = preference.strip().replace(" ", "")
        if not token.startswith("wait"):
            continue
        match = _WAIT_PREF.match(token)
        seconds = MAX_WAIT_S if match and match[1] is None else int(match[1]) if match else 0
        if not 1 <= seconds <= MAX_WAIT_S:
            raise _invalid("Prefer", f"Prefer: wait=N needs N in 1..{MAX_WAIT_S}, got {token!r}")
        return seconds
    return None
