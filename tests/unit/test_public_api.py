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


def test_importing_the_producer_does_not_import_worker_arq_or_replicate() -> None:
    code = (
        "import sys, producer, producer.cli\n"
        "bad = [m for m in ('worker', 'arq', 'replicate', 'sandbox', 'rich')"
        " if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_worker_exposes_arq_settings() -> None:
    from worker.main import Settings

    assert Settings.functions[0].name == "run_prediction"
    assert Settings.keep_result == 0
    assert Settings.job_serializer({"a": [1]}) == b'{"a": [1]}'
