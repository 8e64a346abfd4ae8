"""Results that last, with real processes: files that outlive the sandbox's deletion (a local
store and a real S3-compatible server), predictions stopped by their own deadline when no worker
is left, aborted predictions retried, and progress shown by ``predq status``."""

from __future__ import annotations

import hashlib
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devkit.launch import S3Server
from devkit.wait import eventually
from producer import keys
from producer.client import Producer
from producer.config import Config
from producer.models import ErrorKind, JobRecord, JobState
from tests.integration.conftest import Sandbox, Workers, outputs_dir, predq, record_when

pytestmark = pytest.mark.integration


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3.log")
    yield server
    server.stop()


async def outlives_the_sandbox(
    producer: Producer, workers: Workers, sandbox: Sandbox, **env: str
) -> JobRecord:
    """An image job whose originals the sandbox deletes 2 s after it ends; returns its record
    once they are gone, after checking every copy byte for byte."""
    sandbox.faults(output_ttl_s=2)
    workers.start(**env)
    job = await producer.enqueue("sandbox/image", {"num_outputs": 2})
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED, record.error
    assert len(record.files) == 2
    originals = [f.source_url for f in record.files]
    async with httpx.AsyncClient() as http:

        async def deleted() -> bool:
            answers = [(await http.get(url)).status_code for url in originals]
            return answers == [404, 404]

        await eventually(deleted, timeout_s=15, what="the sandbox to delete the originals")
    for n, file in enumerate(record.files):
        data = await producer.read_file(job.id, n)
        assert hashlib.sha256(data).hexdigest() == file.sha256
        assert len(data) == file.size_bytes
    return record


def downloaded(redis_url: str, job_id: str, directory: Path, env: dict[str, str]) -> list[Path]:
    result = predq(redis_url, "files", job_id, "-o", str(directory), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok") == 2
    return sorted(directory.iterdir())


async def test_files_outlive_replicates_deletion_in_a_local_store(
    producer: Producer, workers: Workers, sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    record = await outlives_the_sandbox(producer, workers, sandbox)
    assert all(f.url.startswith("file://") for f in record.files)
    store = {"PREDQ_OUTPUT_STORE": outputs_dir(tmp_path).as_uri()}
    paths = downloaded(redis_url, record.id, tmp_path / "got", store)
    for path, file in zip(paths, record.files, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == file.sha256
    status = predq(redis_url, "status", record.id, env=store)
    assert "file 1:" in status.stdout


async def test_files_outlive_replicates_deletion_in_s3(
    workers: Workers, sandbox: Sandbox, redis_url: str, s3: S3Server, tmp_path: Path
) -> None:
    config = Config.from_env({**s3.env(), "REDIS_URL": redis_url})
    async with Producer(config=config) as producer:
        record = await outlives_the_sandbox(producer, workers, sandbox, **s3.env())
        assert all(f.url.startswith(f"s3://{s3.bucket}/outputs/{record.id}/") for f in record.files)
        link = await producer.file_url(record.id, 0, expires_s=60)
    async with httpx.AsyncClient() as http:
        response = await http.get(link)  # presigned: no credentials needed
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert hashlib.sha256(response.content).hexdigest() == record.files[0].sha256
    paths = downloaded(redis_url, record.id, tmp_path / "got", s3.env())
    assert [p.suffix for p in paths] == [".png", ".png"]


async def test_a_lost_jobs_prediction_is_stopped_by_its_own_deadline(
    producer: Producer, workers: Workers, sandbox: Sandbox, redis_url: str
) -> None:
    [doomed] = workers.start(PREDQ_CANCEL_AFTER_MARGIN_S="0")
    job = await producer.enqueue("sandbox/sleep", {"seconds": 60}, attempt_timeout_s=3)
    running = await record_when(producer, job.id, lambda r: r.prediction_id)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    client = redis.Redis.from_url(redis_url)  # the job is lost: nobody will resume it
    try:
        client.delete(keys.job(job.id))
        client.zrem(producer.config.queue_name, job.id)
    finally:
        client.close()
    await eventually(
        lambda: sandbox.stats()["deadline_canceled"] == 1,
        timeout_s=15,
        what="the sandbox to stop the prediction at its Cancel-After deadline",
    )
    [prediction] = sandbox.predictions()
    assert (prediction["id"], prediction["status"]) == (running.prediction_id, "canceled")
    assert prediction["completed_at"] == prediction["deadline"]
    assert sandbox.stats()["canceled"] == 0  # no worker canceled it: Replicate itself did


async def test_a_prediction_aborted_before_it_started_is_retried(
    producer: Producer, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(boot_s=60)  # predictions stay "starting": their deadline aborts them
    env = {"PREDQ_LEASE_S": "1", "PREDQ_CANCEL_AFTER_MARGIN_S": "0",
           "PREDQ_BACKOFF_BASE_S": "3", "PREDQ_BACKOFF_MAX_S": "3"}  # fmt: skip
    [first] = workers.start(**env)
    job = await producer.enqueue("sandbox/sleep", {"seconds": 0.2}, attempt_timeout_s=6)
    await record_when(producer, job.id, lambda r: r.prediction_id)
    first.send_signal(signal.SIGKILL)  # the next worker resumes the prediction with a fresh
    workers.start(**env)  # deadline of its own, so the prediction's Cancel-After passes first
    retrying = await record_when(producer, job.id, lambda r: r.errors, timeout_s=20)
    sandbox.faults(boot_s=None)
    assert retrying.errors[0].kind is ErrorKind.TIMEOUT
    assert "aborted" in retrying.errors[0].message
    record = await producer.wait(job.id, timeout_s=30)
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 2
    stats = sandbox.stats()
    assert (stats["aborted"], stats["created"]) == (1, 2)
    assert all(p.poll() is None for p in workers.processes[1:]), "a worker hung or died"


async def test_predq_status_shows_a_running_jobs_phase_and_rising_progress(
    producer: Producer, workers: Workers, sandbox: Sandbox, redis_url: str
) -> None:
    sandbox.faults(latency_s=4)
    workers.start(PREDQ_POLL_INTERVAL_S="0.1")
    job = await producer.enqueue("sandbox/image", {"num_outputs": 1})
    await record_when(producer, job.id, lambda r: r.progress is not None)
    shown: list[float] = []
    while len(shown) < 40:
        status = predq(redis_url, "status", job.id, "--json")
        record = json.loads(status.stdout)
        if record["state"] != "running" or record.get("phase") == "storing_outputs":
            break  # the prediction is over (its files are being copied)
        text = predq(redis_url, "status", job.id).stdout
        if "storing_outputs" in text:
            break
        if "phase:" in text and (match := re.search(r"progress:\s+(\d+)%", text)):
            assert "processing" in text
            shown.append(int(match[1]))
    assert len(set(shown)) >= 2, shown
    assert shown == sorted(shown)
    assert (await producer.wait(job.id, timeout_s=30)).state is JobState.SUCCEEDED
