"""`create_app`: the sandbox as an ASGI (Starlette) application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sandbox import api, control, responses, streaming
from sandbox.clock import Clock, wall_clock
from sandbox.config import SandboxConfig
from sandbox.state import Sandbox

MAX_BODY_BYTES = 16 * 1024 * 1024


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    title = "Method Not Allowed" if status == 405 else "Not found"
    return responses.problem(status, title, f"{request.method} {request.url.path}")


def create_app(
    config: SandboxConfig,
    *,
    clock: Clock = wall_clock,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """A new, independent sandbox app; its state is `app.state.sandbox` (a `Sandbox`).

    Args:
        config: the settings (see `SandboxConfig`).
        clock: the time source, unix seconds (tests may pass a fake).
        webhook_transport: where webhook POSTs go instead of the network (e.g. an
            `httpx.ASGITransport` to an in-process receiver).

    The app's lifespan shutdown answers held requests, stops pending webhook deliveries and
    closes their HTTP client.
    """
    sandbox = Sandbox(config, clock=clock, webhook_transport=webhook_transport)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            sandbox.release_holds()
            await sandbox.webhooks.aclose()

    app = Starlette(
        routes=[*api.ROUTES, *streaming.ROUTES, *control.ROUTES],
        exception_handlers={404: _http_error, 405: _http_error},
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.sandbox = sandbox
    return app
