"""The sandbox as users run it: `python -m sandbox` on loopback, with the real client over HTTP."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import uvicorn
from replicate.exceptions import ReplicateError
from replicate.webhook import Webhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devkit.launch import SandboxProcess
from devkit.wait import eventually
from sandbox.cli import main
from tests.sandbox.conftest import ClientFactory

StartServer = Callable[..., SandboxProcess]


def test_listening_line_has_the_real_port(live_server: SandboxProcess) -> None:
    host, port = live_server.url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    assert int(port) > 0


async def test_run_models_over_http(live_url: str, replicate_client: ClientFactory) -> None:
    client = replicate_client(live_url)
    assert await client.async_run("sandbox/echo", input={"over": "http"}) == {"over": "http"}
    assert await client.async_run("sandbox/echo", input={"w": 0}, wait=False) == {"w": 0}
    urls = await client.async_run("sandbox/image", input={"num_outputs": 2}, wait=False)
    assert isinstance(urls, list)
    assert all(url.startswith(f"{live_url}/sandbox/files/") for url in urls)
    async with httpx.AsyncClient() as http:
        png = await http.get(urls[1])
        assert png.content.startswith(b"\x89PNG")
        stats = (await http.get(f"{live_url}/sandbox/stats")).json()
    assert (stats["created"], stats["succeeded"]) == (3, 3)


async def test_faults_over_http(live_url: str, replicate_client: ClientFactory) -> None:
    client = replicate_client(live_url)
    async with httpx.AsyncClient(base_url=live_url) as http:
        queue = [{"on": "create", "fault": "lost"}, {"on": "create", "fault": "throttle"}]
        (await http.post("/sandbox/faults", json={"queue": queue})).raise_for_status()
        with pytest.raises(ReplicateError) as lost:
            await client.async_run("sandbox/echo", input={"n": 1})
        assert lost.value.status == 502
        with pytest.raises(ReplicateError) as throttled:
            await client.async_run("sandbox/echo", input={"n": 1})
        assert throttled.value.status == 429
        assert await client.async_run("sandbox/echo", input={"n": 1}) == {"n": 1}
        stats = (await http.get("/sandbox/stats")).json()
    assert (stats["created"], stats["lost_creates"], stats["throttled"]) == (2, 1, 1)
    assert stats["duplicate_inputs"] == 1


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], str]]]]:
    received: list[tuple[dict[str, str], str]] = []

    async def hook(request: Request) -> Response:
        received.append((dict(request.headers), (await request.body()).decode()))
        return Response(status_code=200)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook", received
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_webhook_over_loopback(
    live_url: str,
    receiver_url: tuple[str, list[tuple[dict[str, str], str]]],
    replicate_client: ClientFactory,
) -> None:
    url, received = receiver_url
    client = replicate_client(live_url)
    prediction = await client.models.predictions.async_create(
        model="sandbox/echo", input={"hook": True}, webhook=url
    )
    await eventually(lambda: len(received) == 2)
    secret = await client.webhooks.default.async_secret()
    for headers, body in received:
        Webhooks.validate(headers=headers, body=body, secret=secret, tolerance=60)
        assert prediction.id in body


async def test_token_and_sigint(replicate_client: ClientFactory, start_server: StartServer) -> None:
    server = start_server("--token", "s3cret", "--latency", "0")
    try:
        assert await replicate_client(server.url, "s3cret").async_run("a/b", input={"x": 1}) == {
            "x": 1
        }
        with pytest.raises(ReplicateError) as caught:
            await replicate_client(server.url, "wrong").async_run("a/b", input={})
        assert caught.value.status == 401
    finally:
        server.process.send_signal(signal.SIGINT)
        code = server.stop()
    assert code == 0


def test_cli_rejects_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--throttle-rate", "2"]) == 2
    assert "throttle_rate" in capsys.readouterr().err


async def test_sigterm_answers_held_requests_and_exits_cleanly(start_server: StartServer) -> None:
    server = start_server("--latency", "100")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            held = asyncio.create_task(
                http.post(
                    "/v1/models/sandbox/echo/predictions",
                    json={"input": {}},
                    headers={"Prefer": "wait=60"},
                )
            )

            async def created() -> bool:
                return (await http.get("/sandbox/stats")).json()["created"] == 1

            await eventually(created)
            server.process.send_signal(signal.SIGTERM)
            response = await asyncio.wait_for(held, 5)
        assert response.status_code == 201
        assert response.json()["status"] == "starting"
    finally:
        code = server.stop()
    assert code == 0
