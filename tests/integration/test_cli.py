"""The ``predq`` command as users run it: JSON records, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Sandbox, Workers, predq

pytestmark = pytest.mark.integration
RECORD_FIELDS = {
    "id", "state", "model", "input", "output", "error", "attempts", "prediction_id",
    "created_at", "finished_at",
}  # fmt: skip


def test_enqueue_wait_status(redis_url: str, workers: Workers, sandbox: Sandbox) -> None:
    workers.start()
    done = predq(redis_url, "enqueue", "sandbox/echo", "--input", '{"a": 1}', "--wait", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record.keys() >= RECORD_FIELDS
    assert record["state"] == "succeeded"
    assert record["output"] == {"a": 1}

    status = predq(redis_url, "status", record["id"])
    assert status.returncode == 0
    assert "state:" in status.stdout
    assert "succeeded" in status.stdout

    failed = predq(redis_url, "enqueue", "sandbox/fail", "--input", "-", "--wait", stdin="{}")
    assert failed.returncode == 1
    assert "failed" in failed.stdout


def test_enqueue_prints_the_id_and_cancel_works(redis_url: str) -> None:
    queued = predq(redis_url, "enqueue", "owner/model", "--input", "{}")
    assert queued.returncode == 0
    job_id = queued.stdout.strip()
    canceled = predq(redis_url, "cancel", job_id, "--json")
    assert canceled.returncode == 0
    assert json.loads(canceled.stdout)["state"] == "canceled"
    waited = predq(redis_url, "wait", job_id, "--json")
    assert waited.returncode == 1  # canceled is final, but not a success


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("status", "nope"), 3, "job 'nope' not found"),
        (("wait", "nope", "--timeout", "1"), 3, "not found"),
        (("enqueue", "bad ref", "--input", "{}"), 2, "owner/name"),
        (("enqueue", "o/n", "--input", "{nope"), 2, "not valid JSON"),
        (("enqueue", "o/n", "--input", "[1]"), 2, "must be a JSON object"),
        (("enqueue", "o/n", "--input", "@/no/such/file.json"), 2, "cannot read"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(
    redis_url: str, args: tuple[str, ...], code: int, message: str
) -> None:
    result = predq(redis_url, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_wait_timeout_and_unreachable_redis(redis_url: str) -> None:
    job_id = predq(redis_url, "enqueue", "o/n", "--input", "{}").stdout.strip()
    timed_out = predq(redis_url, "wait", job_id, "--timeout", "0.3")
    assert timed_out.returncode == 5
    assert "still queued" in timed_out.stderr
    down = predq("redis://:pw-secret@127.0.0.1:1/0", "status", job_id)
    assert down.returncode == 4
    assert "unavailable" in down.stderr
    assert "pw-secret" not in down.stderr
