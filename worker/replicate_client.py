"""The only code that talks to Replicate: the worker-owned ``replicate.Client``s and how a
prediction is run, resumed, waited for (by polling or by webhook), looked up and canceled.

New predictions run through ``replicate.Client.async_run``; worker/observe.py's transport, under
every client, stores each new prediction's id before anything waits on it. Under that, requests go
out through aiohttp (httpx-aiohttp's transport, the one OpenAI's SDK offers too): httpx's own
httpcore/anyio stack cost a worker about 0.5 ms of CPU more per request (ops/bench/'s io row).
Every transport error during a create is still treated as ambiguous (the prediction is looked for
before another create), whichever exception class the transport maps it to. Once a prediction
exists, a failed poll is retried within the attempt; only its deadline ends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import structlog
from httpx_aiohttp import AiohttpTransport
from pydantic.v1 import ValidationError as PredictionParseError
from replicate.client import Client as ReplicateClient
from replicate.exceptions import ModelError
from replicate.prediction import _json_to_prediction
from replicate.stream import EventSource

from producer.models import split_model_ref
from worker.config import WorkerConfig
from worker.metrics import Metrics
from worker.observe import (
    FINAL_STATUSES,
    ObservingTransport,
    PredictionWatch,
    stopped_by_deadline,
    watching,
)
from worker.ratelimit import RateLimiter
from worker.retry import backoff_s, classify
from worker.webhook_wait import WebhookWaiters

log = structlog.get_logger(__name__)

_PAGE_TRIES = 5
_POLL_BACKOFF_MAX_S = 30.0
#: Reconnects to a prediction's event stream without an event in between, before giving up.
_STREAM_RECONNECTS = 5


@dataclass(frozen=True)
class Outcome:
    """How a prediction ended (exceptions cover failures: ModelError and the rest).

    ``aborted``: its ``Cancel-After`` deadline passed before it started; ``deadline``: it was
    stopped at that deadline while it ran; ``canceled``: by someone else (a user at Replicate).
    """

    status: Literal["succeeded", "canceled", "aborted", "deadline"]
    output: Any = None
    metrics: dict[str, Any] | None = None


def _outcome(prediction: dict[str, Any], output: Any) -> Outcome:
    """The Outcome of a final prediction (``prediction``: its JSON as Replicate sent it)."""
    status = prediction.get("status")
    metrics = prediction.get("metrics") if isinstance(prediction.get("metrics"), dict) else None
    if status == "aborted":
        return Outcome("aborted")
    if status == "canceled":
        if stopped_by_deadline(prediction):
            return Outcome("deadline", output, metrics)
        return Outcome("canceled", output, metrics)
    return Outcome("succeeded", output, metrics)


class Predictions:
    """Runs and resumes predictions on one ``replicate.Client`` owned by this worker process.

    Create it inside the worker's event loop (the client's httpx pool binds to the first loop).
    """

    def __init__(
        self,
        config: WorkerConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
        waiters: WebhookWaiters | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``transport`` replaces the HTTP transport (e.g. ``httpx.ASGITransport`` in tests);
        ``limiter`` paces every request (None: no pacing of predq's own); ``waiters`` with
        ``config.webhook_url`` set: predictions report back by webhook instead of being polled."""
        token = config.replicate_api_token
        # One aiohttp pool for all slots: its bookkeeping does not grow with its size the way
        # httpcore's did (reference/replicate.md: 17.8 ms of CPU per call with 1,000 connections
        # in one httpcore pool, which made predq spread its predictions over pools of 25).
        inner = transport or AiohttpTransport(
            limits=httpx.Limits(
                max_connections=config.concurrency, max_keepalive_connections=config.concurrency
            )
        )
        self._transport = ObservingTransport(
            inner,
            create_timeout_s=config.create_timeout_s,
            limiter=limiter,
            throttle_pause_s=config.throttle_pause_s,
            metrics=metrics,
        )
        self._client = ReplicateClient(
            api_token=token.get_secret_value() if token is not None else None,
            base_url=config.replicate_base_url,
            timeout=httpx.Timeout(30.0, connect=10.0, pool=30.0),
            transport=self._transport,
        )
        self._client.poll_interval = config.poll_interval_s
        self._poll_interval_s = config.poll_interval_s
        self._webhook_url = config.webhook_url
        self._fallback_poll_s = config.webhook_fallback_poll_s
        self._waiters = waiters

    async def run(
        self,
        model: str,
        input: dict[str, Any],
        watch: PredictionWatch,
        *,
        create_wait_s: int = 0,
    ) -> Outcome:
        """Run ``model`` on ``input`` to a final status, or resume ``watch.prediction_id`` if set.

        ``create_wait_s`` (1-60) asks Replicate to hold the create until the prediction is done
        or that long (``Prefer: wait``): a prediction that finishes within it costs one request
        instead of a create and its polls. Raises ModelError when the prediction failed, and
        ReplicateError / httpx errors as they come; ``watch`` says how far it got (the id, the
        last status, any Retry-After).
        """
        with watching(watch):
            return await self._run_polling_through_errors(
                self._client, model, input, watch, create_wait_s
            )

    async def _run_polling_through_errors(
        self,
        client: ReplicateClient,
        model: str,
        input: dict[str, Any],
        watch: PredictionWatch,
        create_wait_s: int,
    ) -> Outcome:
        """Once the prediction exists, a failed poll (5xx, 429, network) is not the attempt's
        end: poll again, with backoff, until the prediction is done or the deadline cancels us."""
        failures = 0
        while True:
            try:
                return await self._run_once(client, model, input, watch, create_wait_s)
            except Exception as exc:
                if watch.prediction_id is None:
                    raise
                verdict = classify(exc, prediction_known=True)
                if not (verdict.retryable and verdict.keep_prediction):
                    raise
                failures += 1
                log.info("prediction.poll_failed", error=verdict.message, failures=failures)
                await asyncio.sleep(
                    backoff_s(failures, base_s=self._poll_interval_s, max_s=_POLL_BACKOFF_MAX_S)
                )

    async def _run_once(
        self,
        client: ReplicateClient,
        model: str,
        input: dict[str, Any],
        watch: PredictionWatch,
        create_wait_s: int,
    ) -> Outcome:
        try:
            if self._waiters is not None and self._webhook_url is not None:
                return await self._run_by_webhook(model, input, watch, self._waiters)
            if watch.prediction_id is not None:
                return await self._resume(client, watch.prediction_id, watch)
            output = await client.async_run(
                model, input=input, wait=create_wait_s or False, use_file_output=False
            )
            if watch.status not in FINAL_STATUSES and watch.prediction_id is not None:
                # With Prefer: wait, async_run takes any status but "starting" as final and
                # returns partial output (replicate-python#385): poll it to its end instead.
                return await self._resume(client, watch.prediction_id, watch)
        except PredictionParseError:  # a status the client does not know
            if watch.status in FINAL_STATUSES and watch.status != "failed":
                return _outcome(watch.last, None)
            raise
        return _outcome(watch.last, output)

    async def _run_by_webhook(
        self, model: str, input: dict[str, Any], watch: PredictionWatch, waiters: WebhookWaiters
    ) -> Outcome:
        """Create (or resume) the prediction with a completion webhook, and wait for it.

        ``async_run`` cannot be woken (it polls on its own), so this path creates through
        ``predictions.async_create``; the observing transport still stores the id at once.
        """
        if watch.prediction_id is None:
            await self._create_with_webhook(model, input)
        prediction_id = watch.prediction_id
        if prediction_id is None:
            raise RuntimeError("the create response carried no prediction id")
        while watch.status not in FINAL_STATUSES:
            delivered = await waiters.wait(prediction_id, self._fallback_poll_s)
            if delivered is not None:
                return self._from_webhook(delivered)
            # No webhook yet: poll once, in case it was lost.
            await self._client.predictions.async_get(prediction_id)
        return self._from_webhook(watch.last)

    async def _create_with_webhook(self, model: str, input: dict[str, Any]) -> None:
        parts = split_model_ref(model)
        if parts is None:
            raise ValueError(f"not a model reference: {model!r}")
        name, version = parts
        params: dict[str, Any] = {
            "webhook": self._webhook_url,
            "webhook_events_filter": ["completed"],
        }
        if version:
            await self._client.predictions.async_create(version=version, input=input, **params)
        else:
            await self._client.models.predictions.async_create(
                model=name, input=input, wait=False, **params
            )

    def _from_webhook(self, prediction: dict[str, Any]) -> Outcome:
        if prediction.get("status") == "failed":
            raise ModelError(_json_to_prediction(self._client, prediction))
        return _outcome(prediction, prediction.get("output"))

    async def _resume(
        self, client: ReplicateClient, prediction_id: str, watch: PredictionWatch
    ) -> Outcome:
        prediction = await client.predictions.async_get(prediction_id)
        await prediction.async_wait()
        if prediction.status == "failed":
            raise ModelError(prediction)
        return _outcome(watch.last, prediction.output)

    async def find(
        self,
        model: str,
        input: dict[str, Any],
        *,
        created_after: str,
        created_before: str,
        limit: int = 10_000,
    ) -> list[str]:
        """Ids of predictions of ``model`` on exactly ``input`` created in the window (ISO times),
        newest first: the candidates for a create whose answer was lost.

        Reads the raw list (the 1.0.7 client cannot parse an ``aborted`` prediction), page by
        page (each a request against the account's rate limit), and stops after ``limit``.
        """
        parts = split_model_ref(model)
        if parts is None:
            return []
        name, version = parts
        query = httpx.QueryParams(
            {"created_after": created_after, "created_before": created_before}
        )
        cursor: str | None = f"/v1/predictions?{query}"
        found: list[str] = []
        seen = 0
        while cursor and seen < limit:
            page = await self._list_page(cursor)
            for item in page.get("results", []):
                seen += 1
                same_version = version is None or item.get("version") == version
                if item.get("model") == name and same_version and item.get("input") == input:
                    found.append(item["id"])
            cursor = page.get("next")
        return found

    async def _list_page(self, cursor: str) -> dict[str, Any]:
        """One page of the prediction list; a throttled or failed page is fetched again (reads
        are safe to repeat), so one bad page does not cost the whole lookup."""
        attempt = 1
        while True:
            try:
                response = await self._client._async_request("GET", cursor)
                page: dict[str, Any] = response.json()
                return page
            except Exception as exc:
                if attempt >= _PAGE_TRIES or not classify(exc, prediction_known=True).retryable:
                    raise
            await asyncio.sleep(backoff_s(attempt, base_s=0.2, max_s=2.0))
            attempt += 1

    async def stream_events(
        self, url: str, *, after: str | None = None
    ) -> AsyncIterator[tuple[str | None, str, str]]:
        """A streaming prediction's server-sent events from ``urls.stream``: (id, event, data),
        until ``done``. A dropped connection is reopened with ``Last-Event-ID`` (the last id
        seen), so each event comes once; ``after`` resumes a stream an earlier attempt read."""
        last = after
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
            if last is not None:
                headers["Last-Event-ID"] = last
            decoder = EventSource.Decoder()
            try:
                async with self._client._async_client.stream("GET", url, headers=headers) as sse:
                    sse.raise_for_status()
                    async for line in sse.aiter_lines():
                        event = decoder.decode(line.rstrip("\n"))
                        if event is None:
                            continue
                        last = event.id
                        failures = 0
                        yield event.id, event.event.value, event.data
                        if event.event.value == "done":
                            return
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                failures += 1
                if failures > _STREAM_RECONNECTS:
                    raise
                log.info("prediction.stream_reconnecting", error=type(exc).__name__)
                await asyncio.sleep(backoff_s(failures, base_s=0.2, max_s=5.0))

    async def account(self) -> dict[str, Any]:
        """``GET /v1/account``: who the token belongs to (raises ReplicateError 401 if nobody)."""
        response = await self._client._async_request("GET", "/v1/account")
        account: dict[str, Any] = response.json()
        return account

    async def cancel(self, prediction_id: str) -> None:
        """Ask Replicate to cancel the prediction (it stops running and billing)."""
        await self._client.predictions.async_cancel(prediction_id)

    async def aclose(self) -> None:
        await self._transport.aclose()
