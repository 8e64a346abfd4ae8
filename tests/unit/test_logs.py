"""Log redaction on a captured stream: each test fails with redaction turned off."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from worker.logs import Redactor, configure_logging, quiet_per_job_lines

TOKEN = "r8_Zk3mN8qP2vX9wL4tR7yB1cD5fG6hJ0"
PASSWORD = "hunter2-redis-pw"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG", "json", secrets=[TOKEN, PASSWORD, "sandbox"], stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_secret_in_a_structlog_event_is_masked(captured: io.StringIO) -> None:
    log = structlog.get_logger("test")
    log.info("request", header=f"Authorization: Bearer {TOKEN}", token=TOKEN, n=3)
    log.warning("redis", url=f"redis://user:{PASSWORD}@db:6379/0", error=f"auth {PASSWORD} bad")
    text = captured.getvalue()
    assert TOKEN not in text
    assert PASSWORD not in text
    [request, redis] = lines(captured)
    assert request["token"] == "***"
    assert request["header"] == "Authorization: Bearer ***"
    assert request["n"] == 3
    assert redis["url"] == "redis://user:***@db:6379/0"
    assert redis["error"] == "auth *** bad"


def test_a_secret_in_a_stdlib_record_and_its_traceback_is_masked(captured: io.StringIO) -> None:
    try:
        raise RuntimeError(f"the token {TOKEN} was refused")
    except RuntimeError:
        logging.getLogger("arq.worker").exception("job failed with %s", TOKEN)
    text = captured.getvalue()
    assert "job failed" in text
    assert "RuntimeError" in text
    assert TOKEN not in text


def test_words_that_contain_a_short_secret_are_left_alone(captured: io.StringIO) -> None:
    structlog.get_logger("test").info("job", model="sandbox/fail", token="sandbox")
    [event] = lines(captured)
    assert event["model"] == "sandbox/fail"
    assert event["token"] == "***"


def test_unconfigured_url_passwords_and_bearer_tokens_are_masked_too() -> None:
    redact = Redactor([])
    assert redact.text("redis://:other-pw@h:1/0") == "redis://:***@h:1/0"
    assert redact.text("headers={'authorization': 'Bearer abc.def'}") == (
        "headers={'authorization': 'Bearer ***'}"
    )
    assert redact.text("plain text") == "plain text"


def test_the_libraries_per_job_lines_are_dropped_above_debug(captured: io.StringIO) -> None:
    arq_worker, httpx_logger = logging.getLogger("arq.worker"), logging.getLogger("httpx")
    filters, httpx_level = arq_worker.filters[:], httpx_logger.level
    try:
        quiet_per_job_lines("INFO")
        arq_worker.info("%6.2fs → %s(%s)%s", 0.01, "job-1:run_prediction", "", "")
        arq_worker.info("%6.2fs ← %s ● %s", 0.2, "job-1:run_prediction", "")
        arq_worker.info("Starting worker for %d functions: %s", 1, "run_prediction")
        httpx_logger.info('HTTP Request: %s %s "%s %d %s"', "POST", "u", "HTTP/1.1", 201, "")
        events = [line["event"] for line in lines(captured)]
        assert events == ["Starting worker for 1 functions: run_prediction"]
    finally:
        arq_worker.filters[:] = filters
        httpx_logger.setLevel(httpx_level)
