"""Parsing and validating create requests: the JSON body, `version` refs and `Prefer: wait`."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Final

from sandbox.models import model_for_version
from sandbox.webhooks import ALL_EVENTS

MAX_WAIT_S: Final = 60
_WAIT_PREF: Final = re.compile(r"^wait(?:=(\d{1,2}))?$")
_MODEL_REF: Final = re.compile(r"^(?P<model>[^/\s:]+/[^/\s:]+)(?::(?P<version>\S+))?$")


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


def resolve_version(version: str) -> tuple[str, str]:
    """`(model, version_id)` for a `version` value: `owner/name:id`, `owner/name` or a bare id.

    A bare id of a listed model (see `sandbox.models.version_id`) runs that model; any other
    bare id runs `sandbox/versioned`. For `owner/name` the version id is "hidden".
    """
    match = _MODEL_REF.match(version.strip())
    if match is None:
        return model_for_version(version), version
    return match["model"], match["version"] or "hidden"


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
