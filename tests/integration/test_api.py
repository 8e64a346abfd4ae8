"""The HTTP API over real HTTP (``predq serve``) against real workers: every route, each error
code as a problem, both key roles."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest

from devkit.launch import ApiProcess
from tests.integration.conftest import API_FULL_KEY, API_READ_KEY, Sandbox, Workers

pytestmark = pytest.mark.integration


@pytest.fixture
def full(api: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {API_FULL_KEY}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def read(api: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers={"X-API-Key": API_READ_KEY}, timeout=30) as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status
    return body


def test_enqueue_wait_list_and_files(
    full: httpx.Client, read: httpx.Client, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    created = full.post("/v1/jobs", json={"model": "sandbox/image", "input": {"num_outputs": 1},
                                          "idempotency_key": "api-order-1"})  # fmt: skip
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["state"] == "queued"
    done = read.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    assert done["state"] == "succeeded"
    [file] = done["files"]
    body = read.get(f"/v1/jobs/{job['id']}/files/0")
    assert body.status_code == 200
    assert body.headers["content-type"] == "image/png"
    assert hashlib.sha256(body.content).hexdigest() == file["sha256"]
    page = read.get("/v1/jobs", params={"state": "succeeded", "model": "sandbox/image"}).json()
    assert [j["id"] for j in page["jobs"]] == [job["id"]]
    by_key = read.get("/v1/jobs", params={"idempotency_key": "api-order-1"}).json()
    assert [j["id"] for j in by_key["jobs"]] == [job["id"]]
    by_prediction = read.get("/v1/jobs", params={"prediction_id": done["prediction_id"]}).json()
    assert [j["id"] for j in by_prediction["jobs"]] == [job["id"]]
    batch = full.post("/v1/jobs", json={"jobs": [{"model": "sandbox/echo", "input": {"n": n}}
                                                 for n in range(3)]})  # fmt: skip
    assert batch.status_code == 201
    ids = [j["id"] for j in batch.json()["jobs"]]
    finals = [read.get(f"/v1/jobs/{i}", params={"wait": 30}).json() for i in ids]
    assert [f["output"] for f in finals] == [{"n": n} for n in range(3)]
    stats = read.get("/v1/stats").json()
    assert stats["jobs"]["succeeded"] == 4
    assert [w["alive"] for w in read.get("/v1/workers").json()] == [True]


def test_events_cancel_and_retry(
    full: httpx.Client, read: httpx.Client, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    job = full.post("/v1/jobs", json={"model": "sandbox/llm", "stream": True,
                                      "input": {"max_tokens": 10}}).json()  # fmt: skip
    events = []
    with read.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    final = events[-1]
    assert final[0] == "final"
    tokens = [data["output"] for kind, data in events if kind == "output"]
    assert tokens == final[1]["record"]["output"]

    long = full.post("/v1/jobs", json={"model": "sandbox/sleep", "input": {"seconds": 60}}).json()
    canceled = full.post(f"/v1/jobs/{long['id']}/cancel")
    assert canceled.json()["state"] == "canceled"
    failing = full.post("/v1/jobs", json={"model": "sandbox/fail", "input": {}}).json()
    assert read.get(f"/v1/jobs/{failing['id']}", params={"wait": 30}).json()["state"] == "failed"
    retried = full.post(f"/v1/jobs/{failing['id']}/retry")
    assert retried.status_code == 200
    assert retried.json()["state"] == "queued"
    problem(full.post(f"/v1/jobs/{long['id']}/retry"), 409)


def test_keys_and_roles(api: ApiProcess, read: httpx.Client) -> None:
    with httpx.Client(base_url=api.url) as anonymous:
        problem(anonymous.get("/v1/jobs"), 401)
        problem(anonymous.get("/v1/jobs", headers={"Authorization": "Bearer wrong-key-12345"}), 401)
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").json() == {"status": "ok", "redis": "ok"}
    problem(read.post("/v1/jobs", json={"model": "o/n", "input": {}}), 403)
    problem(read.post("/v1/jobs/x/cancel"), 403)
    assert read.get("/v1/jobs").status_code == 200
    api_log = api.log_path.read_text()
    assert API_READ_KEY not in api_log
    assert API_FULL_KEY not in api_log


def test_errors_are_problems_with_the_producers_meaning(
    full: httpx.Client, read: httpx.Client
) -> None:
    problem(full.post("/v1/jobs", json={"model": "not a ref", "input": {}}), 422)
    big = {"model": "o/n", "input": {"prompt": "x" * 300_000}}
    assert "limit" in str(problem(full.post("/v1/jobs", json=big), 413)["detail"])
    problem(read.get("/v1/jobs/no-such-job"), 404)
    problem(read.get("/v1/jobs/no-such-job/files/0"), 404)
    problem(read.get("/v1/jobs", params={"cursor": "garbage!"}), 422)
    not_json = full.post("/v1/jobs", content=b"{x", headers={"content-type": "application/json"})
    assert problem(not_json, 422)["detail"] == "the request body is not valid JSON"
    huge = b'{"model": "o/n", "input": {"p": "' + b"x" * 9_000_000 + b'"}}'
    problem(full.post("/v1/jobs", content=huge, headers={"content-type": "application/json"}), 413)
    refused = full.post("/v1/jobs", json={"model": "o/n", "input": {},
                                          "callback_url": "http://169.254.169.254/latest"})  # fmt: skip
    assert problem(refused, 422)["detail"]


def test_redis_down_is_a_503_with_retry_after(tmp_path: object) -> None:
    from pathlib import Path

    from devkit.launch import clean_env, free_port

    env = {**clean_env(), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "PREDQ_API_KEYS": API_FULL_KEY, "PREDQ_REDIS_TIMEOUT_S": "1"}  # fmt: skip
    server = ApiProcess(env, Path(str(tmp_path)) / "api.log")
    try:
        headers = {"Authorization": f"Bearer {API_FULL_KEY}"}
        response = httpx.get(f"{server.url}/v1/jobs/x", headers=headers, timeout=30)
        body = problem(response, 503)
        assert response.headers["retry-after"] == "5"
        assert "connection refused" in str(body["detail"])
        assert httpx.get(f"{server.url}/readyz").status_code == 503
    finally:
        server.stop()
