"""One simulated prediction, whose status is derived from timestamps rather than driven by a task.

A prediction's whole life is fixed at creation from its `ModelRun`: it is `starting` until
`started_s` (a short boot: a tenth of the run, at most 0.1 s), `processing` until `completed_s`
(created + duration), then `succeeded` or `failed`. Nothing runs in the background: `status_at(now)`
computes the status on read. Only cancellation changes a prediction after creation.
"""

from __future__ import annotations

import asyncio
import base64
import random
from typing import Any, Final

from sandbox.clock import iso8601
from sandbox.models import ModelRun

TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "canceled"})

#: The longest a prediction stays `starting` (it is also at most a tenth of its run).
MAX_STARTING_S: Final = 0.1


def new_prediction_id(rng: random.Random) -> str:
    """A 26-char lowercase base32 id, like Replicate's `gm3qorzdhgbfurvjtvhg6dckhu`."""
    return base64.b32encode(rng.randbytes(17))[:26].decode("ascii").lower()


class Prediction:
    """A prediction record. Times are unix seconds from the app's clock.

    Attributes:
        id, model, version, input, deployment: as in the API's prediction JSON.
        run: the planned outcome (duration, output or error, logs).
        base_url: the external base URL ("http://host:port/") the prediction was created through;
            its `urls` are built from it.
        webhook, webhook_events: where and on which events (`start`, `completed`) to POST it.
        seq: its position in creation order (0-based), used by list pagination.
        waiter: a future resolved on cancellation, created only while a `Prefer: wait` holds it.
    """

    __slots__ = (
        "_completed_at",
        "_started_at",
        "base_url",
        "canceled_s",
        "completed_s",
        "created_at",
        "created_s",
        "deployment",
        "id",
        "input",
        "model",
        "run",
        "seq",
        "started_s",
        "version",
        "waiter",
        "webhook",
        "webhook_events",
    )

    def __init__(
        self,
        *,
        id: str,
        model: str,
        version: str,
        input: dict[str, Any],
        run: ModelRun,
        created_s: float,
        base_url: str,
        seq: int,
        deployment: str | None = None,
        webhook: str | None = None,
        webhook_events: frozenset[str] = frozenset(),
    ) -> None:
        self.id = id
        self.model = model
        self.version = version
        self.input = input
        self.run = run
        self.base_url = base_url
        self.seq = seq
        self.deployment = deployment
        self.webhook = webhook
        self.webhook_events = webhook_events
        self.created_s = created_s
        self.started_s = created_s + min(run.duration_s / 10, MAX_STARTING_S)
        self.completed_s = created_s + run.duration_s
        self.canceled_s: float | None = None
        self.created_at = iso8601(created_s)
        self._started_at: str | None = None
        self._completed_at: str | None = None
        self.waiter: asyncio.Future[None] | None = None

    @property
    def end_s(self) -> float:
        """When the prediction is (or will be) terminal: its cancel time, else `completed_s`."""
        return self.completed_s if self.canceled_s is None else self.canceled_s

    def status_at(self, now_s: float) -> str:
        """The status at `now_s`: starting, processing, succeeded, failed or canceled."""
        if self.canceled_s is not None:
            return "canceled"
        if now_s >= self.completed_s:
            return "failed" if self.run.fails else "succeeded"
        return "processing" if now_s >= self.started_s else "starting"

    def is_terminal(self, now_s: float) -> bool:
        """Whether the prediction has reached a terminal status by `now_s`."""
        return self.canceled_s is not None or now_s >= self.completed_s

    def cancel(self, now_s: float) -> bool:
        """Cancel at `now_s` if not yet terminal; returns whether this call canceled it.

        Resolves `waiter` so a `Prefer: wait` holding the prediction answers at once.
        """
        if self.is_terminal(now_s):
            return False
        self.canceled_s = now_s
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        return True

    def to_json(self, now_s: float, status: str | None = None) -> dict[str, Any]:
        """The API JSON at `now_s`; `status` overrides the derived one for snapshots.

        `status="starting"` gives the creation snapshot (no start time, no logs);
        `status="processing"` reports a timed-out `Prefer: wait` as processing.
        """
        status = status or self.status_at(now_s)
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "status": status,
            "source": "api",
            "created_at": self.created_at,
            "started_at": None,
            "completed_at": None,
            "urls": self._urls(),
        }
        if self.deployment is not None:
            body["deployment"] = self.deployment
        if status == "starting":
            return body
        started = status != "canceled" or self.end_s > self.started_s
        if started:
            body["started_at"] = self._started_iso()
            body["logs"] = self.run.logs
        if status in TERMINAL_STATUSES:
            self._add_terminal(body, status, started)
        return body

    def _add_terminal(self, body: dict[str, Any], status: str, started: bool) -> None:
        end_s = self.end_s
        if status == "succeeded":
            body["output"] = self.run.output
        elif status == "failed":
            body["error"] = self.run.error
        if self._completed_at is None:  # fixed: a terminal prediction cannot be canceled
            self._completed_at = iso8601(end_s)
        body["completed_at"] = self._completed_at
        predict_s = end_s - self.started_s if started else 0.0
        body["metrics"] = {
            "predict_time": round(predict_s, 6),
            "total_time": round(end_s - self.created_s, 6),
        }

    def _started_iso(self) -> str:
        if self._started_at is None:
            self._started_at = iso8601(self.started_s)
        return self._started_at

    def _urls(self) -> dict[str, str]:
        get = f"{self.base_url}v1/predictions/{self.id}"
        return {"get": get, "cancel": f"{get}/cancel", "web": f"{self.base_url}p/{self.id}"}
