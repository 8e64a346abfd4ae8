"""Response builders: compact JSON bodies and Replicate-style `application/problem+json` errors.

Errors carry `{"title", "detail", "status"}` (plus `invalid_fields` on 422 and `retry_after` on
429), which the replicate client turns into `ReplicateError(status, title, detail)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from starlette.responses import Response

PROBLEM_JSON: Final = "application/problem+json"

_BAD_GATEWAY_HTML: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)

_SERVER_ERROR_TITLES: Final[Mapping[int, str]] = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def dumps(body: Any) -> bytes:
    """Encode JSON compactly (no spaces), as UTF-8."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response."""
    return Response(dumps(body), status, headers, "application/json")


def problem(
    status: int,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An RFC 7807 problem response; `extra` adds members such as `invalid_fields`."""
    body = {"title": title, "detail": detail, "status": status, **extra}
    return Response(dumps(body), status, headers, PROBLEM_JSON)


def unauthenticated() -> Response:
    """401 for a missing or wrong token (the token itself is never echoed)."""
    return problem(401, "Unauthenticated", "You did not pass a valid authentication token")


def not_found(detail: str = "Not found.") -> Response:
    """404 for an unknown resource."""
    return problem(404, "Not found", detail)


def invalid_input(fields: list[dict[str, str]]) -> Response:
    """422 "Input validation failed"; each field is `{"type", "field", "description"}`."""
    detail = "".join(f"- {f['field']}: {f['description']}\n" for f in fields)
    return problem(422, "Input validation failed", detail, invalid_fields=fields)


def invalid_version() -> Response:
    """422 for a version id no model has (Replicate's words)."""
    return problem(
        422,
        "Invalid version or not permitted",
        "The specified version does not exist (or perhaps you don't have permission to use it?)",
    )


def throttled(retry_after_s: int) -> Response:
    """429 with a `Retry-After` header (whole seconds) and the same value as `retry_after`."""
    return problem(
        429,
        "Too Many Requests",
        f"Request was throttled. Your rate limit resets in ~{retry_after_s}s.",
        headers={"Retry-After": str(retry_after_s)},
        retry_after=retry_after_s,
    )


def server_error(status: int) -> Response:
    """An injected 5xx with a JSON problem body."""
    title = _SERVER_ERROR_TITLES.get(status, "Server Error")
    return problem(status, title, "The sandbox injected a server error (a simulated fault).")


def bad_gateway_html() -> Response:
    """A 502 with an HTML body, as a proxy in front of the API answers (no JSON to parse)."""
    return Response(_BAD_GATEWAY_HTML, 502, media_type="text/html")
