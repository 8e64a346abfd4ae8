"""What the replicate client's HTTP traffic says about the current attempt's prediction.

``async_run`` never shows the prediction id, so the client's HTTP transport is wrapped by
``ObservingTransport``: it reads every prediction response of the current attempt (a ContextVar,
``watching``, says which attempt), and hands the id of a create to the job *before* the client
itself sees the response, so the job can store it right then. It also records the last status and
prediction seen (``async_run`` returns None for a canceled prediction instead of raising),
``Retry-After`` on 429s (``ReplicateError`` drops the headers), and when a create went out; and it
passes every prediction response on to the attempt (its phase, progress and logs).

It adds what the 1.0.7 client cannot: every create carries ``Cancel-After`` (the attempt's
deadline plus a margin, so Replicate stops a prediction no worker is left to cancel), and an
``aborted`` prediction (its deadline passed before it started) reaches the client as
``canceled``: 1.0.7 can neither parse ``aborted`` nor knows it is final (it would poll forever).
The watch keeps the true status. Every request first waits for its slot in the shared rate limit
(worker/ratelimit.py), and a 429 pauses that budget for every worker.
"""

from __future__ import annotations

import contextvars
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import structlog

from producer import clock
from worker.config import Kind
from worker.metrics import Metrics
from worker.ratelimit import RateLimiter

log = structlog.get_logger(__name__)

_CREATE_PATH = re.compile(r"/v1/(?:predictions|(?:models|deployments)/[^/]+/[^/]+/predictions)$")
_PREDICTION_PATH = re.compile(r"/v1/predictions/[^/]+(?:/cancel)?$")
FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
#: Replicate's shortest ``Cancel-After``.
MIN_CANCEL_AFTER_S = 5

OnCreated = Callable[[str], Awaitable[None]]
OnUpdate = Callable[[dict[str, Any]], Awaitable[None]]
OnRateWait = Callable[[float], Awaitable[None]]


async def _ignore(_: Any) -> None:
    pass


@dataclass
class PredictionWatch:
    """One attempt's view of its prediction, filled in by ObservingTransport as responses arrive."""

    on_created: OnCreated
    #: Every later response about the prediction (polls, the cancel's answer).
    on_update: OnUpdate = _ignore
    #: Its create waits this long for a slot in the shared budget.
    on_rate_wait: OnRateWait = _ignore
    prediction_id: str | None = None
    #: The last status seen, as Replicate said it (``aborted`` included).
    status: str | None = None
    #: Seconds Replicate asked us to wait on its last 429, if it said.
    retry_after_s: float | None = None
    #: When this attempt last sent a create (ISO, UTC): where to look if its answer is lost.
    create_sent_at: str | None = None
    #: Whether a create request is on the wire right now.
    creating: bool = False
    #: Seconds after which Replicate is to stop the prediction (the create's Cancel-After).
    cancel_after_s: float | None = None
    last: dict[str, Any] = field(default_factory=dict)


def stopped_by_deadline(prediction: dict[str, Any]) -> bool:
    """Whether the prediction ended ``canceled`` at its ``Cancel-After`` deadline (not by a
    user), from its JSON."""
    if prediction.get("status") != "canceled":
        return False
    deadline = _instant(prediction.get("deadline"))
    ended = _instant(prediction.get("completed_at"))
    return deadline is not None and ended is not None and ended >= deadline


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


_current_watch: contextvars.ContextVar[PredictionWatch | None] = contextvars.ContextVar(
    "predq_prediction_watch", default=None
)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None if absent or not a number."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _prefer_wait_s(prefer: str | None) -> int:
    """N from a ``Prefer: wait=N`` header (60 for a bare ``wait``), else 0."""
    if not prefer or not prefer.startswith("wait"):
        return 0
    _, _, value = prefer.partition("=")
    return int(value) if value.isdigit() else 60


def request_kind(request: httpx.Request) -> str:
    """What a request to Replicate is, for the metrics: create, get, cancel, list, stream..."""
    path = request.url.path
    if request.method == "POST" and _CREATE_PATH.search(path):
        return "create"
    if _PREDICTION_PATH.search(path):
        return "cancel" if path.endswith("/cancel") else "get"
    if path.endswith("/v1/predictions"):
        return "list"
    return "stream" if "/streams/" in path else "other"


def cancel_after(seconds: float) -> str:
    """A ``Cancel-After`` value: whole seconds, at least Replicate's minimum."""
    return f"{max(MIN_CANCEL_AFTER_S, math.ceil(seconds))}s"


