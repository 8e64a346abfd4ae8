"""The classification table and the backoff function of worker/retry.py."""

from __future__ import annotations

import random

import httpx
import pytest
from replicate.exceptions import ModelError, ReplicateError
from replicate.prediction import Prediction

from producer.models import ErrorKind
from worker.retry import backoff_s, classify, retry_delay_s


def replicate_error(status: int, title: str = "Title", detail: str = "detail") -> ReplicateError:
    return ReplicateError(status=status, title=title, detail=detail)


@pytest.mark.parametrize(
    ("status", "known", "kind", "retryable", "keep"),
    [
        (429, False, ErrorKind.THROTTLED, True, True),
        (500, False, ErrorKind.TRANSIENT, True, True),
        (502, True, ErrorKind.TRANSIENT, True, True),
        (404, True, ErrorKind.TRANSIENT, True, False),
        (404, False, ErrorKind.PERMANENT, False, True),
        (422, False, ErrorKind.PERMANENT, False, True),
        (400, False, ErrorKind.PERMANENT, False, True),
        (401, False, ErrorKind.CONFIG, False, True),
        (403, False, ErrorKind.CONFIG, False, True),
        (402, False, ErrorKind.CONFIG, False, True),
    ],
)
def test_http_statuses(
    status: int, known: bool, kind: ErrorKind, retryable: bool, keep: bool
) -> None:
    verdict = classify(replicate_error(status), prediction_known=known)
    assert (verdict.kind, verdict.retryable, verdict.keep_prediction) == (kind, retryable, keep)
    assert verdict.status_code == status


def test_messages_carry_replicates_reason() -> None:
    verdict = classify(
        replicate_error(422, "Input validation failed", "- prompt is required"),
        prediction_known=False,
    )
    assert (
        verdict.message == "Replicate answered 422: Input validation failed - - prompt is required"
    )
    assert "REPLICATE_API_TOKEN" in classify(replicate_error(401), prediction_known=False).message
    assert "credit" in classify(replicate_error(402), prediction_known=False).message


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("peer closed"),
        httpx.PoolTimeout("pool"),
    ],
)
def test_network_errors_are_transient(exc: Exception) -> None:
    verdict = classify(exc, prediction_known=True)
    assert verdict.kind is ErrorKind.TRANSIENT
    assert verdict.retryable
    assert verdict.keep_prediction
    assert "polling" in verdict.message
    assert "creating" in classify(exc, prediction_known=False).message


def test_model_errors_are_permanent_with_the_logs_tail() -> None:
    prediction = Prediction(
        id="p1", model="o/n", version="v", status="failed", error="boom", logs="a\n" * 2000 + "end"
    )
    verdict = classify(ModelError(prediction), prediction_known=True)
    assert verdict.kind is ErrorKind.MODEL
    assert not verdict.retryable
    assert verdict.message.startswith("the prediction failed: boom")
    assert verdict.message.endswith("end")
    assert len(verdict.message) < 1200


def test_unexpected_errors_are_internal_and_not_retried() -> None:
    verdict = classify(KeyError("x"), prediction_known=False)
    assert verdict.kind is ErrorKind.INTERNAL
    assert not verdict.retryable


def test_backoff_grows_is_capped_and_never_near_zero() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = backoff_s(attempt, base_s=2.0, max_s=60.0, rng=rng)
            assert ceiling / 2 <= delay <= ceiling


def test_retry_after_wins_when_longer_but_stays_capped() -> None:
    assert retry_delay_s(1, base_s=0.1, max_s=60, retry_after_s=7) == 7
    assert retry_delay_s(1, base_s=0.1, max_s=5, retry_after_s=700) == 5
    assert retry_delay_s(1, base_s=0.1, max_s=5, retry_after_s=None) <= 0.1
