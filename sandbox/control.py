"""The `/sandbox/*` control routes (not part of Replicate's API): never faulted, limited or
authenticated, and not counted in `requests`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sandbox import responses
from sandbox.config import FAULT_KINDS, TUNABLE_FIELDS, ConfigError, SandboxConfig
from sandbox.faults import QueuedFault
from sandbox.files import chunks, size_of
from sandbox.state import sandbox_of


def apply_fault_update(
    config: SandboxConfig, payload: object
) -> tuple[SandboxConfig, list[QueuedFault]]:
    """The config and queued faults a `POST /sandbox/faults` body asks for; nothing is applied
    unless the whole body is valid.

    Raises:
        ConfigError: not an object, an unknown key, or a value out of range.
    """
    if not isinstance(payload, Mapping):
        raise ConfigError("the body must be a JSON object")
    unknown = set(payload) - TUNABLE_FIELDS - {"queue"}
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}; allowed: {sorted(TUNABLE_FIELDS)}")
    changes: dict[str, Any] = {k: v for k, v in payload.items() if k in TUNABLE_FIELDS}
    if "fault_on" in changes:
        changes["fault_on"] = _fault_on(changes["fault_on"])
    if not isinstance(changes.get("wait_returns_processing", False), bool):
        raise ConfigError("wait_returns_processing must be true or false")
    if "boot_s" in changes and changes["boot_s"] is not None:
        changes["boot_s"] = float(changes["boot_s"])
    queue = payload.get("queue", [])
    if not isinstance(queue, list):
        raise ConfigError("queue must be a list of {on, fault} objects")
    items = [QueuedFault.parse(item) for item in queue]
    return dataclasses.replace(config, **changes), items


def _fault_on(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(kind, str) for kind in value):
        raise ConfigError(f"fault_on must be a list, a subset of {sorted(FAULT_KINDS)}")
    return frozenset(value)


def _settings(request: Request) -> dict[str, Any]:
    sandbox = sandbox_of(request)
    return {**sandbox.config.fault_settings(), "queue": sandbox.faults.pending()}


async def health(request: Request) -> Response:
    """`GET /sandbox/health`: `{"status": "ok"}` once the app serves requests."""
    return responses.json_response({"status": "ok"})


async def stats(request: Request) -> Response:
    """`GET /sandbox/stats`: every counter of `sandbox.store.Counters` plus `succeeded`,
    `failed` and `in_flight` computed now."""
    sandbox = sandbox_of(request)
    return responses.json_response(sandbox.store.stats(sandbox.clock()))


async def get_faults(request: Request) -> Response:
    """`GET /sandbox/faults`: the live settings and the queued one-shot faults."""
    return responses.json_response(_settings(request))


async def set_faults(request: Request) -> Response:
    """`POST /sandbox/faults`: change settings and/or append to the one-shot queue; answers
    the new settings, or 422 naming the bad setting (then nothing changed)."""
    sandbox = sandbox_of(request)
    try:
        payload = json.loads(await request.body())
        config, items = apply_fault_update(sandbox.config, payload)
    except (ValueError, TypeError) as exc:  # ConfigError is a ValueError, as is bad JSON
        return responses.problem(422, "Invalid fault settings", str(exc))
    sandbox.config = config
    sandbox.faults.enqueue(items)
    return responses.json_response(_settings(request))


async def reset(request: Request) -> Response:
    """`POST /sandbox/reset`: forget predictions, counters and queued faults (settings stay)."""
    sandbox_of(request).reset()
    return responses.json_response({"status": "reset"})


async def output_file(request: Request) -> Response:
    """`GET /sandbox/files/{prediction_id}/{name}`: an output file of a succeeded prediction,
    streamed, until its output TTL runs out; else 404. Like Replicate's file host it needs no
    token; faults of kind `file` apply."""
    sandbox = sandbox_of(request)
    prediction = sandbox.store.get(request.path_params["prediction_id"])
    file = prediction.run.file(request.path_params["name"]) if prediction is not None else None
    now_s = sandbox.clock()
    if (
        prediction is None
        or file is None
        or prediction.status_at(now_s) != "succeeded"
        or prediction.data_removed_at(now_s, sandbox.config.output_ttl_s)
    ):
        return responses.not_found("No such output file.")
    faulted = await sandbox.gate_file()
    if isinstance(faulted, Response):
        return faulted
    sandbox.store.counters.file_downloads += 1
    response = StreamingResponse(
        iterate_in_threadpool(chunks(file)),
        media_type=file.content_type,
        headers={"Content-Length": str(size_of(file))},
    )
    return await sandbox.finish(faulted, response)


ROUTES = (
    Route("/sandbox/health", health, methods=["GET"]),
    Route("/sandbox/stats", stats, methods=["GET"]),
    Route("/sandbox/faults", get_faults, methods=["GET"]),
    Route("/sandbox/faults", set_faults, methods=["POST"]),
    Route("/sandbox/reset", reset, methods=["POST"]),
    Route("/sandbox/files/{prediction_id}/{name}", output_file, methods=["GET"]),
)
