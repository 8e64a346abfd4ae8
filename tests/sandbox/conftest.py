"""Fixtures for the sandbox tests: in-process apps and one loopback server process.

In-process: `make_sandbox(config)` builds an app with its lifespan running and returns the
real `replicate.Client` and a raw `httpx.AsyncClient`, both over `httpx.ASGITransport`.
Loopback: `live_url` is a `python -m sandbox --port 0` subprocess (devkit's launcher) shared by
the session, reset (predictions, counters, queue and settings) before each test that uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import replicate
from starlette.applications import Starlette

from devkit.launch import SandboxProcess
from sandbox import SandboxConfig, create_app
from sandbox.state import Sandbox

BASE_URL = "http://sandbox"
TOKEN = "test-token"
LIVE_LATENCY_S = 0.05


@dataclasses.dataclass
class InProcess:
    """One in-process sandbox app and clients for it (all on the test's event loop)."""

    app: Starlette
    client: replicate.Client
    http: httpx.AsyncClient

    @property
    def state(self) -> Sandbox:
        sandbox: Sandbox = self.app.state.sandbox
        return sandbox

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/sandbox/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    async def faults(self, **settings: Any) -> dict[str, Any]:
        response = await self.http.post("/sandbox/faults", json=settings)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


class MakeSandbox(Protocol):
    def __call__(
        self,
        config: SandboxConfig | None = None,
        *,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        token: str | None = TOKEN,
    ) -> Awaitable[InProcess]: ...


@pytest.fixture
async def make_sandbox() -> AsyncIterator[MakeSandbox]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            config: SandboxConfig | None = None,
            *,
            webhook_transport: httpx.AsyncBaseTransport | None = None,
            token: str | None = TOKEN,
        ) -> InProcess:
            app = create_app(
                config or SandboxConfig(latency_s=0.05), webhook_transport=webhook_transport
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = replicate.Client(api_token=token, base_url=BASE_URL, transport=transport)
            client.poll_interval = 0.02
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            http = httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)
            await stack.enter_async_context(http)
            return InProcess(app=app, client=client, http=http)

        yield make


@pytest.fixture
async def sb(make_sandbox: MakeSandbox) -> InProcess:
    """A default in-process sandbox: echo latency 0.05 s, no token, no faults."""
    return await make_sandbox()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    log = tmp_path_factory.mktemp("sandbox") / "live.log"
    server = SandboxProcess(["--latency", str(LIVE_LATENCY_S)], log)
    yield server
    assert server.stop() == 0


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., SandboxProcess]]:
    """Starts `python -m sandbox --port 0 ARGS` processes, stopped when the test ends."""
    started: list[SandboxProcess] = []

    def start(*args: str) -> SandboxProcess:
        server = SandboxProcess(list(args), tmp_path / f"sandbox-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_url(live_server: SandboxProcess) -> str:
    """The loopback sandbox's base URL, reset to a clean state with default fault settings."""
    defaults = SandboxConfig(latency_s=LIVE_LATENCY_S).fault_settings()
    with httpx.Client(base_url=live_server.url) as http:
        http.post("/sandbox/reset").raise_for_status()
        http.post("/sandbox/faults", json=defaults).raise_for_status()
    return live_server.url


ClientFactory = Callable[..., replicate.Client]


@pytest.fixture
async def replicate_client() -> AsyncIterator[ClientFactory]:
    """Makes `replicate.Client(base_url=url, api_token=token)` for loopback servers, each on a
    transport this fixture closes (the client itself never closes its connections)."""
    transports: list[httpx.AsyncHTTPTransport] = []

    def make(url: str, token: str = "t") -> replicate.Client:
        transport = httpx.AsyncHTTPTransport()
        transports.append(transport)
        client = replicate.Client(api_token=token, base_url=url, transport=transport)
        client.poll_interval = 0.02
        return client

    yield make
    for transport in transports:
        await transport.aclose()
