"""The real replicate 1.0.7 client against an in-process sandbox (httpx.ASGITransport)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time

import pytest
from replicate.exceptions import ModelError, ReplicateError
from replicate.version import Versions

from devkit.wait import eventually
from sandbox import SandboxConfig
from sandbox.models import DEFAULT_FAIL_MESSAGE, version_id
from tests.sandbox.conftest import InProcess, MakeSandbox

ID_PATTERN = re.compile(r"^[a-z2-7]{26}$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_async_run_echo_returns_input(sb: InProcess) -> None:
    output = await sb.client.async_run("sandbox/echo", input={"prompt": "hi", "n": 3})
    assert output == {"prompt": "hi", "n": 3}


async def test_unknown_model_behaves_like_echo(sb: InProcess) -> None:
    assert await sb.client.async_run("someone/anything", input={"x": [1, 2]}) == {"x": [1, 2]}


async def test_async_run_by_version_ref_gets_the_version_and_runs_that_model(
    sb: InProcess,
) -> None:
    ref = f"sandbox/fail:{version_id('sandbox/fail')}"
    with pytest.raises(ModelError) as caught:
        await sb.client.async_run(ref, input={"message": "no GPU for you"}, wait=False)
    assert str(caught.value) == "no GPU for you"
    prediction = caught.value.prediction
    assert prediction.status == "failed"
    assert prediction.version == version_id("sandbox/fail")
    assert "RuntimeError: no GPU for you" in (prediction.logs or "")
    versions = Versions(sb.client, model="sandbox/fail")
    version = await versions.async_get(version_id("sandbox/fail"))
    assert version.cog_version == "0.9.4"
    assert version.openapi_schema["components"]["schemas"]["Output"].get("type") != "array"


async def test_an_unknown_version_is_refused_like_replicate_does(sb: InProcess) -> None:
    for ref in ("acme/thing:deadbeef", "sandbox/echo:" + "0" * 64):
        with pytest.raises(ReplicateError) as caught:
            await sb.client.async_run(ref, input={"k": "v"})
        assert caught.value.status == 422
        assert caught.value.title == "Invalid version or not permitted"
    with pytest.raises(ReplicateError) as bare:
        await sb.client.predictions.async_create(version="deadbeef", input={})
    assert bare.value.status == 422
    assert (await sb.stats())["created"] == 0
    assert (await sb.http.get("/v1/models/acme/thing/versions/deadbeef")).status_code == 404


async def test_version_body_may_name_the_model(sb: InProcess) -> None:
    prediction = await sb.client.predictions.async_create(
        version="sandbox/sleep", input={"seconds": 0}
    )
    assert (prediction.model, prediction.version) == ("sandbox/sleep", version_id("sandbox/sleep"))


async def test_the_calls_the_official_clients_make_for_models_and_the_account(
    sb: InProcess,
) -> None:
    model = await sb.client.models.async_get("acme/thing")
    assert (model.owner, model.name) == ("acme", "thing")
    assert model.latest_version is not None
    assert model.latest_version.id == version_id("acme/thing")
    versions = await model.versions.async_list()
    assert [v.id for v in versions.results] == [version_id("acme/thing")]
    listed = await sb.client.models.async_list()
    assert "sandbox/image" in {f"{m.owner}/{m.name}" for m in listed.results}
    account = await sb.client.accounts.async_current()
    assert account.username == "sandbox"


async def test_fail_model_default_message(sb: InProcess) -> None:
    with pytest.raises(ModelError, match="as asked"):
        await sb.client.async_run("sandbox/fail", input={})
    assert DEFAULT_FAIL_MESSAGE.endswith("(as asked)")


async def test_sleep_runs_for_input_seconds(sb: InProcess) -> None:
    started = time.monotonic()
    output = await sb.client.async_run("sandbox/sleep", input={"seconds": 0.3}, wait=False)
    assert time.monotonic() - started >= 0.3
    assert output == {"seconds": 0.3}


async def test_image_outputs_are_served_pngs(sb: InProcess) -> None:
    urls = await sb.client.async_run("sandbox/image", input={"num_outputs": 3}, wait=False)
    assert isinstance(urls, list)
    assert len(urls) == 3
    for index, url in enumerate(urls):
        assert url.startswith("http://sandbox/sandbox/files/")
        assert url.endswith(f"/{index}.png")
        response = await sb.http.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    missing = await sb.http.get(urls[0].replace("/0.png", "/3.png"))
    assert missing.status_code == 404


async def test_sync_mode_returns_files_as_data_uris_and_polls_return_urls(sb: InProcess) -> None:
    files = await sb.client.async_run("sandbox/image", input={"num_outputs": 2})  # Prefer: wait
    assert [str(f)[:22] for f in files] == ["data:image/png;base64,"] * 2
    inline = [await f.aread() for f in files]
    prediction = (await sb.client.predictions.async_list()).results[0]
    served = [(await sb.http.get(url)).content for url in prediction.output]
    assert inline == served
    assert inline[0] != inline[1]  # each image has bytes of its own


async def test_outputs_are_removed_after_the_output_ttl(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.01, output_ttl_s=0.3))
    prediction = await sb.client.predictions.async_create(
        version="sandbox/image", input={"num_outputs": 1}
    )
    await eventually(
        lambda: sb.state.store.get(prediction.id).status_at(time.time()) == "succeeded"
    )
    url = (await sb.http.get(f"/v1/predictions/{prediction.id}")).json()["output"][0]
    assert (await sb.http.get(url)).status_code == 200

    async def removed() -> bool:
        return (await sb.http.get(url)).status_code == 404

    await eventually(removed, timeout_s=5)
    raw = (await sb.http.get(f"/v1/predictions/{prediction.id}")).json()
    assert (raw["status"], raw["output"], raw["data_removed"], raw["logs"]) == (
        "succeeded",
        None,
        True,
        "",
    )


async def test_prediction_json_shape(sb: InProcess) -> None:
    created = await sb.client.models.predictions.async_create(
        model="sandbox/sleep", input={"seconds": 30}
    )
    assert created.status == "starting"
    assert ID_PATTERN.match(created.id)
    assert created.urls is not None
    assert created.urls["get"] == f"http://sandbox/v1/predictions/{created.id}"
    assert created.urls["cancel"] == f"http://sandbox/v1/predictions/{created.id}/cancel"
    raw = (await sb.http.get(f"/v1/predictions/{created.id}")).json()
    assert raw["status"] in {"starting", "processing"}
    assert (raw["output"], raw["error"], raw["completed_at"]) == (None, None, None)
    assert raw["data_removed"] is False
    assert raw["source"] == "api"
    assert "metrics" not in raw


async def test_prediction_lifecycle_to_succeeded(sb: InProcess) -> None:
    created = await sb.client.models.predictions.async_create(
        model="sandbox/sleep", input={"seconds": 0.5}
    )
    done = await sb.client.predictions.async_get(created.id)
    await done.async_wait()
    assert done.status == "succeeded"
    assert done.output == {"seconds": 0.5}
    assert done.metrics is not None
    assert done.metrics["total_time"] == pytest.approx(0.5, abs=0.01)
    assert 0 < done.metrics["predict_time"] <= done.metrics["total_time"]
    for stamp in (done.created_at, done.started_at, done.completed_at):
        assert stamp is not None
        assert ISO_Z.match(stamp)
    assert done.created_at <= done.started_at <= done.completed_at


async def test_cancel_running_prediction(sb: InProcess) -> None:
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/sleep", input={"seconds": 30}
    )
    canceled = await sb.client.predictions.async_cancel(prediction.id)
    assert canceled.status == "canceled"
    assert canceled.completed_at is not None
    again = await sb.client.predictions.async_get(prediction.id)
    assert again.status == "canceled"
    assert (await sb.client.predictions.async_cancel(prediction.id)).status == "canceled"
    stats = await sb.stats()
    assert (stats["canceled"], stats["in_flight"]) == (1, 0)


async def test_cancel_terminal_prediction_leaves_it_unchanged(sb: InProcess) -> None:
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/echo", input={"a": 1}, wait=True
    )
    assert prediction.status == "succeeded"
    after = await sb.client.predictions.async_cancel(prediction.id)
    assert after.status == "succeeded"
    assert after.output == {"a": 1}
    assert (await sb.stats())["canceled"] == 0


async def test_async_run_returns_for_canceled_prediction(sb: InProcess) -> None:
    run = asyncio.create_task(
        sb.client.async_run("sandbox/sleep", input={"seconds": 30}, wait=False)
    )

    async def created() -> bool:
        return (await sb.stats())["created"] == 1

    await eventually(created)
    prediction = (await sb.client.predictions.async_list()).results[0]
    await sb.client.predictions.async_cancel(prediction.id)
    assert await asyncio.wait_for(run, 5) is None
    assert (await sb.client.predictions.async_get(prediction.id)).status == "canceled"


async def test_prefer_wait_returns_terminal_prediction(sb: InProcess) -> None:
    response = await sb.http.post(
        "/v1/models/sandbox/echo/predictions", json={"input": {"q": 1}}, headers={"Prefer": "wait"}
    )
    assert response.status_code == 201
    assert response.headers["preference-applied"] == "wait"
    body = response.json()
    assert (body["status"], body["output"]) == ("succeeded", {"q": 1})


async def test_prefer_wait_times_out_as_starting(sb: InProcess) -> None:
    started = time.monotonic()
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/sleep", input={"seconds": 3}, wait=1
    )
    assert 0.9 <= time.monotonic() - started < 2.5
    assert prediction.status == "starting"
    assert prediction.output is None


async def test_wait_returns_processing_option(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox(SandboxConfig(latency_s=0.05, wait_returns_processing=True))
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/sleep", input={"seconds": 3}, wait=1
    )
    assert prediction.status == "processing"


async def test_without_prefer_create_answers_starting_at_once(sb: InProcess) -> None:
    started = time.monotonic()
    prediction = await sb.client.models.predictions.async_create(
        model="sandbox/sleep", input={"seconds": 5}
    )
    assert time.monotonic() - started < 2.5
    assert prediction.status == "starting"
    response = await sb.http.post("/v1/predictions", json={"version": "x", "input": {}})
    assert "preference-applied" not in response.headers


async def test_prefer_wait_ends_early_on_cancel(sb: InProcess) -> None:
    held = asyncio.create_task(
        sb.client.models.predictions.async_create(
            model="sandbox/sleep", input={"seconds": 30}, wait=20
        )
    )

    async def created() -> bool:
        return (await sb.stats())["created"] == 1

    await eventually(created)
    listed = (await sb.client.predictions.async_list()).results[0]
    await sb.client.predictions.async_cancel(listed.id)
    prediction = await asyncio.wait_for(held, 5)
    assert prediction.status == "canceled"


async def test_deployment_create(sb: InProcess) -> None:
    prediction = await sb.client.deployments.predictions.async_create(
        deployment="sandbox/echo", input={"d": 1}, wait=True
    )
    assert prediction.status == "succeeded"
    raw = (await sb.http.get(f"/v1/predictions/{prediction.id}")).json()
    assert raw["deployment"] == "sandbox/echo"


async def test_list_pagination_newest_first(sb: InProcess) -> None:
    ids = []
    for index in range(205):
        prediction = await sb.client.models.predictions.async_create(
            model="sandbox/echo", input={"i": index}
        )
        ids.append(prediction.id)
    first = await sb.client.predictions.async_list()
    assert [p.id for p in first.results] == ids[::-1][:100]
    assert first.previous is None
    assert first.next is not None
    assert first.next.startswith("http://sandbox/v1/predictions?")
    second = await sb.client.predictions.async_list(first.next)
    assert [p.id for p in second.results] == ids[::-1][100:200]
    third = await sb.client.predictions.async_list(second.next)
    assert [p.id for p in third.results] == ids[::-1][200:]
    assert third.next is None
    assert third.previous is not None
    back = await sb.client.predictions.async_list(third.previous)
    assert [p.id for p in back.results] == [p.id for p in second.results]


async def test_list_created_after_and_before(sb: InProcess) -> None:
    early = await sb.client.models.predictions.async_create(model="sandbox/echo", input={})
    late = await sb.client.models.predictions.async_create(model="sandbox/echo", input={"b": 1})
    assert early.created_at is not None
    cut = dt.datetime.fromisoformat(early.created_at)
    after = (await sb.http.get("/v1/predictions", params={"created_after": cut.isoformat()})).json()
    assert [p["id"] for p in after["results"]] == [late.id]
    before_late = (
        await sb.http.get("/v1/predictions", params={"created_before": late.created_at})
    ).json()
    assert [p["id"] for p in before_late["results"]] == [early.id]
    bad = await sb.http.get("/v1/predictions", params={"created_after": "yesterday"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"


async def test_list_filter_is_kept_in_next_url(sb: InProcess) -> None:
    for index in range(101):
        await sb.client.models.predictions.async_create(model="sandbox/echo", input={"i": index})
    page = (
        await sb.http.get("/v1/predictions", params={"created_after": "2000-01-01T00:00:00Z"})
    ).json()
    assert "created_after=2000-01-01T00%3A00%3A00Z" in page["next"]
    rest = (await sb.http.get(page["next"])).json()
    assert len(rest["results"]) == 1
    assert rest["results"][0]["input"] == {"i": 0}


async def test_invalid_input_is_422_with_invalid_fields(sb: InProcess) -> None:
    with pytest.raises(ReplicateError) as caught:
        await sb.client.async_run("sandbox/sleep", input={"seconds": "soon"})
    assert caught.value.status == 422
    assert caught.value.title == "Input validation failed"
    response = await sb.http.post("/v1/models/sandbox/sleep/predictions", json={"input": {}})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["invalid_fields"] == [
        {"type": "required", "field": "input", "description": "seconds is required"}
    ]
    for body in ({"input": "text"}, {"nope": 1}, [1]):
        bad = await sb.http.post("/v1/models/sandbox/echo/predictions", json=body)
        assert bad.status_code == 422
        assert bad.json()["invalid_fields"][0]["field"] in {"input", "body"}
    not_json = await sb.http.post("/v1/models/sandbox/echo/predictions", content=b"{nope")
    assert not_json.status_code == 422
    assert (await sb.stats())["created"] == 0


@pytest.mark.parametrize(
    ("model", "inp", "field"),
    [
        ("sandbox/sleep", {"seconds": 3601}, "input.seconds"),
        ("sandbox/sleep", {"seconds": True}, "input.seconds"),
        ("sandbox/image", {"num_outputs": 5}, "input.num_outputs"),
    ],
)
async def test_model_input_ranges(
    sb: InProcess, model: str, inp: dict[str, object], field: str
) -> None:
    response = await sb.http.post(f"/v1/models/{model}/predictions", json={"input": inp})
    assert response.status_code == 422
    assert response.json()["invalid_fields"][0]["field"] == field


async def test_missing_version_and_bad_prefer_are_422(sb: InProcess) -> None:
    no_version = await sb.http.post("/v1/predictions", json={"input": {}})
    assert no_version.status_code == 422
    bad_wait = await sb.http.post(
        "/v1/models/sandbox/echo/predictions", json={"input": {}}, headers={"Prefer": "wait=61"}
    )
    assert bad_wait.status_code == 422


async def test_unknown_prediction_is_404(sb: InProcess) -> None:
    with pytest.raises(ReplicateError) as caught:
        await sb.client.predictions.async_get("nosuchpredictionxxxxxxxxxx")
    assert caught.value.status == 404
    cancel = await sb.http.post("/v1/predictions/nosuch/cancel")
    assert cancel.status_code == 404
    assert cancel.headers["content-type"] == "application/problem+json"


async def test_unknown_path_is_problem_404(sb: InProcess) -> None:
    response = await sb.http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["status"] == 404


async def test_wrong_token_is_401_and_right_token_works(make_sandbox: MakeSandbox) -> None:
    config = SandboxConfig(latency_s=0.05, token="s3cret")
    good = await make_sandbox(config, token="s3cret")
    assert await good.client.async_run("sandbox/echo", input={"a": 1}) == {"a": 1}
    bad = await make_sandbox(config, token="wrong")
    with pytest.raises(ReplicateError) as caught:
        await bad.client.async_run("sandbox/echo", input={"a": 1})
    assert caught.value.status == 401
    assert caught.value.title == "Unauthenticated"
    assert "s3cret" not in (caught.value.detail or "")
    anonymous = await make_sandbox(config, token=None)
    assert (await anonymous.http.get("/v1/predictions")).status_code == 401
    assert (await anonymous.http.get("/sandbox/stats")).status_code == 200


async def test_token_is_not_in_config_repr() -> None:
    assert "s3cret" not in repr(SandboxConfig(token="s3cret"))
