"""Fault injection, the one-shot fault queue, rate limits and the control endpoints."""

from __future__ import annotations

import time
from typing import Any

import pytest
from replicate.exceptions import ModelError, ReplicateError

from sandbox import SandboxConfig
from tests.sandbox.conftest import InProcess, MakeSandbox

CREATE = "/v1/models/sandbox/echo/predictions"


async def _create_raw(sb: InProcess, inp: dict[str, Any] | None = None) -> Any:
    return await sb.http.post(CREATE, json={"input": inp or {}})


async def test_throttle_on_create_has_retry_after(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05, throttle_rate=1.0, retry_after_s=7))
    response = await _create_raw(sb)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["retry_after"] == 7
    with pytest.raises(ReplicateError) as caught:
        await sb.client.async_run("sandbox/echo", input={})
    assert caught.value.status == 429
    stats = await sb.stats()
    assert (stats["throttled"], stats["created"], stats["requests"]) == (2, 0, 2)


async def test_throttled_get_is_retried_by_the_client(sb: InProcess) -> None:
    created = (await _create_raw(sb)).json()
    await sb.faults(retry_after_s=0, queue=[{"on": "get", "fault": "throttle"}] * 2)
    prediction = await sb.client.predictions.async_get(created["id"])
    assert prediction.id == created["id"]
    stats = await sb.stats()
    assert (stats["throttled"], stats["polls"]) == (2, 3)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_error_fault_on_create_raises_replicate_error(sb: InProcess, status: int) -> None:
    await sb.faults(queue=[{"on": "create", "fault": "error", "status": status}])
    with pytest.raises(ReplicateError) as caught:
        await sb.client.async_run("sandbox/echo", input={})
    assert caught.value.status == status
    assert caught.value.title is not None
    stats = await sb.stats()
    assert (stats["server_errors"], stats["created"]) == (1, 0)


async def test_random_errors_include_html_502(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05, error_rate=1.0, seed=3))
    seen: set[tuple[int, str]] = set()
    for _ in range(40):
        response = await _create_raw(sb)
        seen.add((response.status_code, response.headers["content-type"].split(";")[0]))
    assert seen == {
        (500, "application/problem+json"),
        (502, "application/problem+json"),
        (503, "application/problem+json"),
        (502, "text/html"),
    }
    assert (await sb.stats())["server_errors"] == 40


async def test_slow_fault_holds_the_response(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05, slow_rate=1.0, slow_s=0.3))
    started = time.monotonic()
    response = await _create_raw(sb, {"slow": True})
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 201
    stats = await sb.stats()
    assert (stats["slow"], stats["created"]) == (1, 1)


async def test_lost_create_makes_the_prediction_and_answers_502(
    make_sandbox: MakeSandbox,
) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05, lost_create_rate=1.0, lost_delay_s=0.2))
    started = time.monotonic()
    with pytest.raises(ReplicateError) as caught:
        await sb.client.async_run("sandbox/echo", input={"lost": 1})
    assert time.monotonic() - started >= 0.2
    assert caught.value.status == 502
    assert caught.value.title is None  # an HTML body: nothing to parse
    stats = await sb.stats()
    assert (stats["lost_creates"], stats["created"], stats["server_errors"]) == (1, 1, 0)
    listed = await sb.client.predictions.async_list()
    assert [p.input for p in listed.results] == [{"lost": 1}]


async def test_fault_queue_is_one_shot_and_in_order(sb: InProcess) -> None:
    settings = await sb.faults(
        queue=[
            {"on": "create", "fault": "throttle"},
            {"on": "get", "fault": "error", "status": 500},
            {"on": "create", "fault": "throttle"},
        ]
    )
    assert len(settings["queue"]) == 3
    assert (await _create_raw(sb)).status_code == 429
    assert (await _create_raw(sb)).status_code == 429
    created = await _create_raw(sb)
    assert created.status_code == 201
    prediction_id = created.json()["id"]
    assert (await sb.http.get(f"/v1/predictions/{prediction_id}")).status_code == 500
    assert (await sb.http.get(f"/v1/predictions/{prediction_id}")).status_code == 200
    assert (await sb.http.get("/sandbox/faults")).json()["queue"] == []


async def test_queue_applies_whatever_fault_on_says(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05, fault_on=frozenset()))
    await sb.faults(queue=[{"on": "list", "fault": "throttle"}])
    assert (await sb.http.get("/v1/predictions")).status_code == 429


