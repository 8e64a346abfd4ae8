"""Operating predq with real processes: completion callbacks (a receiver that goes down, a worker
restart), Prometheus metrics of a worker and of the API, workers shown dead, a bad token."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devkit.launch import ApiProcess, clean_env, free_port, start_worker
from devkit.wait import eventually
from producer.callbacks import InvalidSignature, new_secret, verify
from producer.client import Producer
from producer.config import Config
from producer.errors import InvalidRequest
from producer.models import JobState
from tests.integration.conftest import (
    API_READ_KEY,
    SANDBOX_TOKEN,
    Sandbox,
    Workers,
    outputs_dir,
    predq,
    record_when,
)

pytestmark = pytest.mark.integration
SECRET = new_secret()


class Receiver:
    """A callback receiver on a loopback port that verifies each delivery with the helper;
    ``down()`` and ``up()`` stop and restart it on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.deliveries: list[tuple[str, dict[str, Any]]] = []
        self.rejected = 0
        self._server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/predq"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    record = verify(dict(self.headers), body, secret=SECRET)
                except InvalidSignature:
                    receiver.rejected += 1
                    self.send_response(401)
                else:
                    receiver.deliveries.append((self.headers["webhook-id"], record))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.down()


CALLBACK_ENV = {"PREDQ_CALLBACK_SECRET": SECRET, "PREDQ_CALLBACK_ALLOW_PRIVATE": "1"}


@pytest.fixture
async def callbacks_producer(redis_url: str, tmp_path: Path) -> Any:
    config = Config.from_env({}, redis_url=redis_url, callback_allow_private=True,
                             output_store=outputs_dir(tmp_path).as_uri())  # fmt: skip
    async with Producer(config=config) as producer:
        yield producer


async def test_a_callback_arrives_signed_once_per_webhook_id_through_an_outage_and_a_restart(
    callbacks_producer: Producer, workers: Workers, sandbox: Sandbox, receiver: Receiver
) -> None:
    producer = callbacks_producer
    [first] = workers.start(**CALLBACK_ENV)
    job = await producer.enqueue("sandbox/echo", {"n": 1}, callback_url=receiver.url)
    await eventually(lambda: receiver.deliveries, timeout_s=15, what="the first callback")
    [(message_id, record)] = receiver.deliveries
    assert (record["id"], record["state"], record["output"]) == (job.id, "succeeded", {"n": 1})
    delivered = await record_when(producer, job.id, lambda r: r.callback.status == "delivered")
    assert delivered.callback is not None
    assert delivered.callback.message_id == message_id

    receiver.down()
    late = await producer.enqueue("sandbox/echo", {"n": 2}, callback_url=receiver.url)
    failing = await record_when(producer, late.id, lambda r: r.callback and r.callback.attempts)
    assert failing.callback is not None
    assert failing.callback.status == "pending"
    assert "ConnectError" in (failing.callback.last_error or "")
    first.send_signal(signal.SIGTERM)  # the outbox is in Redis: another worker goes on
    first.wait(timeout=30)
    workers.start(**CALLBACK_ENV)
    receiver.up()
    done = await record_when(
        producer, late.id, lambda r: r.callback.status == "delivered", timeout_s=40
    )
    assert done.callback is not None
    assert done.callback.attempts >= 2
    ids = [m for m, body in receiver.deliveries if body["id"] == late.id]
    assert len(set(ids)) == 1  # every retry carried the same webhook-id
    assert ids[0] == done.callback.message_id
    assert receiver.rejected == 0


async def test_a_callback_to_a_private_address_is_refused(producer: Producer) -> None:
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.8/x", "http://169.254.169.254/x"):
        with pytest.raises(InvalidRequest, match="non-public"):
            await producer.enqueue("sandbox/echo", {}, callback_url=url)
    assert (await producer.counts())[JobState.QUEUED] == 0


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """``name{labels}`` -> value, from a Prometheus text page."""
    text = httpx.get(url, headers=headers, timeout=10).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


async def test_metrics_of_a_worker_and_of_the_api_move_as_jobs_run(
    producer: Producer, workers: Workers, sandbox: Sandbox, api: ApiProcess
) -> None:
    port = free_port()
    workers.start(PREDQ_METRICS_PORT=str(port), PREDQ_HEARTBEAT_S="0.5")
    worker_url = f"http://127.0.0.1:{port}/metrics"
    api_url = f"{api.url}/metrics"
    auth = {"Authorization": f"Bearer {API_READ_KEY}"}
    before = scrape(api_url, auth)
    jobs = await producer.enqueue_many([{"model": "sandbox/echo", "input": {"n": n}}
                                        for n in range(5)] +
                                       [{"model": "sandbox/fail", "input": {}}])  # fmt: skip
    for job in jobs:
        await producer.wait(job.id, timeout_s=30)
    ran = scrape(worker_url)
    assert ran["predq_jobs_finished_total{model=sandbox/echo,outcome=succeeded}"] == 5
    assert ran["predq_jobs_finished_total{model=sandbox/fail,outcome=failed}"] == 1
    assert ran["predq_replicate_requests_total{kind=create,status=201}"] == 6
    assert ran["predq_job_duration_seconds_count{model=sandbox/echo}"] == 5
    assert ran["predq_jobs_in_flight{}"] == 0

    async def counted() -> bool:
        after = scrape(api_url, auth)
        return (
            after["predq_jobs{state=succeeded}"] == before["predq_jobs{state=succeeded}"] + 5
            and after.get(
                "predq_jobs_finished_last_hour{model=sandbox/echo,outcome=succeeded}", 0
            ) == 5
        )  # fmt: skip

    await eventually(counted, timeout_s=10, what="the API's gauges to count the jobs")
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(api_url)).status_code == 401  # metrics need a key too
    stats = predq(producer.config.redis_url, "stats")
    assert stats.returncode == 0, stats.stderr
    assert "succeeded" in stats.stdout


async def test_a_killed_worker_shows_as_dead_within_three_beats(
    producer: Producer, workers: Workers, redis_url: str
) -> None:
    [doomed, alive] = workers.start(2, PREDQ_HEARTBEAT_S="0.5")
    listed = await producer.workers()
    assert sorted(w.pid for w in listed) == sorted([doomed.pid, alive.pid])
    assert all(w.alive for w in listed)
    doomed.send_signal(signal.SIGKILL)

    async def shown_dead() -> bool:
        by_pid = {w.pid: w.alive for w in await producer.workers()}
        return by_pid == {doomed.pid: False, alive.pid: True}

    await eventually(shown_dead, timeout_s=5, what="the killed worker to show as dead")
    shown = predq(redis_url, "workers")
    assert shown.returncode == 0
    assert "dead" in shown.stdout
    workers.stop_all()  # a clean shutdown deregisters
    assert [w.pid for w in await producer.workers()] == [doomed.pid]


def test_a_worker_started_with_a_bad_token_exits_with_one_clear_line(
    redis_url: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    env = {**clean_env(), "REDIS_URL": redis_url, "REPLICATE_BASE_URL": sandbox.url,
           "REPLICATE_API_TOKEN": "r8_definitely-not-the-token-000", "PREDQ_LOG_FORMAT": "json"}  # fmt: skip
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    assert worker.wait(timeout=30) == 6
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.startswith("predq worker:")]
    assert lines == [
        "predq worker: Replicate refused REPLICATE_API_TOKEN (401): set a valid token "
        "(https://replicate.com/account/api-tokens), or PREDQ_CHECK_TOKEN=0"
    ]
    assert "Traceback" not in text
    assert "r8_definitely-not-the-token-000" not in text
    assert SANDBOX_TOKEN not in text
