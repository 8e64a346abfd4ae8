"""The sandbox streams like Replicate: the official client's `async_stream` and `stream` work
against it unchanged, polls show output growing, and a reader can resume with Last-Event-ID."""

from __future__ import annotations

import asyncio

import httpx
import replicate

from devkit.launch import SandboxProcess
from sandbox import SandboxConfig
from tests.sandbox.conftest import InProcess, MakeSandbox

PROMPT = {"prompt": "tell me about lighthouses", "max_tokens": 12}


async def test_async_stream_yields_every_token_in_order(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.3))
    stream = await sb.client.async_stream("sandbox/llm", input=PROMPT)
    events = [event async for event in stream]
    outputs = [e.data for e in events if e.event.value == "output"]
    prediction = (await sb.client.predictions.async_list()).results[0]
    assert outputs == prediction.output
    assert len(outputs) == 12
    assert events[-1].event.value == "done"
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids)


async def test_polled_output_grows_while_it_streams(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.6))
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/llm", input=PROMPT, stream=True
    )
    assert prediction.urls is not None
    assert prediction.urls["stream"].endswith(f"/v1/streams/{prediction.id}")
    seen: list[int] = []
    while prediction.status != "succeeded":
        await asyncio.sleep(0.05)
        await prediction.async_reload()
        seen.append(len(prediction.output or []))
    assert seen == sorted(seen)
    assert len({n for n in seen if 0 < n < 12}) > 0
    assert seen[-1] == 12


async def test_a_reader_resumes_after_last_event_id(sb: InProcess) -> None:
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/llm", input={"max_tokens": 5}, stream=True
    )
    url = prediction.urls["stream"]  # type: ignore[index]
    first = (await sb.http.get(url)).text
    resumed = (await sb.http.get(url, headers={"Last-Event-ID": "2"})).text
    assert first.count("event: output") == 5
    assert "id: 2\n" in first
    assert "id: 2\n" not in resumed
    assert resumed.count("event: output") == 3  # ids 0 and 6 are log lines
    assert resumed.rstrip().endswith("data: {}")


async def test_a_canceled_stream_ends_with_its_reason(sb: InProcess) -> None:
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/llm", input={"max_tokens": 5}, stream=True
    )
    await sb.client.predictions.async_cancel(prediction.id)
    body = (await sb.http.get(prediction.urls["stream"])).text  # type: ignore[index]
    assert body.rstrip().endswith('data: {"reason": "canceled"}')


def test_the_blocking_client_streams_over_http(tmp_path: object) -> None:
    from pathlib import Path

    server = SandboxProcess(["--latency", "0.2"], Path(str(tmp_path)) / "sandbox.log")
    try:
        transport = httpx.HTTPTransport()
        client = replicate.Client(api_token="t", base_url=server.url, transport=transport)
        tokens = [str(e) for e in client.stream("sandbox/llm", input=PROMPT)]
        assert len([t for t in tokens if t]) == 12
        transport.close()
    finally:
        server.stop()
