"""The Replicate-compatible `/v1` routes (see the `sandbox` package docstring for the contract).

Each handler asks `Sandbox.gate` first (auth, rate limits, faults), does its small piece of work,
and hands its response to `Sandbox.finish` (slow and lost faults).
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import responses
from sandbox.clock import parse_iso8601
from sandbox.faults import Decision
from sandbox.models import MODELS, InvalidInput, model_json, version_id, version_json
from sandbox.parsing import (
    InvalidRequest,
    InvalidVersion,
    parse_cancel_after,
    parse_create_body,
    parse_prefer_wait,
    resolve_version,
)
from sandbox.prediction import Prediction
from sandbox.state import Sandbox, sandbox_of


async def create_model_prediction(request: Request) -> Response:
    """`POST /v1/models/{owner}/{name}/predictions`."""
    model = f"{request.path_params['owner']}/{request.path_params['name']}"
    return await _create(request, target=(model, version_id(model)))


async def create_deployment_prediction(request: Request) -> Response:
    """`POST /v1/deployments/{owner}/{name}/predictions`: runs the model named like the
    deployment, and reports `deployment` in the prediction."""
    model = f"{request.path_params['owner']}/{request.path_params['name']}"
    return await _create(request, target=(model, version_id(model)), deployment=model)


async def create_prediction(request: Request) -> Response:
    """`POST /v1/predictions` with body `version`: an id, `owner/name` or `owner/name:id`."""
    return await _create(request, target=None)


async def _create(
    request: Request, *, target: tuple[str, str] | None, deployment: str | None = None
) -> Response:
    """Create a prediction of `target` (model, version id), or of the body's `version` if None."""
    sandbox = sandbox_of(request)
    decision = await sandbox.gate(request, "create")
    if isinstance(decision, Response):
        return decision
    try:
        wait_s = parse_prefer_wait(request.headers.get("prefer"))
        cancel_after_s = parse_cancel_after(request.headers.get("cancel-after"))
        body = parse_create_body(await request.body(), needs_version=target is None)
        model, version = target or resolve_version(body.version or "")
        prediction = sandbox.create(
            model=model,
            version=version,
            input=body.input,
            base_url=str(request.base_url),
            deployment=deployment,
            webhook=body.webhook,
            webhook_events=body.webhook_events,
            cancel_after_s=cancel_after_s,
        )
    except InvalidRequest as exc:
        return await _refuse(sandbox, decision, responses.invalid_input(exc.fields))
    except InvalidVersion:
        return await _refuse(sandbox, decision, responses.invalid_version())
    except InvalidInput as exc:
        field = {"type": exc.kind, "field": exc.field, "description": exc.description}
        return await _refuse(sandbox, decision, responses.invalid_input([field]))
    if wait_s is None:
        return await sandbox.finish(decision, _created(sandbox, prediction, "starting"))
    if await sandbox.wait_terminal(prediction, wait_s):
        shown = None
    else:
        status = prediction.status_at(sandbox.clock())
        processing = sandbox.config.wait_returns_processing and status == "processing"
        shown = "processing" if processing else "starting"
    return await sandbox.finish(decision, _created(sandbox, prediction, shown, waited=True))


def _created(
    sandbox: Sandbox, prediction: Prediction, status: str | None, *, waited: bool = False
) -> Response:
    """The create answer; a held create that finished gives its files as data URIs, as
    Replicate's sync mode does."""
    headers = {"Preference-Applied": "wait"} if waited else None
    body = sandbox.render(prediction, status, inline_files=waited and status is None)
    return responses.json_response(body, 201, headers)


async def _refuse(sandbox: Sandbox, decision: Decision, response: Response) -> Response:
    # Nothing was created, so there is no create to lose; a slow fault still applies.
    return await sandbox.finish(dataclasses.replace(decision, fault=None), response)


async def get_prediction(request: Request) -> Response:
    """`GET /v1/predictions/{id}`: the prediction now, or 404."""
    sandbox = sandbox_of(request)
    decision = await sandbox.gate(request, "get")
    if isinstance(decision, Response):
        return decision
    prediction = sandbox.store.get(request.path_params["id"])
    if prediction is None:
        return await sandbox.finish(decision, responses.not_found("Prediction not found."))
    body = sandbox.render(prediction)
    return await sandbox.finish(decision, responses.json_response(body))


async def cancel_prediction(request: Request) -> Response:
    """`POST /v1/predictions/{id}/cancel`: cancel if not terminal; 200 with the prediction."""
    sandbox = sandbox_of(request)
    decision = await sandbox.gate(request, "cancel")
    if isinstance(decision, Response):
        return decision
    prediction = sandbox.store.get(request.path_params["id"])
    if prediction is None:
        return await sandbox.finish(decision, responses.not_found("Prediction not found."))
    sandbox.cancel(prediction)
    body = sandbox.render(prediction)
    return await sandbox.finish(decision, responses.json_response(body))