class ObservingTransport(httpx.AsyncBaseTransport):
    """Wraps the real transport; reports prediction responses to the current PredictionWatch."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        create_timeout_s: float,
        limiter: RateLimiter | None = None,
        throttle_pause_s: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._inner = inner
        self._metrics = metrics
        self._create_timeout_s = create_timeout_s
        self._create_timeout = httpx.Timeout(create_timeout_s).as_dict()
        self._limiter = limiter
        self._throttle_pause_s = throttle_pause_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        is_create = request.method == "POST" and _CREATE_PATH.search(path) is not None
        watch = _current_watch.get()
        kind: Kind = "create" if is_create else "other"
        if self._limiter is not None:
            waits = watch.on_rate_wait if is_create and watch is not None else None
            waited_s = await self._limiter.acquire(kind, waits)
            if waited_s and self._metrics is not None:
                self._metrics.waited(kind, waited_s)
        if is_create:
            self._prepare_create(request, watch)
        if is_create and watch is not None:
            watch.create_sent_at = clock.now().isoformat()  # after any wait for a rate slot
            watch.creating = True
            try:
                response = await self._inner.handle_async_request(request)
            finally:
                watch.creating = False
        else:
            response = await self._inner.handle_async_request(request)
        if self._metrics is not None:
            self._metrics.request(request_kind(request), response.status_code)
        if response.status_code == 429:
            await self._throttled(response, kind, watch)
        if not (is_create or _PREDICTION_PATH.search(path)) or response.status_code >= 300:
            return response
        await response.aread()
        data = _prediction(response.content)
        if data is None:
            return response
        if watch is not None:
            await self._observe(watch, data, is_create=is_create)
        if data.get("status") == "aborted":  # never shown to the client (see the docstring)
            return _as_canceled(request, response, data)
        return response

    def _prepare_create(self, request: httpx.Request, watch: PredictionWatch | None) -> None:
        # The replicate client sends creates with no timeout at all; a create held by
        # ``Prefer: wait=N`` needs N seconds more than the plain create timeout.
        held_s = _prefer_wait_s(request.headers.get("prefer"))
        request.extensions["timeout"] = (
            self._create_timeout
            if not held_s
            else httpx.Timeout(self._create_timeout_s + held_s).as_dict()
        )
        if watch is not None and watch.cancel_after_s is not None:
            request.headers["Cancel-After"] = cancel_after(watch.cancel_after_s)

    async def _throttled(
        self, response: httpx.Response, kind: Kind, watch: PredictionWatch | None
    ) -> None:
        retry_after_s = parse_retry_after(response.headers.get("retry-after"))
        if watch is not None:
            watch.retry_after_s = retry_after_s
        if self._limiter is not None:
            # Retry-After: 0 means "now": no pause (0.0 is falsy, hence the explicit None).
            pause_s = self._throttle_pause_s if retry_after_s is None else retry_after_s
            await self._limiter.pause(kind, pause_s)

    async def _observe(
        self, watch: PredictionWatch, data: dict[str, Any], *, is_create: bool
    ) -> None:
        watch.last = data
        watch.status = data.get("status")
        if not (is_create and watch.prediction_id is None):
            await watch.on_update(data)
            return
        watch.prediction_id = data["id"]
        if watch.status in FINAL_STATUSES:
            # A held create that came back finished: nothing will wait on this prediction,
            # and the attempt stores its id with the outcome (one Redis call saved per job).
            return
        try:
            await watch.on_created(data["id"])
        except Exception:
            # Keep going: the attempt still knows the id and stores it with its outcome.
            log.warning("prediction.id_not_stored", prediction_id=data["id"], exc_info=True)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _prediction(body: bytes) -> dict[str, Any] | None:
    """A prediction's JSON, or None if ``body`` is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return None
    return data


def _as_canceled(
    request: httpx.Request, response: httpx.Response, data: dict[str, Any]
) -> httpx.Response:
    """The response with ``status: canceled`` for the client (the watch keeps ``aborted``)."""
    body = json.dumps({**data, "status": "canceled"}).encode()
    dropped = {"content-length", "content-encoding", "transfer-encoding"}
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in dropped]
    return httpx.Response(response.status_code, headers=headers, content=body, request=request)


@contextmanager
def watching(watch: PredictionWatch) -> Iterator[None]:
    """Report the prediction responses of requests made inside this block to ``watch``."""
    token = _current_watch.set(watch)
    try:
        yield
    finally:
        _current_watch.reset(token)
