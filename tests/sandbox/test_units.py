"""Pure pieces of the sandbox: config, CLI flags, parsing, lifecycle, store, limits."""

from __future__ import annotations

import argparse
import random
import struct
import zlib
from typing import Any

import pytest

import sandbox
from sandbox.cli import add_arguments, config_from_args
from sandbox.clock import iso8601, parse_iso8601
from sandbox.config import ConfigError, SandboxConfig
from sandbox.files import TINY_PNG
from sandbox.models import MODELS, InvalidInput, ModelRun, RunContext, lookup, version_id
from sandbox.parsing import (
    InvalidRequest,
    InvalidVersion,
    parse_cancel_after,
    parse_prefer_wait,
    resolve_version,
)
from sandbox.prediction import Prediction, new_prediction_id
from sandbox.ratelimit import SlidingWindowLimiter
from sandbox.store import PredictionStore

CTX = RunContext(latency_s=1.0, prediction_id="p" * 26, base_url="http://h:1/")


def test_public_names() -> None:
    assert sorted(sandbox.__all__) == ["SandboxConfig", "create_app", "serve"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"throttle_rate": 1.01},
        {"slow_rate": -0.5},
        {"error_rate": 0.5, "lost_create_rate": 0.6},
        {"latency_s": -1.0},
        {"slow_s": float("inf")},
        {"retry_after_s": -1},
        {"port": 70000},
        {"fault_on": frozenset({"create", "upload"})},
        {"create_limit_per_min": 0},
        {"token": ""},
    ],
)
def test_config_rejects_out_of_range(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs)).split("_rate")[0]):
        SandboxConfig(**kwargs)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", dest="port")  # a host parser's own flag must not clash
    sub = parser.add_subparsers(dest="command").add_parser("sandbox")
    add_arguments(sub)
    return parser.parse_args(["sandbox", *argv])


def test_cli_flags_build_the_config() -> None:
    ns = _parse(
        "--host", "0.0.0.0", "--port", "0", "--latency", "0.5", "--throttle-rate", "0.1",
        "--error-rate", "0.2", "--slow-rate", "0.3", "--slow-s", "4", "--lost-create-rate",
        "0.05", "--retry-after", "3", "--seed", "9", "--create-limit", "600",
        "--other-limit", "3000", "--fault-on", "create,list", "--log-level", "info",
    )  # fmt: skip
    config = config_from_args(ns, environ={})
    assert config == SandboxConfig(
        host="0.0.0.0",
        port=0,
        latency_s=0.5,
        throttle_rate=0.1,
        error_rate=0.2,
        slow_rate=0.3,
        slow_s=4.0,
        lost_create_rate=0.05,
        retry_after_s=3,
        seed=9,
        create_limit_per_min=600,
        other_limit_per_min=3000,
        fault_on=frozenset({"create", "list"}),
        log_level="info",
    )


def test_cli_token_flag_then_environment() -> None:
    assert config_from_args(_parse(), environ={}).token is None
    assert config_from_args(_parse(), environ={"SANDBOX_TOKEN": "env"}).token == "env"
    flagged = _parse("--token", "flag")
    assert config_from_args(flagged, environ={"SANDBOX_TOKEN": "env"}).token == "flag"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("wait", 60), ("wait=5", 5), ("respond-async, wait=60", 60)],
)
def test_prefer_wait(header: str | None, expected: int | None) -> None:
    assert parse_prefer_wait(header) == expected


@pytest.mark.parametrize("header", ["wait=0", "wait=61", "wait=soon", "waiting"])
def test_prefer_wait_out_of_range(header: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_prefer_wait(header)


def test_resolve_version() -> None:
    assert resolve_version(f"a/b:{version_id('a/b')}") == ("a/b", version_id("a/b"))
    assert resolve_version("a/b") == ("a/b", version_id("a/b"))
    assert resolve_version(version_id("sandbox/image")) == (
        "sandbox/image",
        version_id("sandbox/image"),
    )
    for unknown in ("a/b:v1", "abc123"):
        with pytest.raises(InvalidVersion):
            resolve_version(unknown)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("90", 90), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1h", 3600)],
)
def test_cancel_after(header: str | None, seconds: float | None) -> None:
    assert parse_cancel_after(header) == seconds


