"""``create_app``: predq's HTTP API as a FastAPI app (``predq serve`` runs it with uvicorn)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import metadata

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import dashboard, events, metrics, problems, routes
from api.config import ApiConfig
from api.problems import Problem, problem_response
from api.schemas import Health
from producer.client import Producer
from producer.errors import PredqError

DESCRIPTION = """A durable queue of Replicate predictions. Authenticate with
`Authorization: Bearer <API key>`; read-only keys may read, full-access keys may also act.
Errors are `application/problem+json`."""


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before they are read whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise Problem(413, "Payload Too Large", self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"request bodies are limited to {self.limit:,} bytes (PREDQ_API_MAX_BODY_BYTES)"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(Problem(413, "Payload Too Large", self._detail()))
        await response(scope, receive, send)


def create_app(config: ApiConfig, producer: Producer | None = None) -> FastAPI:
    """The API for ``config`` (``producer``: one to use instead of a new one, e.g. in tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = producer is None
        app.state.producer = producer or Producer(config=config)
        app.state.producer.connect()
        try:
            yield
        finally:
            if owned:
                await app.state.producer.aclose()

    app = FastAPI(
        title="predq",
        version=metadata.version("predq"),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.config = config
    problems.install(app)
    app.include_router(routes.router)
    app.include_router(events.router)
    app.include_router(metrics.router)
    dashboard.install(app)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The process answers (no dependency checked)."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"],
             responses={503: {"model": Health}})  # fmt: skip
    async def readyz(request: Request) -> JSONResponse:
        """Ready to serve: Redis answers."""
        try:
            await request.app.state.producer.counts()
        except PredqError as exc:
            body = Health(status="unavailable", redis=str(exc)).model_dump()
            return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
        return JSONResponse(Health(status="ok", redis="ok").model_dump())

    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    return app
