"""Webhook delivery, checked with the replicate client's own `Webhooks.validate`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from typing import Any

import httpx
import pytest
from replicate.webhook import InvalidSignatureError, Webhooks, WebhookSigningSecret
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devkit.wait import eventually
from sandbox import SandboxConfig
from sandbox.webhooks import MAX_SENDING, sign
from tests.sandbox.conftest import InProcess, MakeSandbox

HOOK_URL = "http://receiver/hook"


@dataclasses.dataclass
class Message:
    headers: dict[str, str]
    body: str

    @property
    def prediction(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclasses.dataclass
class Receiver:
    """An in-process webhook endpoint that fails its first `fail_first` deliveries with 500."""

    fail_first: int = 0
    messages: list[Message] = dataclasses.field(default_factory=list)

    async def hook(self, request: Request) -> Response:
        self.messages.append(Message(dict(request.headers), (await request.body()).decode()))
        if len(self.messages) <= self.fail_first:
            return Response("nope", 500)
        return Response(status_code=204)

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(
            app=Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        )


async def _secret(sb: InProcess) -> WebhookSigningSecret:
    return await sb.client.webhooks.default.async_secret()


def _validate(message: Message, secret: WebhookSigningSecret) -> None:
    Webhooks.validate(headers=message.headers, body=message.body, secret=secret, tolerance=300)


async def _receiving(make_sandbox: MakeSandbox, receiver: Receiver) -> InProcess:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05), webhook_transport=receiver.transport())
    sb.state.webhooks.retry_delays_s = (0.01, 0.01, 0.01)
    return sb


async def test_start_and_completed_are_signed_for_validate(make_sandbox: MakeSandbox) -> None:
    receiver = Receiver()
    sb = await _receiving(make_sandbox, receiver)
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/echo", input={"hello": "hook"}, webhook=HOOK_URL
    )
    await eventually(lambda: len(receiver.messages) == 2)
    secret = await _secret(sb)
    assert secret.key.startswith("whsec_")
    assert secret.key == (await _secret(sb)).key
    for message in receiver.messages:
        _validate(message, secret)
        assert message.prediction["id"] == prediction.id
        assert message.headers["content-type"] == "application/json"
    start, completed = (m.prediction for m in receiver.messages)
    assert start["status"] == "starting"
    assert (completed["status"], completed["output"]) == ("succeeded", {"hello": "hook"})
    ids = {m.headers["webhook-id"] for m in receiver.messages}
    assert len(ids) == 2
    await eventually(lambda: sb.state.store.counters.webhooks_sent == 2)


async def test_tampered_message_fails_validation(make_sandbox: MakeSandbox) -> None:
    receiver = Receiver()
    sb = await _receiving(make_sandbox, receiver)
    await sb.client.models.predictions.async_create(
        model="sandbox/echo", input={}, webhook=HOOK_URL, webhook_events_filter=["start"]
    )
    await eventually(lambda: len(receiver.messages) == 1)
    message = receiver.messages[0]
    tampered = Message(message.headers, message.body.replace("starting", "succeeded"))
    with pytest.raises(InvalidSignatureError):
        _validate(tampered, await _secret(sb))


async def test_events_filter_completed_only(make_sandbox: MakeSandbox) -> None:
    receiver = Receiver()
    sb = await _receiving(make_sandbox, receiver)
    await sb.client.models.predictions.async_create(
        model="sandbox/fail",
        input={"message": "bad"},
        webhook=HOOK_URL,
        webhook_events_filter=["completed"],
    )
    await eventually(lambda: len(receiver.messages) == 1)
    message = receiver.messages[0].prediction
    assert (message["status"], message["error"]) == ("failed", "bad")
    await eventually(lambda: sb.state.store.counters.webhooks_sent == 1)
    assert len(receiver.messages) == 1


async def test_cancel_sends_completed_at_once(make_sandbox: MakeSandbox) -> None:
    receiver = Receiver()
    sb = await _receiving(make_sandbox, receiver)
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/sleep",
        input={"seconds": 60},
        webhook=HOOK_URL,
        webhook_events_filter=["completed"],
    )
    await sb.client.predictions.async_cancel(prediction.id)
    await eventually(lambda: len(receiver.messages) == 1, timeout_s=2)
    assert receiver.messages[0].prediction["status"] == "canceled"
    _validate(receiver.messages[0], await _secret(sb))


async def test_failed_delivery_is_retried_with_the_same_id(make_sandbox: MakeSandbox) -> None:
    receiver = Receiver(fail_first=2)
    sb = await _receiving(make_sandbox, receiver)
    await sb.client.models.predictions.async_create(
        model="sandbox/echo", input={}, webhook=HOOK_URL, webhook_events_filter=["completed"]
    )
    await eventually(lambda: sb.state.store.counters.webhooks_sent == 1)
    assert len(receiver.messages) == 3
    assert len({m.headers["webhook-id"] for m in receiver.messages}) == 1
    secret = await _secret(sb)
    for message in receiver.messages:
        _validate(message, secret)
    assert (await sb.stats())["webhooks_failed"] == 0


async def test_undeliverable_webhook_counts_as_failed(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.0))  # the real network transport
    sb.state.webhooks.retry_delays_s = (0.01, 0.01)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    await sb.client.models.predictions.async_create(
        model="sandbox/echo",
        input={},
        webhook=f"http://127.0.0.1:{closed_port}/closed",
        webhook_events_filter=["completed"],
    )

    async def failed() -> bool:
        return (await sb.stats())["webhooks_failed"] == 1

    await eventually(failed)
    assert (await sb.stats())["webhooks_sent"] == 0


async def test_bad_webhook_fields_are_422(sb: InProcess) -> None:
    for body in (
        {"input": {}, "webhook": "ftp://x"},
        {"input": {}, "webhook": HOOK_URL, "webhook_events_filter": ["done"]},
        {"input": {}, "webhook": HOOK_URL, "webhook_events_filter": "completed"},
    ):
        response = await sb.http.post("/v1/models/sandbox/echo/predictions", json=body)
        assert response.status_code == 422, body


def test_sign_matches_standard_webhooks_vector() -> None:
    # The example from the Standard Webhooks spec (svix) test suite.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_a_flood_of_webhooks_is_sent_a_bounded_number_at_a_time(
    make_sandbox: MakeSandbox,
) -> None:
    """1,000 predictions made at once used to send 1,000 webhooks at once, and the HTTP pool's
    bookkeeping held the sandbox's event loop for tens of seconds."""
    sending, most = 0, 0

    class Slow(Receiver):
        async def hook(self, request: Request) -> Response:
            nonlocal sending, most
            sending += 1
            most = max(most, sending)
            await asyncio.sleep(0.01)
            sending -= 1
            return await super().hook(request)

    receiver = Slow()
    sb = await _receiving(make_sandbox, receiver)
    count = 3 * MAX_SENDING
    await asyncio.gather(
        *(
            sb.client.models.predictions.async_create(
                model="sandbox/echo", input={}, webhook=HOOK_URL, webhook_events_filter=["start"]
            )
            for _ in range(count)
        )
    )
    await eventually(lambda: sb.state.store.counters.webhooks_sent == count, timeout_s=10)
    assert MAX_SENDING // 2 < most <= MAX_SENDING
