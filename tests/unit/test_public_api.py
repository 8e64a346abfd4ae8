"""The public surface is small and pinned, and the producer never pulls in the worker's world."""

from __future__ import annotations

import subprocess
import sys

import producer


def test_producer_exports_are_pinned() -> None:
    assert sorted(producer.__all__) == [
        "Config",
        "ErrorInfo",
        "InvalidRequest",
        "JobNotFound",
        "JobNotRetryable",
        "JobRecord",
        "JobState",
        "PredqError",
        "Producer",
        "RedisUnavailable",
        "SyncProducer",
        "WaitTimeout",
    ]
    for name in producer.__all__:
        assert getattr(producer, name) is not None


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


#: What a web app that only enqueues must never load (nor a `predq status`).
HEAVY = ("worker", "arq", "replicate", "sandbox", "devkit", "rich", "structlog", "uvicorn",
         "starlette", "httpx")  # fmt: skip


def test_importing_the_producer_loads_only_redis_and_pydantic() -> None:
    code = (
        "import sys, producer, producer.cli\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert run_python(code) == ""


def test_predq_status_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from producer.cli import main\n"
        "code = main(['--redis-url', 'redis://127.0.0.1:1/0', 'status', 'x'])\n"
        f"print(code, ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert run_python(code) == "4"


def test_worker_exposes_arq_settings() -> None:
    from worker.main import build_settings

    settings = build_settings({})
    assert settings.functions[0].name == "run_prediction"
    assert settings.keep_result == 0
    assert settings.job_serializer({"a": [1]}) == b'{"a": [1]}'
