"""Every error as ``application/problem+json`` (RFC 9457), with the meaning of the Python
exception it comes from, mapped here and nowhere else:

| exception                                  | status | title                    |
|--------------------------------------------|--------|--------------------------|
| InputTooLarge, a body over the limit       | 413    | Payload Too Large        |
| InvalidModelRef, InvalidInput, InvalidRequest, a malformed body | 422 | Unprocessable Content |
| JobNotFound, FileUnavailable, an unknown route | 404 | Not Found                |
| JobNotRetryable                            | 409    | Conflict                 |
| RedisUnavailable                           | 503    | Service Unavailable (Retry-After: 5) |
| no key / a read key that acts              | 401 / 403 |                       |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from producer.errors import (
    FileUnavailable,
    InputTooLarge,
    InvalidRequest,
    JobNotFound,
    JobNotRetryable,
    PredqError,
    RedisUnavailable,
)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 5
#: Python exceptions and their HTTP meaning, most specific first.
_STATUSES: tuple[tuple[type[PredqError], int, str], ...] = (
    (InputTooLarge, 413, "Payload Too Large"),
    (InvalidRequest, 422, "Unprocessable Content"),
    (JobNotFound, 404, "Not Found"),
    (FileUnavailable, 404, "Not Found"),
    (JobNotRetryable, 409, "Conflict"),
    (RedisUnavailable, 503, "Service Unavailable"),
)


class ProblemBody(BaseModel):
    """An RFC 9457 problem: what went wrong, for people (``title``, ``detail``) and programs
    (``status``, ``type``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    """Raised by routes: answered as a problem+json response."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.body = ProblemBody(title=title, status=status, detail=detail, errors=errors)
        self.headers = dict(headers or {})


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem.body.model_dump(exclude_none=True),
        status_code=problem.body.status,
        headers=problem.headers,
        media_type=PROBLEM_JSON,
    )


def from_error(exc: PredqError) -> Problem:
    """The problem a producer exception means."""
    for kind, status, title in _STATUSES:
        if isinstance(exc, kind):
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
            return Problem(status, title, str(exc), headers=headers)
    return Problem(500, "Internal Server Error", str(exc))


def _methods(app: FastAPI, scope: Any) -> set[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem."""

    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_predq(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PredqError)
        return problem_response(from_error(exc))

    async def on_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg"))}
            for error in exc.errors()
        ]
        where = ", ".join(".".join(e["loc"]) for e in errors[:5])
        detail = f"the request does not fit the API ({where})" if where else "invalid request"
        if any(error.get("type") == "json_invalid" for error in exc.errors()):
            detail = "the request body is not valid JSON"
        return problem_response(Problem(422, "Unprocessable Content", detail, errors=errors))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        title = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(
            exc.status_code, "Error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not one route's
            headers["Allow"] = ", ".join(sorted(_methods(request.app, request.scope)))
        return problem_response(Problem(exc.status_code, title, str(exc.detail), headers=headers))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(PredqError, on_predq)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
