"""Delivering completion callbacks from the durable outbox.

When a job with a ``callback_url`` becomes final, the same Lua call puts it in the outbox
(``keys.CALLBACKS``, due at once). Every worker runs ``Deliveries.keep_delivering``: it claims due
callbacks (each for ``CLAIM_S``: if its worker dies, another takes it then), POSTs the final record
signed with ``PREDQ_CALLBACK_SECRET`` (Standard Webhooks, producer/callbacks.py), and records the
attempt on the job (``JobRecord.callback``). A 2xx ends it; anything else is retried with
exponential backoff (5 s doubling, at most an hour apart) until ``PREDQ_CALLBACK_GIVE_UP_S``
after the job ended, across worker restarts, always with the same ``webhook-id``. The URL is
checked again before each attempt: a host that now resolves to a private address is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import structlog

from producer import clock
from producer.callbacks import check_public, headers
from producer.errors import InvalidRequest, PredqError
from producer.models import CallbackState, JobRecord
from producer.store import JobStore
from worker.config import WorkerConfig
from worker.retry import backoff_s

log = structlog.get_logger(__name__)

CLAIM_S = 60.0
BATCH = 20
IN_FLIGHT = 10
IDLE_S = 1.0
IDLE_MAX_S = 4.0
ATTEMPT_TIMEOUT_S = 10.0
FIRST_BACKOFF_S = 5.0
MAX_BACKOFF_S = 3600.0

Outcome = Callable[[str], None]


def message_id(record: JobRecord) -> str:
    """The ``webhook-id`` of a job's callback: the same on every retry, new for a re-driven
    job's next final state."""
    return f"msg_{record.id}_{record.redrives}"


class Deliveries:
    """This worker's share of the outbox."""

    def __init__(
        self,
        store: JobStore,
        config: WorkerConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        counted: Outcome | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._http = httpx.AsyncClient(
            transport=transport, timeout=ATTEMPT_TIMEOUT_S, follow_redirects=False
        )
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._counted = counted or (lambda _: None)
        self._warned_no_secret = 0.0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def keep_delivering(self) -> None:
        """Claim and deliver due callbacks until cancelled."""
        idle_s = IDLE_S
        while True:
            try:
                delivered = await self.deliver_due()
            except PredqError as exc:  # Redis unreachable: try again shortly
                log.warning("callbacks.claim_failed", error=str(exc))
                delivered = 0
            if delivered < BATCH:
                await asyncio.sleep(idle_s)
            # Nothing due: look less often (an idle worker's cost), at most every IDLE_MAX_S.
            idle_s = IDLE_S if delivered else min(IDLE_MAX_S, idle_s * 2)

    async def deliver_due(self) -> int:
        """One round: deliver what is due (at most BATCH); returns how many were tried."""
        secret = self._config.callback_secret
        if secret is None:
            self._warn_no_secret()
            return 0
        job_ids = await self._store.claim_callbacks(claim_s=CLAIM_S, limit=BATCH)
        await asyncio.gather(
            *(self._deliver(job_id, secret.get_secret_value()) for job_id in job_ids)
        )
        return len(job_ids)

    async def _deliver(self, job_id: str, secret: str) -> None:
        async with self._slots:
            record = await self._store.get(job_id)
            if record is None or record.callback_url is None:
                await self._store.record_callback(
                    job_id, CallbackState(status="failed"), due_ms=None
                )
                return
            state = record.callback or CallbackState()
            message = message_id(record)
            body = record.model_dump_json(exclude={"callback"}).encode()
            error = await self._post(record.callback_url, secret, message, body)
            now = clock.now()
            attempts = state.attempts + 1
            if error is None:
                done = CallbackState(status="delivered", message_id=message, attempts=attempts,
                                     last_attempt_at=now, delivered_at=now)  # fmt: skip
                await self._store.record_callback(job_id, done, due_ms=None)
                self._counted("delivered")
                log.info("callback.delivered", job_id=job_id, attempts=attempts)
                return
            ended = record.finished_at or record.updated_at
            delay_s = backoff_s(attempts, base_s=FIRST_BACKOFF_S, max_s=MAX_BACKOFF_S)
            give_up = (now - ended).total_seconds() + delay_s > self._config.callback_give_up_s
            retried = CallbackState(
                status="failed" if give_up else "pending",
                message_id=message,
                attempts=attempts,
                last_error=error,
                last_attempt_at=now,
                next_attempt_at=None
                if give_up
                else clock.from_ms(clock.now_ms() + int(delay_s * 1000)),
            )
            due = None if give_up else clock.now_ms() + int(delay_s * 1000)
            await self._store.record_callback(job_id, retried, due_ms=due)
            self._counted("given_up" if give_up else "failed")
            log.warning("callback.failed", job_id=job_id, attempts=attempts, error=error,
                        retry_in_s=None if give_up else round(delay_s, 1))  # fmt: skip

    async def _post(self, url: str, secret: str, message: str, body: bytes) -> str | None:
        """None when the receiver took it (2xx); else why not, in one line."""
        try:
            await check_public(url, allow_private=self._config.callback_allow_private)
            response = await self._http.post(
                url, content=body, headers=headers(secret, message, body)
            )
        except InvalidRequest as exc:
            return str(exc)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        if 200 <= response.status_code < 300:
            return None
        return f"the receiver answered {response.status_code}"

    def _warn_no_secret(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._warned_no_secret > 60:
            self._warned_no_secret = now
            log.warning(
                "callbacks.no_secret", hint="set PREDQ_CALLBACK_SECRET to deliver callbacks"
            )
