"""The ``predq`` command as users run it: JSON records, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.launch import clean_env, free_port, start_worker, stop
from devkit.wait import eventually_blocking
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


def run(
    args: list[str], env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env={**clean_env(), **env}, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.mark.parametrize("url", ["garbage", "http://user:pw-secret@host/0"])
def test_a_malformed_redis_url_is_one_line_and_exit_6(url: str) -> None:
    for command in (
        [sys.executable, "-m", "producer.cli", "status", "x"],
        [sys.executable, "-m", "arq", "worker.main.Settings"],
    ):
        result = run(command, {"REDIS_URL": url}, timeout_s=60)
        assert result.returncode == 6, result.stderr
        assert "REDIS_URL" in result.stderr
        assert "Traceback" not in result.stderr
        assert "pw-secret" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("command", "blocked", "extra"),
    [(["demo"], "rich", "devkit"), (["sandbox", "--port", "8787"], "starlette", "sandbox")],
)
def test_a_missing_extra_is_named(command: list[str], blocked: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from producer.cli import main\n"
        f"sys.exit(main({command!r}))"
    )
    result = run([sys.executable, "-c", code], {})
    assert result.returncode == 2
    assert f"pip install 'predq[{extra}]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_demo_with_two_jobs_and_a_replicate_token_runs_on_the_sandbox() -> None:
    result = run(
        [sys.executable, "-m", "producer.cli", "demo", "--jobs", "2"],
        {"REPLICATE_API_TOKEN": "r8_a-real-looking-token-of-a-user-0000"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shown = " ".join(result.stdout.split())  # rich wraps lines at the terminal's width
    assert "no --model was given: the demo runs on the local sandbox" in shown
    assert re.search(r"succeeded\W+2\b", shown), shown
    # the dashboard came up (ApiProcess waits for it) and says where, with a key to sign in with
    assert re.search(
        r"dashboard: http://127\.0\.0\.1:\d+ \(sign in with the key demo-\S{20,}\)", shown
    )


def test_a_worker_that_cannot_reach_redis_says_so_at_once(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "PREDQ_LOG_FORMAT": "json"}
    worker = start_worker({**clean_env(), **env}, log)
    try:
        eventually_blocking(
            lambda: "worker.redis_unavailable" in log.read_text(),
            timeout_s=10,
            what="the worker to report Redis unreachable",
        )
    finally:
        stop([worker], timeout_s=5)
    assert "connection refused" in log.read_text()


def test_ctrl_c_on_the_demo_says_what_it_waits_for_and_stops_everything() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "demo", "--jobs", "50"],
        env={**clean_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As in a terminal: a background job (CI's shell) inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert demo.stdout is not None
    seen: list[str] = []
    for line in demo.stdout:  # until the jobs are in flight
        seen.append(line)
        if "enqueued" in line:
            break
    demo.send_signal(signal.SIGINT)
    out, _ = demo.communicate(timeout=60)
    shown = " ".join(("".join(seen) + out).split())
    assert demo.returncode == 130, shown
    assert "stopping 2 workers" in shown
    assert "Ctrl-C again to stop at once" in shown