@pytest.mark.parametrize("header", ["4", "3s", "soon", "", "1d", "-5"])
def test_cancel_after_refused(header: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_cancel_after(header)


def test_model_table() -> None:
    assert set(MODELS) == {
        "sandbox/echo", "sandbox/sleep", "sandbox/fail", "sandbox/image", "sandbox/video",
        "sandbox/llm",
    }  # fmt: skip
    assert lookup("x/y").run({"a": 1}, CTX) == ModelRun(duration_s=1.0, output={"a": 1})
    assert lookup("sandbox/sleep").run({"seconds": 7}, CTX).duration_s == 7.0
    failed = lookup("sandbox/fail").run({"message": "m"}, CTX)
    assert (failed.fails, failed.error, failed.output) == (True, "m", None)
    images = lookup("sandbox/image").run({"num_outputs": 2}, CTX).output
    assert images == [f"http://h:1/sandbox/files/{'p' * 26}/{i}.png" for i in range(2)]
    image = lookup("sandbox/image").run({}, CTX)
    assert image.logs_at(0.0).endswith("  0%|          | 0/20 [00:00<00:00]\n")
    assert " 50%|#####     | 10/20" in image.logs_at(0.5).splitlines()[-1]
    assert "generated 1 image(s)" in image.logs_at(1.0)
    with pytest.raises(InvalidInput):
        lookup("sandbox/sleep").run({"seconds": -1}, CTX)
    assert len(version_id("a/b")) == 64


def test_tiny_png_is_valid() -> None:
    assert TINY_PNG.startswith(b"\x89PNG\r\n\x1a\n")
    offset = 8
    kinds = []
    while offset < len(TINY_PNG):
        (length,) = struct.unpack(">I", TINY_PNG[offset : offset + 4])
        kind = TINY_PNG[offset + 4 : offset + 8]
        data = TINY_PNG[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", TINY_PNG[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + data) == crc
        kinds.append(kind)
        offset += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_iso8601_round_trip() -> None:
    text = iso8601(1700000000.25)
    assert text == "2023-11-14T22:13:20.250000Z"
    assert parse_iso8601(text) == 1700000000.25
    assert parse_iso8601("2023-11-14T23:13:20.25 01:00") == 1700000000.25  # unescaped "+"
    assert parse_iso8601("2023-11-14T22:13:20.25") == 1700000000.25  # naive is UTC
    with pytest.raises(ValueError, match="Invalid"):
        parse_iso8601("soon")


def _prediction(
    seq: int, created_s: float, duration_s: float = 1.0, inp: dict[str, Any] | None = None
) -> Prediction:
    return Prediction(
        id=new_prediction_id(random.Random(seq)),
        model="sandbox/echo",
        version="hidden",
        input=inp if inp is not None else {"seq": seq},
        run=ModelRun(duration_s=duration_s, output="out"),
        created_s=created_s,
        base_url="http://h/",
        seq=seq,
    )


def test_lifecycle_is_derived_from_time() -> None:
    prediction = _prediction(0, 100.0, duration_s=2.0)
    assert prediction.started_s == pytest.approx(100.1)
    assert [prediction.status_at(t) for t in (100.0, 100.05, 100.1, 101.9, 102.0)] == [
        "starting",
        "starting",
        "processing",
        "processing",
        "succeeded",
    ]
    assert prediction.to_json(101.0)["output"] is None
    done = prediction.to_json(102.0)
    assert done["output"] == "out"
    assert done["metrics"] == {"predict_time": 1.9, "total_time": 2.0}
    assert prediction.to_json(102.0, "starting")["started_at"] is None
    assert not prediction.cancel(102.0)
    other = _prediction(1, 100.0)
    assert other.cancel(100.5)
    assert other.status_at(200.0) == "canceled"
    assert other.to_json(200.0)["metrics"]["total_time"] == 0.5


def test_store_pages_and_filters() -> None:
    store = PredictionStore()
    for seq in range(250):
        store.add(_prediction(seq, 1000.0 + seq))
    page = store.page()
    assert [p.seq for p in page.results] == list(range(249, 149, -1))
    assert page.previous_cursor is None
    assert page.next_cursor is not None
    last = store.page(store.page(page.next_cursor).next_cursor)
    assert [p.seq for p in last.results] == list(range(49, -1, -1))
    assert last.next_cursor is None
    window = store.page(created_after_s=1010.0, created_before_s=1015.0)
    assert [p.seq for p in window.results] == [14, 13, 12, 11]
    assert (window.next_cursor, window.previous_cursor) == (None, None)
    with pytest.raises(ValueError, match="cursor"):
        store.page("x1")


def test_store_counts_duplicates_and_the_busiest_minute() -> None:
    store = PredictionStore()
    times = [0.0, 10.0, 20.0, 59.0, 60.0, 61.0, 200.0]
    for seq, created_s in enumerate(times):
        store.add(_prediction(seq, created_s, inp={"same": seq % 2}))
    counters = store.counters
    assert counters.duplicate_inputs == len(times) - 2
    assert counters.max_creates_per_60s == 5  # 10, 20, 59, 60, 61: within (1, 61]
    assert store.outcome_counts(1000.0) == {
        "succeeded": 7, "failed": 0, "in_flight": 0, "aborted": 0, "deadline_canceled": 0
    }  # fmt: skip
    assert store.outcome_counts(200.5)["in_flight"] == 1
    with pytest.raises(ValueError, match="seq"):
        store.add(_prediction(3, 300.0))
    store.clear()
    assert (len(store), store.counters.created) == (0, 0)


def test_sliding_window_limiter() -> None:
    limiter = SlidingWindowLimiter(window_s=60.0)
    assert limiter.admit(0.0, None) is None
    assert [limiter.admit(t, 2) for t in (0.0, 10.0)] == [None, None]
    assert limiter.admit(20.0, 2) == 40
    assert limiter.admit(59.5, 2) == 1
    assert limiter.admit(60.0, 2) is None
    assert limiter.admit(60.5, 1) == 60


def test_a_deadline_aborts_a_starting_prediction_and_cancels_a_processing_one() -> None:
    run = ModelRun(duration_s=10.0, output="out", logs=((0.0, "a\n"), (0.6, "b\n")))
    common: dict[str, Any] = {"model": "m/n", "version": "v", "input": {}, "run": run,
                              "created_s": 100.0, "base_url": "http://h/", "seq": 0}  # fmt: skip
    aborted = Prediction(id="p1", boot_s=30.0, cancel_after_s=5.0, **common)
    assert [aborted.status_at(t) for t in (104.9, 105.0, 200.0)] == [
        "starting", "aborted", "aborted"
    ]  # fmt: skip
    body = aborted.to_json(106.0)
    assert (body["status"], body["started_at"], body["deadline"]) == (
        "aborted", None, "1970-01-01T00:01:45.000000Z"
    )  # fmt: skip
    assert body["metrics"]["predict_time"] == 0.0
    assert not aborted.cancel(106.0)

    stopped = Prediction(id="p2", boot_s=1.0, cancel_after_s=6.0, **common)
    assert [stopped.status_at(t) for t in (100.5, 103.0, 106.0)] == [
        "starting", "processing", "canceled"
    ]  # fmt: skip
    assert stopped.to_json(103.0)["logs"] == "a\n"
    assert stopped.to_json(120.0)["logs"] == "a\n"  # stopped at half its run
    assert stopped.to_json(120.0)["completed_at"] == "1970-01-01T00:01:46.000000Z"

    in_time = Prediction(id="p3", boot_s=1.0, cancel_after_s=60.0, **common)
    assert in_time.status_at(111.0) == "succeeded"
    assert in_time.to_json(111.0)["logs"] == "a\nb\n"
