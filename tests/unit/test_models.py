"""Request validation: every bad argument gets its own specific, one-line error."""

from __future__ import annotations

import pytest

from producer.errors import InputTooLarge, InvalidInput, InvalidModelRef, InvalidRequest
from producer.models import JobRequest, JobState


def build(**overrides: object) -> JobRequest:
    args: dict[str, object] = {"model": "owner/name", "input": {}, "max_input_bytes": 64}
    args.update(overrides)
    return JobRequest.build(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "model",
    [
        "owner/name",
        "black-forest-labs/flux-schnell",
        "meta/llama.3_70b:5c7d5dc6dd8bf75c1acaa8565735e7",
    ],
)
def test_model_refs_accepted(model: str) -> None:
    assert build(model=model).model == model


@pytest.mark.parametrize(
    "model", ["", "flux", "owner/", "/name", "a/b/c", "owner/name:", "owner/name:v 1", 42, None]
)
def test_bad_model_refs_rejected(model: object) -> None:
    with pytest.raises(InvalidModelRef, match="owner/name"):
        build(model=model)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "must be a JSON object, got list"),
        ("text", "must be a JSON object, got str"),
        (None, "must be a JSON object, got NoneType"),
        ({"x": float("nan")}, "not JSON-serializable"),
        ({"x": {1, 2}}, "not JSON-serializable"),
        ({"x": object()}, "not JSON-serializable"),
    ],
)
def test_bad_inputs_rejected(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build(input=value)


def test_input_size_limit_is_measured_in_json_bytes() -> None:
    assert build(input={"t": "x" * 54}).input_json == '{"t":"' + "x" * 54 + '"}'  # 62 bytes
    with pytest.raises(InputTooLarge, match="is 66 bytes as JSON; the limit is 64 bytes"):
        build(input={"t": "é" * 29})  # two bytes each: 8 + 58


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("idempotency_key", "", "idempotency_key"),
        ("idempotency_key", "x" * 257, "idempotency_key"),
        ("idempotency_key", "a\nb", "idempotency_key"),
        ("max_attempts", 0, "max_attempts"),
        ("max_attempts", 101, "max_attempts"),
        ("max_attempts", 2.5, "max_attempts"),
        ("attempt_timeout_s", 0, "attempt_timeout_s"),
        ("attempt_timeout_s", -1, "attempt_timeout_s"),
        ("attempt_timeout_s", "10", "attempt_timeout_s"),
    ],
)
def test_bad_options_rejected(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        build(**{field: value})


def test_invalid_requests_are_value_errors() -> None:
    with pytest.raises(ValueError, match="owner/name"):
        build(model="nope")


def test_final_states() -> None:
    final = {state for state in JobState if state.is_final}
    assert final == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED}
