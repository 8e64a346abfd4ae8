"""One simulated prediction, whose status is derived from timestamps rather than driven by a task.

A prediction's whole life is fixed at creation from its `ModelRun`: it is `starting` until
`started_s` (a short boot: a tenth of the run, at most 0.1 s, or the configured `boot_s`),
`processing` until `completed_s`, then `succeeded` or `failed`. Nothing runs in the background:
`status_at(now)` computes the status on read. Two things end it earlier:

- a cancel (`cancel`): `canceled` from then on;
- its `Cancel-After` deadline: `aborted` if it passes while the prediction is still starting (not
  billed, as on Replicate), `canceled` if it passes while it processes.

Like Replicate, a finished prediction's output, logs and files are removed `output_ttl_s` after it
ended: then `output` is null and `data_removed` true.
"""

from __future__ import annotations

import asyncio
import base64
import math
import random
from typing import Any, Final

from sandbox.clock import iso8601
from sandbox.files import data_uri
from sandbox.models import ModelRun, file_url

TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "canceled", "aborted"})

#: The longest a prediction stays `starting` by default (it is also at most a tenth of its run).
MAX_STARTING_S: Final = 0.1


def new_prediction_id(rng: random.Random) -> str:
    """A 26-char lowercase base32 id, like Replicate's `gm3qorzdhgbfurvjtvhg6dckhu`."""
    return base64.b32encode(rng.randbytes(17))[:26].decode("ascii").lower()


