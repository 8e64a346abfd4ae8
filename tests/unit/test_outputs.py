"""Results that last, in-process: output files copied into the store before a job succeeds,
copies retried without a second prediction, storage failures that keep the prediction, progress
on the record, Cancel-After on every create, and expired outputs swept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fakeredis
import pytest

from devkit.wait import eventually
from producer import clock, keys
from producer.errors import FileUnavailable
from producer.models import ErrorKind, JobPhase, JobState
from sandbox import files as sandbox_files
from tests.unit.conftest import InProcessWorkers
from worker.outputs import Sweeper, find_files, replace_files


def served(workers: InProcessWorkers, prediction_id: str) -> list[bytes]:
    """The bytes the sandbox serves for a prediction's files."""
    run = workers.sandbox.store.get(prediction_id).run
    return [b"".join(sandbox_files.chunks(f)) for f in run.files]


def test_files_are_found_at_any_depth_and_replaced_in_place() -> None:
    output = {"images": ["https://x/a.png", "text", "data:image/png;base64,AAAA"],
              "video": "http://x/v.mp4", "n": 3, "note": "see https://x/a.png"}  # fmt: skip
    assert find_files(output) == ["https://x/a.png", "data:image/png;base64,AAAA", "http://x/v.mp4"]
    urls = {"https://x/a.png": "s3://b/j/0.png", "http://x/v.mp4": "s3://b/j/2.mp4"}
    assert replace_files(output, urls)["images"][0] == "s3://b/j/0.png"
    assert replace_files(output, urls)["video"] == "s3://b/j/2.mp4"
    assert replace_files(output, urls)["note"] == "see https://x/a.png"


async def test_image_outputs_are_copied_before_the_job_succeeds(workers: InProcessWorkers) -> None:
    [record] = await workers.run(("sandbox/image", {"num_outputs": 2}))
    assert record.state is JobState.SUCCEEDED
    assert record.prediction_id is not None
    originals = served(workers, record.prediction_id)
    assert [f.url for f in record.files] == record.output
    for n, (file, original) in enumerate(zip(record.files, originals, strict=True)):
        assert file.url.startswith(workers.outputs.as_uri())
        assert file.source_url.startswith("http://sandbox/sandbox/files/")
        assert (file.content_type, file.size_bytes) == ("image/png", len(original))
        assert file.sha256 == hashlib.sha256(original).hexdigest()
        assert await workers.producer.read_file(record.id, n) == original
    assert await workers.producer.file_url(record.id, 1) == f"/v1/jobs/{record.id}/files/1"
    assert record.metrics is not None
    assert record.metrics["predict_time"] >= 0
    assert (record.phase, record.progress) == (None, None)
    with pytest.raises(FileUnavailable):
        await workers.producer.read_file(record.id, 2)


async def test_data_uris_from_sync_mode_are_stored_as_files(workers: InProcessWorkers) -> None:
    [record] = await workers.run(
        ("sandbox/image", {"num_outputs": 1}), env={"PREDQ_CREATE_WAIT_S": "5"}
    )
    assert record.state is JobState.SUCCEEDED
    [file] = record.files
    assert file.source_url == "data:image/png"
    assert record.prediction_id is not None
    assert await workers.producer.read_file(record.id) == served(workers, record.prediction_id)[0]
    assert workers.stats()["polls"] == 0  # the held create answered with the files inline


async def test_a_copy_that_fails_for_a_moment_is_retried_within_the_attempt(
    workers: InProcessWorkers,
) -> None:
    await workers.faults(queue=[{"on": "file", "fault": "error", "status": 503}] * 2)
    [record] = await workers.run(("sandbox/image", {"num_outputs": 1}))
    assert record.state is JobState.SUCCEEDED
    assert (record.attempts, record.errors) == (1, [])
    stats = workers.stats()
    assert (stats["created"], stats["file_downloads"]) == (1, 1)


async def test_a_copy_that_fails_for_good_keeps_the_prediction_for_a_retry(
    workers: InProcessWorkers,
) -> None:
    [record] = await workers.run(
        ("sandbox/video", {"size_bytes": 300_000}), env={"PREDQ_OUTPUT_MAX_BYTES": "100000"}
    )
    assert record.state is JobState.FAILED
    assert record.error is not None
    assert record.error.kind is ErrorKind.STORAGE
    assert "PREDQ_OUTPUT_MAX_BYTES" in record.error.message
    assert record.prediction_id is not None
    assert isinstance(record.output, str)
    assert record.output.startswith("http://sandbox/sandbox/files/")  # Replicate's URL, kept
    assert record.files == []
    assert not any(workers.outputs.rglob("*.mp4"))  # nothing half-written
    await workers.producer.retry(record.id)
    await workers.run()  # the cap is back to its default
    again = await workers.producer.get(record.id)
    assert again is not None
    assert again.state is JobState.SUCCEEDED
    assert again.prediction_id == record.prediction_id
    assert workers.stats()["created"] == 1  # the retry copied again instead of paying again
    assert again.files[0].size_bytes == 300_000


async def test_a_running_job_shows_its_phase_and_rising_progress(
    workers: InProcessWorkers,
) -> None:
    await workers.faults(latency_s=1.5)
    seen: list[tuple[JobPhase | None, float | None]] = []
    async with workers.running(PREDQ_POLL_INTERVAL_S="0.05"):
        job = await workers.producer.enqueue("sandbox/image", {"num_outputs": 1})

        async def finished() -> bool:
            record = await workers.producer.get(job.id)
            assert record is not None
            seen.append((record.phase, record.progress))
            return record.is_final

        await eventually(finished, timeout_s=10, interval_s=0.05)
    phases = {phase for phase, _ in seen}
    progress = [p for phase, p in seen if phase is JobPhase.PROCESSING and p is not None]
    assert JobPhase.PROCESSING in phases
    assert len(set(progress)) >= 3, seen
    assert progress == sorted(progress)
    record = await workers.producer.get(job.id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED
    assert record.logs is not None
    assert "100%|##########| 20/20" in record.logs


async def test_every_create_carries_a_cancel_after_deadline(workers: InProcessWorkers) -> None:
    [record] = await workers.run(
        ("sandbox/echo", {}), attempt_timeout_s=30, env={"PREDQ_CANCEL_AFTER_MARGIN_S": "10"}
    )
    assert record.prediction_id is not None
    prediction = workers.sandbox.store.get(record.prediction_id)
    assert prediction.deadline_s is not None
    assert 39 <= prediction.deadline_s - prediction.created_s <= 40


async def test_the_files_of_expired_records_are_swept(
    workers: InProcessWorkers, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    [record] = await workers.run(("sandbox/image", {"num_outputs": 2}))
    files = [Path(f.url.removeprefix("file://")) for f in record.files]
    assert all(path.exists() for path in files)
    expires = await fake_redis.zscore(keys.OUTPUTS_EXPIRY, record.id)
    assert expires is not None
    assert expires > clock.now_ms()  # kept for as long as the record is
    sweeper = Sweeper(fake_redis, workers.config.outputs())
    assert await sweeper.sweep() == 0
    await fake_redis.delete(keys.job(record.id))  # the record's retention ran out
    await fake_redis.zadd(keys.OUTPUTS_EXPIRY, {record.id: clock.now_ms() - 1})
    assert await sweeper.sweep() == 2
    assert not any(path.exists() for path in files)
    assert await fake_redis.zscore(keys.OUTPUTS_EXPIRY, record.id) is None
