"""Streaming with real processes: a second process reads a job's events (SyncProducer.stream)
while a worker relays the sandbox's server-sent events; late readers; a SIGKILLed worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest

from devkit.launch import clean_env
from devkit.wait import eventually
from producer import keys
from producer.client import Producer
from producer.models import JobState
from tests.integration.conftest import Sandbox, Workers, predq, record_when

pytestmark = pytest.mark.integration

READER = """
import json, sys
from producer import SyncProducer
with SyncProducer(sys.argv[1]) as producer:
    for event in producer.stream(sys.argv[2]):
        print(event.model_dump_json(), flush=True)
"""


def reader(redis_url: str, job_id: str) -> subprocess.Popen[str]:
    """A second process that prints the job's events as JSON lines."""
    return subprocess.Popen(
        [sys.executable, "-c", READER, redis_url, job_id],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events_of(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def tokens(events: list[dict[str, Any]]) -> list[str]:
    return [e["output"] for e in events if e["type"] == "output"]


async def streamed_so_far(producer: Producer, job_id: str) -> int:
    raw = await producer._jobs_redis().xrange(keys.events(job_id))
    return sum(1 for _, fields in raw if fields[b"t"] == b"output")


async def test_another_process_reads_every_token_in_order_then_the_final_record(
    producer: Producer, workers: Workers, sandbox: Sandbox, redis_url: str
) -> None:
    sandbox.faults(latency_s=2)
    workers.start()
    job = await producer.enqueue("sandbox/llm", {"prompt": "hi", "max_tokens": 40}, stream=True)
    early = reader(redis_url, job.id)
    await eventually(lambda: _at_least(producer, job.id, 20), timeout_s=20, what="half the tokens")
    late = reader(redis_url, job.id)
    first, second = events_of(early), events_of(late)
    for events in (first, second):
        assert events[-1]["type"] == "final"
        record = events[-1]["record"]
        assert record["state"] == "succeeded"
        assert tokens(events) == record["output"]
        assert len(tokens(events)) == 40
    followed = predq(redis_url, "wait", job.id, "--follow")
    assert followed.returncode == 0
    assert followed.stdout.startswith("".join(tokens(first)))


async def _at_least(producer: Producer, job_id: str, count: int) -> bool:
    return await streamed_so_far(producer, job_id) >= count


async def test_a_worker_killed_mid_stream_is_recovered_and_no_token_repeats(
    producer: Producer, workers: Workers, sandbox: Sandbox, redis_url: str
) -> None:
    sandbox.faults(latency_s=4)
    [doomed] = workers.start(PREDQ_LEASE_S="1")
    job = await producer.enqueue("sandbox/llm", {"prompt": "x", "max_tokens": 40}, stream=True)
    follower = reader(redis_url, job.id)
    await eventually(lambda: _at_least(producer, job.id, 8), timeout_s=20, what="8 tokens")
    doomed.send_signal(signal.SIGKILL)
    workers.start(PREDQ_LEASE_S="1")
    events = events_of(follower)
    record = events[-1]["record"]
    assert record["state"] == "succeeded"
    assert record["recoveries"] == 1
    assert tokens(events) == record["output"]  # every token, each once, in order
    assert sandbox.stats()["created"] == 1
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states.count("running") == 2  # the claim, and the recovery
    done = await record_when(producer, job.id, lambda r: r.is_final)
    assert done.state is JobState.SUCCEEDED