class Prediction:
    """A prediction record. Times are unix seconds from the app's clock.

    Attributes:
        id, model, version, input, deployment: as in the API's prediction JSON.
        run: the planned outcome (duration, output or error, logs, files).
        base_url: the external base URL ("http://host:port/") the prediction was created through;
            its `urls` are built from it.
        webhook, webhook_events: where and on which events (`start`, `completed`) to POST it.
        seq: its position in creation order (0-based), used by list pagination.
        deadline_s: when its `Cancel-After` runs out, or None.
        waiter: a future resolved on cancellation, created only while a `Prefer: wait` holds it.
    """

    __slots__ = (
        "base_url",
        "canceled_s",
        "completed_s",
        "created_at",
        "created_s",
        "deadline_s",
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
        boot_s: float | None = None,
        cancel_after_s: float | None = None,
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
        if boot_s is None:
            self.started_s = created_s + min(run.duration_s / 10, MAX_STARTING_S)
            self.completed_s = created_s + run.duration_s
        else:
            self.started_s = created_s + boot_s
            self.completed_s = self.started_s + run.duration_s
        self.deadline_s = None if cancel_after_s is None else created_s + cancel_after_s
        self.canceled_s: float | None = None
        self.created_at = iso8601(created_s)
        self.waiter: asyncio.Future[None] | None = None

    @property
    def _deadline_hit(self) -> bool:
        return self.deadline_s is not None and self.deadline_s < self.completed_s

    @property
    def end_s(self) -> float:
        """When the prediction is (or will be) terminal: canceled, deadline, or completed."""
        if self.canceled_s is not None:
            return self.canceled_s
        if self._deadline_hit:
            assert self.deadline_s is not None
            return self.deadline_s
        return self.completed_s

    @property
    def final_status(self) -> str:
        """The status it ends with (whether or not it has ended yet)."""
        if self.canceled_s is not None:
            return "canceled"
        if self._deadline_hit:
            assert self.deadline_s is not None
            return "aborted" if self.deadline_s < self.started_s else "canceled"
        return "failed" if self.run.fails else "succeeded"

    def status_at(self, now_s: float) -> str:
        """The status at `now_s`: starting, processing, or its final status."""
        if now_s >= self.end_s:
            return self.final_status
        return "processing" if now_s >= self.started_s else "starting"

    def is_terminal(self, now_s: float) -> bool:
        """Whether the prediction has reached a terminal status by `now_s`."""
        return now_s >= self.end_s

    def fraction_at(self, now_s: float) -> float:
        """How far its run is at `now_s` (0 before it starts, 1 once it completed)."""
        span = self.completed_s - self.started_s
        if span <= 0:
            return 1.0 if now_s >= self.started_s else 0.0
        return min(1.0, max(0.0, (min(now_s, self.end_s) - self.started_s) / span))

    def data_removed_at(self, now_s: float, output_ttl_s: float) -> bool:
        """Whether its output, logs and files are gone (``output_ttl_s`` after it ended)."""
        return self.is_terminal(now_s) and now_s >= self.end_s + output_ttl_s

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

    def to_json(
        self,
        now_s: float,
        status: str | None = None,
        *,
        output_ttl_s: float = math.inf,
        inline_files: bool = False,
    ) -> dict[str, Any]:
        """The API JSON at `now_s`; `status` overrides the derived one for snapshots.

        `status="starting"` gives the creation snapshot (no start time, no logs);
        `status="processing"` reports a timed-out `Prefer: wait` as processing. `inline_files`
        gives file outputs as data URIs (sync mode).
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
        if self.deadline_s is not None:
            body["deadline"] = iso8601(self.deadline_s)
        if status == "starting":
            return body
        started = status != "aborted" and self.end_s > self.started_s
        if started:
            body["started_at"] = iso8601(self.started_s)
            body["logs"] = self.run.logs_at(self.fraction_at(now_s))
            if self.run.streams and status != "failed":  # output grows as it is produced
                body["output"] = self.tokens_at(now_s)
        if status in TERMINAL_STATUSES:
            self._add_terminal(body, status, started, inline_files)
            if self.data_removed_at(now_s, output_ttl_s):
                body.update(output=None, logs="", data_removed=True)
        return body

    def _add_terminal(
        self, body: dict[str, Any], status: str, started: bool, inline_files: bool
    ) -> None:
        end_s = self.end_s
        if status == "succeeded" and not self.run.streams:
            body["output"] = self._inlined(self.run.output) if inline_files else self.run.output
        elif status == "failed":
            body["error"] = self.run.error
        body["completed_at"] = iso8601(end_s)
        predict_s = end_s - self.started_s if started else 0.0
        body["metrics"] = {
            "predict_time": round(predict_s, 6),
            "total_time": round(end_s - self.created_s, 6),
        }

    def _inlined(self, output: Any) -> Any:
        by_url = {file_url(self.base_url, self.id, f.name): f for f in self.run.files}
        if isinstance(output, str) and output in by_url:
            return data_uri(by_url[output])
        if isinstance(output, list):
            return [self._inlined(item) for item in output]
        return output

    def token_times(self) -> list[float]:
        """When each token of a streaming model is produced (unix seconds)."""
        count = len(self.run.tokens)
        span = self.completed_s - self.started_s
        times = [self.started_s + span * (n + 1) / count for n in range(count)]
        if times:
            times[-1] = self.completed_s  # exactly, whatever the rounding
        return times

    def token(self, n: int) -> str:
        """Token ``n`` as sent (with its emission time when the run stamps them)."""
        word = self.run.tokens[n]
        if not self.run.stamp_tokens:
            return word
        return f"{word.rstrip()}@{self.token_times()[n]:.6f} "

    def tokens_at(self, now_s: float) -> list[str]:
        """The tokens produced by ``now_s`` (none after a cancel stopped it)."""
        until = min(now_s, self.end_s)
        return [self.token(n) for n, at in enumerate(self.token_times()) if at <= until]

    def _urls(self) -> dict[str, str]:
        get = f"{self.base_url}v1/predictions/{self.id}"
        urls = {"get": get, "cancel": f"{get}/cancel", "web": f"{self.base_url}p/{self.id}"}
        if self.run.streams:
            urls["stream"] = f"{self.base_url}v1/streams/{self.id}"
        return urls
