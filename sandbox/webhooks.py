"""Webhook delivery, signed the way Replicate signs (Standard Webhooks).

For a prediction created with `webhook`, the sandbox POSTs the prediction JSON there on the
events in `webhook_events_filter` (default: all):

- `start`: right after creation, with status `starting`;
- `completed`: when it becomes terminal (succeeded, failed or canceled), scheduled with
  `loop.call_later` at creation and sent at once on cancel.

`output` and `logs` events are accepted in the filter but never sent separately: the sandbox's
models produce their output at once, and `completed` carries it.

Each message has headers `webhook-id` (`msg_...`, the same on every retry), `webhook-timestamp`
(unix seconds of the attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
`f"{id}.{timestamp}.{body}"`, keyed with the base64-decoded part of the secret after `whsec_`,
so `replicate.webhook.Webhooks.validate` accepts it. A non-2xx answer or a transport error is
retried after 0.5, 1 and 2 s; a message that fails all four attempts counts in `webhooks_failed`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from typing import Final

import httpx

from sandbox.clock import Clock
from sandbox.prediction import Prediction
from sandbox.responses import dumps
from sandbox.store import PredictionStore

RETRY_DELAYS_S: Final = (0.5, 1.0, 2.0)
ATTEMPT_TIMEOUT_S: Final = 5.0
#: Deliveries in flight at once, the HTTP pool's size: httpx's pool scans its whole queue of
#: waiting requests on every request and response, so 1,000 predictions' webhooks sent at once
#: held the sandbox's event loop for tens of seconds.
MAX_SENDING: Final = 50
ALL_EVENTS: Final = frozenset({"start", "output", "logs", "completed"})


def new_secret() -> str:
    """A fresh signing secret, `whsec_<base64 of 32 random bytes>`."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def sign(secret: str, message_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` header value for one message attempt."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class WebhookSender:
    """Schedules and delivers the webhook messages of one app.

    Delivery counts go to `store.counters` (`webhooks_sent`, `webhooks_failed`). `transport`
    replaces the network (e.g. `httpx.ASGITransport` to a receiver app in tests).
    """

    def __init__(
        self,
        store: PredictionStore,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.secret = new_secret()
        #: Seconds between delivery attempts; one more attempt than entries.
        self.retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
        self._store = store
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending = asyncio.Semaphore(MAX_SENDING)

    def on_create(self, prediction: Prediction) -> None:
        """Send `start` now and schedule `completed` for the prediction's planned end."""
        if prediction.webhook is None:
            return
        loop = asyncio.get_running_loop()
        if "start" in prediction.webhook_events:
            self._send(prediction.webhook, prediction, "starting")
        if "completed" in prediction.webhook_events:
            delay_s = max(0.0, prediction.end_s - self._clock())
            self._timers[prediction.id] = loop.call_later(delay_s, self._completed, prediction)

    def on_cancel(self, prediction: Prediction) -> None:
        """Send `completed` for a prediction just canceled, instead of at its planned end."""
        timer = self._timers.pop(prediction.id, None)
        if timer is not None and prediction.webhook is not None:
            timer.cancel()
            self._send(prediction.webhook, prediction, None)

    def _completed(self, prediction: Prediction) -> None:
        self._timers.pop(prediction.id, None)
        if prediction.webhook is not None:
            # The loop's timer may fire a hair before the wall clock reaches the planned end:
            # describe the prediction as of its end, so the `completed` message is final.
            now_s = max(self._clock(), prediction.end_s)
            self._send(prediction.webhook, prediction, None, now_s=now_s)

    def _send(
        self, url: str, prediction: Prediction, status: str | None, now_s: float | None = None
    ) -> None:
        at_s = self._clock() if now_s is None else now_s
        body = dumps(prediction.to_json(at_s, status))
        task = asyncio.get_running_loop().create_task(self._deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: bytes) -> None:
        message_id = "msg_" + secrets.token_hex(12)
        for delay_s in (*self.retry_delays_s, None):
            if await self._attempt(url, message_id, body):
                self._store.counters.webhooks_sent += 1
                return
            if delay_s is not None:
                await asyncio.sleep(delay_s)
        self._store.counters.webhooks_failed += 1

    async def _attempt(self, url: str, message_id: str, body: bytes) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=ATTEMPT_TIMEOUT_S,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=MAX_SENDING),
            )
        async with self._sending:  # (signed when sent, not while waiting its turn)
            timestamp_s = int(self._clock())
            headers = {
                "content-type": "application/json",
                "user-agent": "predq-sandbox",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp_s),
                "webhook-signature": sign(self.secret, message_id, timestamp_s, body),
            }
            try:
                response = await self._client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                return False
        return response.is_success

    def reset(self) -> None:
        """Drop scheduled `completed` sends and abandon deliveries in flight."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        """Stop everything and close the HTTP client (on app shutdown)."""
        self.reset()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