async def list_predictions(request: Request) -> Response:
    """`GET /v1/predictions`: newest first, 100 per page, `cursor`, `created_after/before`."""
    sandbox = sandbox_of(request)
    decision = await sandbox.gate(request, "list")
    if isinstance(decision, Response):
        return decision
    query = request.query_params
    try:
        after_s = _time_param(query.get("created_after"))
        before_s = _time_param(query.get("created_before"))
        page = sandbox.store.page(query.get("cursor"), after_s, before_s)
    except ValueError as exc:
        return await sandbox.finish(decision, responses.problem(400, "Bad Request", str(exc)))
    body = {
        "previous": _page_url(request, page.previous_cursor),
        "next": _page_url(request, page.next_cursor),
        "results": [sandbox.render(prediction) for prediction in page.results],
    }
    return await sandbox.finish(decision, responses.json_response(body))


def _time_param(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_iso8601(value)
    except ValueError:
        raise ValueError(f"not an ISO-8601 date-time: {value!r}") from None


def _page_url(request: Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return str(request.url.include_query_params(cursor=cursor))


async def get_version(request: Request) -> Response:
    """`GET /v1/models/{owner}/{name}/versions/{id}`: the model's one version, else 404."""
    sandbox = sandbox_of(request)
    decision = await sandbox.gate(request, "other")
    if isinstance(decision, Response):
        return decision
    model = _model(request)
    if request.path_params["id"] != version_id(model):
        return responses.not_found("Version not found.")
    return responses.json_response(version_json(model))


async def list_versions(request: Request) -> Response:
    """`GET /v1/models/{owner}/{name}/versions`: one page with the model's one version."""
    decision = await sandbox_of(request).gate(request, "other")
    if isinstance(decision, Response):
        return decision
    page = {"previous": None, "next": None, "results": [version_json(_model(request))]}
    return responses.json_response(page)


async def get_model(request: Request) -> Response:
    """`GET /v1/models/{owner}/{name}`: any `owner/name` is a model of the sandbox."""
    decision = await sandbox_of(request).gate(request, "other")
    if isinstance(decision, Response):
        return decision
    return responses.json_response(model_json(_model(request), str(request.base_url)))


async def list_models(request: Request) -> Response:
    """`GET /v1/models`: the listed models (one page)."""
    decision = await sandbox_of(request).gate(request, "other")
    if isinstance(decision, Response):
        return decision
    results = [model_json(model, str(request.base_url)) for model in MODELS]
    return responses.json_response({"previous": None, "next": None, "results": results})


async def get_account(request: Request) -> Response:
    """`GET /v1/account`: who the token belongs to (a 401 for a wrong one, like every route)."""
    decision = await sandbox_of(request).gate(request, "other")
    if isinstance(decision, Response):
        return decision
    account = {"type": "organization", "username": "sandbox", "name": "predq sandbox",
               "github_url": None}  # fmt: skip
    return responses.json_response(account)


def _model(request: Request) -> str:
    return f"{request.path_params['owner']}/{request.path_params['name']}"


async def webhook_secret(request: Request) -> Response:
    """`GET /v1/webhooks/default/secret`: `{"key": "whsec_..."}`, fixed for the app's life."""
    sandbox = sandbox_of(request)
    decision = await sandbox.gate(request, "other")
    if isinstance(decision, Response):
        return decision
    return responses.json_response({"key": sandbox.webhooks.secret})


ROUTES = (
    Route("/v1/predictions", create_prediction, methods=["POST"]),
    Route("/v1/predictions", list_predictions, methods=["GET"]),
    Route("/v1/predictions/{id}", get_prediction, methods=["GET"]),
    Route("/v1/predictions/{id}/cancel", cancel_prediction, methods=["POST"]),
    Route("/v1/models/{owner}/{name}/predictions", create_model_prediction, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{owner}/{name}", get_model, methods=["GET"]),
    Route("/v1/models/{owner}/{name}/versions", list_versions, methods=["GET"]),
    Route("/v1/models/{owner}/{name}/versions/{id}", get_version, methods=["GET"]),
    Route("/v1/account", get_account, methods=["GET"]),
    Route(
        "/v1/deployments/{owner}/{name}/predictions",
        create_deployment_prediction,
        methods=["POST"],
    ),
    Route("/v1/webhooks/default/secret", webhook_secret, methods=["GET"]),
)
