"""Fixtures for the sandbox tests: in-process apps and one loopback server process.

In-process: `make_sandbox(config)` builds an app with its lifespan running and returns the
real `replicate.Client` and a raw `httpx.AsyncClient`, both over `httpx.ASGITransport`.
Loopback: `live_url` is a `python -m sandbox --port 0` subprocess shared by the session,
reset (predictions, counters, queue and settings) before each test that uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import replicate
from starlette.applications import Starlette

from sandbox import SandboxConfig, create_app
from sandbox.state import Sandbox

BASE_URL = "http://sandbox"
TOKEN = "test-token"
LIVE_LATENCY_S = 0.05
REPO_ROOT = Path(__file__).resolve().parents[2]


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


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout_s: float = 5.0,
    interval_s: float = 0.01,
) -> None:
    """Wait until `check()` is true, polling; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


@dataclasses.dataclass
class LiveServer:
    """A sandbox server process on loopback."""

    process: subprocess.Popen[bytes]
    url: str


def start_server(*args: str, timeout_s: float = 20.0) -> LiveServer:
    """Start `python -m sandbox --port 0 ARGS` and wait for its `listening` line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env={**os.environ, "SANDBOX_TOKEN": ""},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                stop_server(process)
                pytest.fail(f"sandbox did not print its listening line within {timeout_s} s")
            chunk = os.read(process.stdout.fileno(), 1)
            if not chunk:
                stop_server(process)
                pytest.fail(f"sandbox exited before listening: {line!r}")
            line += chunk
    prefix = "sandbox listening on "
    text = line.decode().strip()
    assert text.startswith(prefix), text
    return LiveServer(process=process, url=text.removeprefix(prefix))


def stop_server(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """SIGTERM the server and wait; returns its exit code (kills it if it hangs)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()
    return code


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    server = start_server("--latency", str(LIVE_LATENCY_S))
    yield server
    assert stop_server(server.process) == 0


@pytest.fixture
def live_url(live_server: LiveServer) -> str:
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
