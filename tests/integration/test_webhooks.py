"""Completion by webhook: the sandbox calls the receiver, the receiver wakes the worker; no polls."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from producer import keys
from producer.client import Producer
from producer.models import ErrorKind, JobState
from sandbox.launch import stop
from sandbox.local_redis import free_port
from tests.integration.conftest import SANDBOX_TOKEN, Sandbox, Workers, wait_for

pytestmark = pytest.mark.integration


class Receiver:
    def __init__(self, redis_url: str, sandbox: Sandbox, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/replicate/webhook"
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "REPLICATE_BASE_URL": sandbox.url,  # it asks the sandbox for the signing secret
            "REPLICATE_API_TOKEN": SANDBOX_TOKEN,
        }
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.webhook_receiver", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self._healthy, timeout_s=20, what="the webhook receiver")

    def _healthy(self) -> bool:
        assert self.process.poll() is None, "the receiver exited"
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture
def receiver(redis_url: str, sandbox: Sandbox, tmp_path: Path) -> Iterator[Receiver]:
    server = Receiver(redis_url, sandbox, tmp_path / "receiver.log")
    yield server
    stop([server.process])


async def test_webhooks_replace_polling(
    producer: Producer, workers: Workers, sandbox: Sandbox, receiver: Receiver
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


def test_a_forged_webhook_is_rejected(receiver: Receiver, redis_url: str) -> None:
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
