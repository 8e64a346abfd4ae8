"""What the replicate client's HTTP traffic says about the current attempt's prediction.

``async_run`` never shows the prediction id, so the client's HTTP transport is wrapped by
``ObservingTransport``: it reads every prediction response of the current attempt (a ContextVar,
``watching``, says which attempt), and hands the id of a create to the job *before* the client
itself sees the response, so the job can store it right then. It also records the last status seen
(``async_run`` returns None for a canceled prediction instead of raising), the raw status
``aborted`` (which 1.0.7 cannot parse), ``Retry-After`` on 429s (``ReplicateError`` drops the
headers), and when a create went out. Every request first waits for its slot in the shared rate
limit (worker/ratelimit.py), and a 429 pauses that budget for every worker.
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from producer import clock
from worker.config import Kind
from worker.ratelimit import RateLimiter

log = structlog.get_logger(__name__)

_CREATE_PATH = re.compile(r"/v1/(?:predictions|(?:models|deployments)/[^/]+/[^/]+/predictions)$")
_PREDICTION_PATH = re.compile(r"/v1/predictions/[^/]+(?:/cancel)?$")
FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})

OnCreated = Callable[[str], Awaitable[None]]


@dataclass
class PredictionWatch:
    """One attempt's view of its prediction, filled in by ObservingTransport as responses arrive."""

    on_created: OnCreated
    prediction_id: str | None = None
    status: str | None = None
    #: Seconds Replicate asked us to wait on its last 429, if it said.
    retry_after_s: float | None = None
    #: When this attempt last sent a create (ISO, UTC): where to look if its answer is lost.
    create_sent_at: str | None = None
    #: Whether a create request is on the wire right now.
    creating: bool = False
    last: dict[str, Any] = field(default_factory=dict)


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


class ObservingTransport(httpx.AsyncBaseTransport):
    """Wraps the real transport; reports prediction responses to the current PredictionWatch."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        create_timeout_s: float,
        limiter: RateLimiter | None = None,
        throttle_pause_s: float = 5.0,
    ) -> None:
        self._inner = inner
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
            await self._limiter.acquire(kind)
        if is_create:
            # The replicate client sends creates with no timeout at all; a create held by
            # ``Prefer: wait=N`` needs N seconds more than the plain create timeout.
            held_s = _prefer_wait_s(request.headers.get("prefer"))
            request.extensions["timeout"] = (
                self._create_timeout
                if not held_s
                else httpx.Timeout(self._create_timeout_s + held_s).as_dict()
            )
        if is_create and watch is not None:
            watch.create_sent_at = clock.now().isoformat()  # after any wait for a rate slot
            watch.creating = True
            try:
                response = await self._inner.handle_async_request(request)
            finally:
                watch.creating = False
        else:
            response = await self._inner.handle_async_request(request)
        if response.status_code == 429:
            retry_after_s = parse_retry_after(response.headers.get("retry-after"))
            if watch is not None:
                watch.retry_after_s = retry_after_s
            if self._limiter is not None:
                # Retry-After: 0 means "now": no pause (0.0 is falsy, hence the explicit None).
                pause_s = self._throttle_pause_s if retry_after_s is None else retry_after_s
                await self._limiter.pause(kind, pause_s)
        if watch is None or not (is_create or _PREDICTION_PATH.search(path)):
            return response
        if 200 <= response.status_code < 300:
            await response.aread()
            await self._observe(watch, response.content, is_create=is_create)
        return response

    async def _observe(self, watch: PredictionWatch, body: bytes, *, is_create: bool) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return
        watch.last = data
        watch.status = data.get("status")
        if is_create and watch.prediction_id is None:
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


@contextmanager
def watching(watch: PredictionWatch) -> Iterator[None]:
    """Report the prediction responses of requests made inside this block to ``watch``."""
    token = _current_watch.set(watch)
    try:
        yield
    finally:
        _current_watch.reset(token)