async def test_fault_on_limits_random_faults(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(
        SandboxConfig(latency_s=0.05, throttle_rate=1.0, fault_on=frozenset({"get"}))
    )
    created = await _create_raw(sb)
    assert created.status_code == 201
    assert (await sb.http.get("/v1/predictions")).status_code == 200
    await sb.faults(retry_after_s=0)
    assert (await sb.http.post(f"/v1/predictions/{created.json()['id']}/cancel")).status_code == 200
    assert (await sb.http.get(f"/v1/predictions/{created.json()['id']}")).status_code == 429


async def test_seeded_random_faults_are_reproducible(make_sandbox: MakeSandbox) -> None:
    async def codes(seed: int) -> list[int]:
        sb = await make_sandbox(SandboxConfig(latency_s=0.05, throttle_rate=0.3, seed=seed))
        return [(await _create_raw(sb)).status_code for _ in range(30)]

    first = await codes(11)
    assert first == await codes(11)
    assert 0 < first.count(429) < 30


async def test_live_fault_updates(sb: InProcess) -> None:
    assert (await _create_raw(sb)).status_code == 201
    settings = await sb.faults(throttle_rate=1.0, fault_on=["create"], latency_s=0.2)
    assert settings["throttle_rate"] == 1.0
    assert settings["latency_s"] == 0.2
    assert "token" not in settings
    assert (await _create_raw(sb)).status_code == 429
    await sb.faults(throttle_rate=0.0)
    body = (await _create_raw(sb)).json()
    prediction = await sb.client.predictions.async_get(body["id"])
    await prediction.async_wait()
    assert prediction.metrics is not None
    assert prediction.metrics["total_time"] == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize(
    "payload",
    [
        {"throttle_rate": 1.5},
        {"error_rate": -0.1},
        {"throttle_rate": 0.6, "error_rate": 0.6},
        {"slow_s": "long"},
        {"retry_after_s": 1.5},
        {"fault_on": ["create", "delete"]},
        {"no_such_setting": 1},
        {"queue": [{"on": "get", "fault": "lost"}]},
        {"queue": [{"on": "create", "fault": "explode"}]},
        {"queue": [{"on": "create", "fault": "throttle", "status": 500}]},
        {"queue": {"on": "create"}},
        [1, 2],
    ],
)
async def test_invalid_fault_settings_are_rejected_whole(sb: InProcess, payload: Any) -> None:
    before = (await sb.http.get("/sandbox/faults")).json()
    response = await sb.http.post("/sandbox/faults", json=payload)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert (await sb.http.get("/sandbox/faults")).json() == before


async def test_create_rate_limit(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05, create_limit_per_min=3))
    codes = [(await _create_raw(sb)).status_code for _ in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    limited = await _create_raw(sb)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert (await sb.http.get("/v1/predictions")).status_code == 200  # other requests unaffected
    stats = await sb.stats()
    assert (stats["created"], stats["throttled"], stats["max_creates_per_60s"]) == (3, 3, 3)


async def test_other_rate_limit(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05, other_limit_per_min=2))
    created = (await _create_raw(sb)).json()
    assert (await sb.http.get(f"/v1/predictions/{created['id']}")).status_code == 200
    assert (await sb.http.get("/v1/webhooks/default/secret")).status_code == 200
    assert (await sb.http.get("/v1/predictions")).status_code == 429
    assert (await sb.http.get("/sandbox/stats")).status_code == 200  # control: never limited
    assert (await _create_raw(sb)).status_code == 201


async def test_control_endpoints_never_get_faults_or_auth(make_sandbox: MakeSandbox) -> None:
    config = SandboxConfig(
        latency_s=0.05,
        token="s3cret",
        error_rate=1.0,
        fault_on=frozenset({"create", "get", "cancel", "list"}),
    )
    sb = await make_sandbox(config, token=None)
    for path in ("/sandbox/health", "/sandbox/stats", "/sandbox/faults"):
        assert (await sb.http.get(path)).status_code == 200
    assert (await sb.http.post("/sandbox/reset")).status_code == 200
    assert (await sb.stats())["requests"] == 0


async def test_stats_counts(sb: InProcess) -> None:
    await sb.client.async_run("sandbox/echo", input={"same": 1})
    await sb.client.async_run("sandbox/echo", input={"same": 1})
    await sb.client.async_run("other/model", input={"same": 1})
    with pytest.raises(ModelError):
        await sb.client.async_run("sandbox/fail", input={"message": "x"}, wait=1)
    await sb.client.models.predictions.async_create(model="sandbox/sleep", input={"seconds": 30})
    stats = await sb.stats()
    expected = {
        "created": 5,
        "succeeded": 3,
        "failed": 1,
        "in_flight": 1,
        "canceled": 0,
        "duplicate_inputs": 1,
        "max_creates_per_60s": 5,
        "throttled": 0,
        "server_errors": 0,
        "slow": 0,
        "lost_creates": 0,
        "webhooks_sent": 0,
        "webhooks_failed": 0,
    }
    assert {key: stats[key] for key in expected} == expected
    assert stats["requests"] >= 5
    assert stats["polls"] == stats["requests"] - 5


async def test_duplicate_inputs_ignore_key_order_but_not_model(sb: InProcess) -> None:
    for model, inp in (
        ("sandbox/echo", {"a": 1, "b": 2}),
        ("sandbox/echo", {"b": 2, "a": 1}),
        ("sandbox/other", {"a": 1, "b": 2}),
        ("sandbox/echo", {"a": 1, "b": 3}),
    ):
        response = await sb.http.post(f"/v1/models/{model}/predictions", json={"input": inp})
        assert response.status_code == 201
    assert (await sb.stats())["duplicate_inputs"] == 1


async def test_reset_clears_predictions_stats_and_queue(sb: InProcess) -> None:
    created = (await _create_raw(sb)).json()
    await sb.faults(error_rate=0.5, queue=[{"on": "create", "fault": "throttle"}])
    assert (await sb.http.post("/sandbox/reset")).status_code == 200
    stats = await sb.stats()
    assert (stats["created"], stats["requests"]) == (0, 0)
    settings = (await sb.http.get("/sandbox/faults")).json()
    assert (settings["queue"], settings["error_rate"]) == ([], 0.5)
    await sb.faults(error_rate=0.0)
    assert (await sb.http.get(f"/v1/predictions/{created['id']}")).status_code == 404
