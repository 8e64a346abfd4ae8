"""Completion by webhook: the sandbox calls the receiver, the receiver wakes the worker; no polls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devkit.launch import ReceiverProcess, clean_env, free_port
from devkit.wait import eventually
from producer import keys
from producer.client import Producer
from producer.models import ErrorKind, JobState
from tests.integration.conftest import SANDBOX_TOKEN, Sandbox, Workers

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver(redis_url: str, sandbox: Sandbox, tmp_path: Path) -> Iterator[ReceiverProcess]:
    env = {
        **clean_env(),
        "REDIS_URL": redis_url,
        "REPLICATE_BASE_URL": sandbox.url,  # it asks the sandbox for the signing secret
        "REPLICATE_API_TOKEN": SANDBOX_TOKEN,
    }
    server = ReceiverProcess(env, tmp_path / "receiver.log")
    yield server
    server.stop()


async def test_webhooks_replace_polling(
    producer: Producer, workers: Workers, sandbox: Sandbox, receiver: ReceiverProcess
) -> None:
    workers.start(2, PREDQ_WEBHOOK_URL=receiver.url, PREDQ_WEBHOOK_FALLBACK_POLL_S="30")
    jobs = await producer.enqueue_many(
        [{"model": "sandbox/echo", "input": {"n": n}} for n in range(20)]
        + [{"model": "sandbox/fail", "input": {"message": "bad prompt"}}]
    )
    try:
        done = [await producer.wait(job.id, timeout_s=20) for job in jobs]
    except Exception:
        print("SANDBOX STATS", sandbox.stats())
        raise
    assert [r.state for r in done[:20]] == [JobState.SUCCEEDED] * 20
    assert [r.output for r in done[:20]] == [{"n": n} for n in range(20)]
    failed = done[20]
    assert failed.state is JobState.FAILED
    assert failed.error is not None
    assert failed.error.kind is ErrorKind.MODEL and "bad prompt" in failed.error.message
    stats = sandbox.stats()
    assert stats["polls"] == 0, stats
    assert stats["webhooks_sent"] >= 21


async def test_a_lost_webhook_falls_back_to_polling(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/replicate/webhook"  # nothing listens there
    workers.start(PREDQ_WEBHOOK_URL=nowhere, PREDQ_WEBHOOK_FALLBACK_POLL_S="0.5")
    job = await producer.enqueue("sandbox/echo", {"x": 1})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert sandbox.stats()["polls"] >= 1
    # The prediction was created with the webhook, and its delivery failed (1 + 3 retries over
    # 3.5 s): without webhook mode, nothing would have been sent at all.
    await eventually(
        lambda: sandbox.stats()["webhooks_failed"] >= 1, timeout_s=10, what="a lost webhook"
    )


def test_a_forged_webhook_is_rejected(receiver: ReceiverProcess, redis_url: str) -> None:
    body = b'{"id": "forged", "status": "succeeded", "output": "pwned"}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
    }
    response = httpx.post(receiver.url, content=body, headers=headers)
    assert response.status_code == 401
    unsigned = httpx.post(receiver.url, content=body)
    assert unsigned.status_code == 401
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get(keys.webhook("forged")) is None
    finally:
        client.close()
