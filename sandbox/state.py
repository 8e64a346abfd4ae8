"""`Sandbox`: all state of one app (settings, predictions, counters, faults, limits, webhooks).

One instance hangs on `app.state.sandbox`; nothing is module-global, so several apps in one
process are independent. The route handlers in `sandbox.app` stay thin: they parse, call the
methods here, and render.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from typing import Any, Literal

import httpx
from starlette.requests import Request
from starlette.responses import Response

from sandbox import responses
from sandbox.clock import Clock, wall_clock
from sandbox.config import SandboxConfig
from sandbox.faults import NO_FAULT, Decision, Fault, FaultInjector
from sandbox.models import RunContext, lookup
from sandbox.prediction import Prediction, new_prediction_id
from sandbox.ratelimit import SlidingWindowLimiter
from sandbox.store import PredictionStore
from sandbox.webhooks import WebhookSender

FIRST = asyncio.FIRST_COMPLETED

#: How `Sandbox.gate` treats a request: the four faultable kinds, or `other` (limits only).
RequestKind = Literal["create", "get", "cancel", "list", "other"]


class Sandbox:
    """The state and behaviour shared by every request of one app.

    `config` is replaced (never mutated) when `POST /sandbox/faults` changes settings.
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        clock: Clock = wall_clock,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = PredictionStore()
        self.faults = FaultInjector(config.seed)
        self.create_limiter = SlidingWindowLimiter()
        self.other_limiter = SlidingWindowLimiter()
        self.webhooks = WebhookSender(self.store, clock, webhook_transport)
        self._ids = random.Random()
        self._authorization = None if config.token is None else f"Bearer {config.token}".encode()
        self._closing_future: asyncio.Future[None] | None = None

    async def gate(self, request: Request, kind: RequestKind) -> Response | Decision:
        """Count, authenticate, rate-limit and fault one `/v1` request.

        `kind` is `create`, `get`, `cancel`, `list` (faultable) or `other`. Returns the response
        to send instead of handling the request (401, 429, an injected 5xx), or the `Decision`
        the handler must pass to `finish` with its own response.
        """
        counters = self.store.counters
        counters.requests += 1
        if kind == "get":
            counters.polls += 1
        expected = self._authorization
        if expected is not None and not _authorized(request, expected):
            return responses.unauthenticated()
        config = self.config
        create = kind == "create"
        limiter = self.create_limiter if create else self.other_limiter
        retry_after_s = limiter.admit(
            self.clock(), config.create_limit_per_min if create else config.other_limit_per_min
        )
        if retry_after_s is not None:
            counters.throttled += 1
            return responses.throttled(retry_after_s)
        if kind == "other":
            return NO_FAULT
        decision = self.faults.decide(kind, config)
        if decision.fault is Fault.THROTTLE:
            counters.throttled += 1
            return await self.finish(decision, responses.throttled(config.retry_after_s))
        if decision.fault is Fault.ERROR:
            counters.server_errors += 1
            if decision.error_html:
                return await self.finish(decision, responses.bad_gateway_html())
            return await self.finish(decision, responses.server_error(decision.error_status))
        return decision

    async def gate_file(self) -> Response | Decision:
        """The faults for one download of an output file (kind ``file``): an injected 429 or
        5xx to send instead, or the Decision to pass to ``finish``."""
        decision = self.faults.decide("file", self.config)
        if decision.fault is Fault.THROTTLE:
            self.store.counters.throttled += 1
            return await self.finish(decision, responses.throttled(self.config.retry_after_s))
        if decision.fault is Fault.ERROR:
            self.store.counters.server_errors += 1
            return await self.finish(decision, responses.server_error(decision.error_status))
        return decision

    async def finish(self, decision: Decision, response: Response) -> Response:
        """Apply the slow and lost faults of `decision` to a handler's `response`."""
        if decision.slow:
            self.store.counters.slow += 1
            await self._hold(self.config.slow_s)
        if decision.fault is Fault.LOST:
            self.store.counters.lost_creates += 1
            await self._hold(self.config.lost_delay_s)
            return responses.bad_gateway_html()
        return response

    def create(
        self,
        *,
        model: str,
        version: str,
        input: dict[str, Any],
        base_url: str,
        deployment: str | None = None,
        webhook: str | None = None,
        webhook_events: frozenset[str] = frozenset(),
        cancel_after_s: float | None = None,
    ) -> Prediction:
        """Plan, store and schedule a new prediction (``cancel_after_s``: its deadline).

        Raises:
            sandbox.models.InvalidInput: the input does not fit the model (nothing is stored).
        """
        store = self.store
        # Whole microseconds, so that `created_at` parses back to exactly `created_s` and a
        # `created_after=<a prediction's created_at>` filter excludes that prediction.
        created_s = round(max(self.clock(), store.last_created_s), 6)
        prediction_id = new_prediction_id(self._ids)
        run = lookup(model).run(input, RunContext(self.config.latency_s, prediction_id, base_url))
        prediction = Prediction(
            id=prediction_id,
            model=model,
            version=version,
            input=input,
            run=run,
            created_s=created_s,
            base_url=base_url,
            seq=len(store),
            deployment=deployment,
            webhook=webhook,
            webhook_events=webhook_events,
            boot_s=self.config.boot_s,
            cancel_after_s=cancel_after_s,
        )
        store.add(prediction)
        self.webhooks.on_create(prediction)
        return prediction

    def render(
        self, prediction: Prediction, status: str | None = None, *, inline_files: bool = False
    ) -> dict[str, Any]:
        """The prediction's API JSON now (its data removed after the output TTL)."""
        return prediction.to_json(
            self.clock(), status, output_ttl_s=self.config.output_ttl_s, inline_files=inline_files
        )

    def cancel(self, prediction: Prediction) -> None:
        """Cancel `prediction` if it is not terminal (else leave it unchanged)."""
        if prediction.cancel(self.clock()):
            self.store.counters.canceled += 1
            self.webhooks.on_cancel(prediction)

    async def wait_terminal(self, prediction: Prediction, timeout_s: float) -> bool:
        """Hold until `prediction` is terminal or `timeout_s` passed; returns whether terminal."""
        deadline_s = self.clock() + timeout_s
        closing = self._closing()
        while True:
            now_s = self.clock()
            if prediction.is_terminal(now_s):
                return True
            if now_s >= deadline_s or closing.done():
                return False
            if prediction.waiter is None:
                prediction.waiter = asyncio.get_running_loop().create_future()
            delay_s = min(prediction.end_s, deadline_s) - now_s
            await asyncio.wait([prediction.waiter, closing], timeout=delay_s, return_when=FIRST)

    async def hold_until(self, prediction: Prediction, at_s: float) -> bool:
        """Sleep until ``at_s`` (sandbox clock), or until the prediction is canceled; False if
        the server started shutting down meanwhile."""
        closing = self._closing()
        if closing.done():
            return False
        if prediction.waiter is None:
            prediction.waiter = asyncio.get_running_loop().create_future()
        delay_s = max(0.0, at_s - self.clock())
        await asyncio.wait([prediction.waiter, closing], timeout=delay_s, return_when=FIRST)
        return not closing.done()

    def release_holds(self) -> None:
        """Answer every held request now (`Prefer: wait`, slow and lost faults), and any held
        later at once: called when the server shuts down, so it need not cut them off."""
        closing = self._closing()
        if not closing.done():
            closing.set_result(None)

    def _closing(self) -> asyncio.Future[None]:
        if self._closing_future is None:
            self._closing_future = asyncio.get_running_loop().create_future()
        return self._closing_future

    async def _hold(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.wait([self._closing()], timeout=seconds)

    def reset(self) -> None:
        """Forget predictions, counters, queued faults, rate windows and pending webhooks."""
        self.webhooks.reset()
        self.store.clear()
        self.faults.clear()
        self.create_limiter.clear()
        self.other_limiter.clear()


def _authorized(request: Request, expected: bytes) -> bool:
    given = request.headers.get("authorization", "").encode()
    return hmac.compare_digest(given, expected)


def sandbox_of(request: Request) -> Sandbox:
    """The `Sandbox` of the app serving `request` (set by `sandbox.app.create_app`)."""
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox
