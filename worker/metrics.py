"""A worker process's Prometheus metrics, served on ``PREDQ_METRICS_PORT`` when it is set.

| metric                                     | type      | labels            |
|--------------------------------------------|-----------|-------------------|
| predq_jobs_finished_total                  | counter   | model, outcome    |
| predq_attempts_total                       | counter   | model             |
| predq_retries_total                        | counter   | model, error_kind |
| predq_job_duration_seconds                 | histogram | model             |
| predq_queue_wait_seconds                   | histogram |                   |
| predq_replicate_requests_total             | counter   | kind, status      |
| predq_replicate_throttled_total            | counter   | kind              |
| predq_rate_limit_wait_seconds_total        | counter   | kind              |
| predq_jobs_in_flight                       | gauge     |                   |
| predq_lease_recoveries_total               | counter   |                   |
| predq_callback_deliveries_total            | counter   | outcome           |

``model`` is ``owner/name`` (versions are folded, so the label set stays small). The same counts
feed the per-minute history in Redis (worker/registry.py) that charts and ``predq stats`` read.
"""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


def model_label(model: str) -> str:
    return model.split(":", 1)[0]


class Metrics:
    """This process's counters (Prometheus's, and the minute's totals for the history)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.finished = PromCounter("predq_jobs_finished", "Jobs that reached a final state",
                                    ["model", "outcome"], registry=r)  # fmt: skip
        self.attempts = PromCounter("predq_attempts", "Attempts started", ["model"], registry=r)
        self.retries = PromCounter("predq_retries", "Attempts that ended to be retried",
                                   ["model", "error_kind"], registry=r)  # fmt: skip
        self.duration = Histogram("predq_job_duration_seconds", "Enqueue to final state",
                                  ["model"], buckets=_DURATION_BUCKETS, registry=r)  # fmt: skip
        self.queue_wait = Histogram("predq_queue_wait_seconds", "Enqueue to first start",
                                    buckets=_DURATION_BUCKETS, registry=r)  # fmt: skip
        self.requests = PromCounter("predq_replicate_requests", "Requests to Replicate",
                                    ["kind", "status"], registry=r)  # fmt: skip
        self.throttled = PromCounter("predq_replicate_throttled", "429s from Replicate",
                                     ["kind"], registry=r)  # fmt: skip
        self.rate_wait = PromCounter("predq_rate_limit_wait_seconds",
                                     "Time spent waiting for the shared rate budget", ["kind"],
                                     registry=r)  # fmt: skip
        self.in_flight = Gauge("predq_jobs_in_flight", "Jobs this process runs now", registry=r)
        self.running = 0
        self.recoveries = PromCounter("predq_lease_recoveries",
                                      "Jobs taken over from a dead worker", registry=r)  # fmt: skip
        self.callbacks = PromCounter("predq_callback_deliveries", "Completion callback attempts",
                                     ["outcome"], registry=r)  # fmt: skip
        #: This minute's totals not yet added to the history (worker/registry.py flushes them).
        self.minute: Counter[str] = Counter()

    def serve(self, port: int) -> None:
        start_http_server(port, addr="0.0.0.0", registry=self.registry)

    def job_finished(self, model: str, outcome: str, duration_s: float) -> None:
        label = model_label(model)
        self.finished.labels(label, outcome).inc()
        self.duration.labels(label).observe(duration_s)
        self.minute[outcome] += 1
        self.minute[f"{outcome}:{label}"] += 1
        self.minute["duration_ms"] += int(duration_s * 1000)

    def attempt_started(self, model: str, *, queue_wait_s: float | None) -> None:
        self.attempts.labels(model_label(model)).inc()
        self.minute["started"] += 1
        if queue_wait_s is not None:
            self.queue_wait.observe(queue_wait_s)

    def retried(self, model: str, error_kind: str) -> None:
        self.retries.labels(model_label(model), error_kind).inc()
        self.minute["retried"] += 1

    def request(self, kind: str, status: int) -> None:
        self.requests.labels(kind, str(status)).inc()
        if kind == "create":
            self.minute["creates"] += 1
        if status == 429:
            self.throttled.labels(kind).inc()
            self.minute["throttled"] += 1

    def waited(self, kind: str, seconds: float) -> None:
        self.rate_wait.labels(kind).inc(seconds)
        self.minute["rate_wait_ms"] += int(seconds * 1000)

    def job_began(self) -> None:
        self.running += 1
        self.in_flight.set(self.running)

    def job_ended(self) -> None:
        self.running -= 1
        self.in_flight.set(self.running)

    def recovered(self) -> None:
        self.recoveries.inc()

    def callback(self, outcome: str) -> None:
        self.callbacks.labels(outcome).inc()
        self.minute[f"callback_{outcome}"] += 1
