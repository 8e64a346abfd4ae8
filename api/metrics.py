"""``GET /metrics`` of ``predq serve``: the queue's gauges, read from Redis at each scrape.

| metric                                | type  | labels        | from                          |
|---------------------------------------|-------|---------------|-------------------------------|
| predq_jobs                            | gauge | state         | the state indexes (ZCARD)     |
| predq_oldest_queued_job_age_seconds   | gauge |               | the queued index's oldest     |
| predq_callbacks_pending               | gauge |               | the callbacks outbox (ZCARD)  |
| predq_workers                         | gauge | alive         | the worker registry           |
| predq_jobs_running_by_model           | gauge | model         | running jobs (at most 500)    |
| predq_jobs_finished_last_hour         | gauge | model, outcome| the per-minute history        |

Each scrape is a few pipelined reads, never a scan of keys (the running jobs' records, at most
500, are read for the per-model gauge). Each worker process serves its own
counters and histograms on ``PREDQ_METRICS_PORT`` (worker/metrics.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.routes import Read, producer_of
from producer.models import JobState

router = APIRouter()


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request, _: Read) -> Response:
    """The queue's gauges in Prometheus's text format."""
    producer = producer_of(request)
    stats = await producer.stats(day=False)
    running = await producer.list_jobs(JobState.RUNNING, limit=500)
    registry = CollectorRegistry()
    jobs = Gauge("predq_jobs", "Jobs by state", ["state"], registry=registry)
    for state, count in stats.jobs.items():
        jobs.labels(state.value).set(count)
    Gauge("predq_oldest_queued_job_age_seconds", "Age of the job queued longest",
          registry=registry).set(stats.oldest_queued_age_s)  # fmt: skip
    Gauge("predq_callbacks_pending", "Completion callbacks waiting to be delivered",
          registry=registry).set(stats.callbacks_pending)  # fmt: skip
    live = Gauge("predq_workers", "Registered workers", ["alive"], registry=registry)
    live.labels("true").set(stats.workers_alive)
    live.labels("false").set(stats.workers_dead)
    by_model = Gauge("predq_jobs_running_by_model", "Running jobs by model", ["model"],
                     registry=registry)  # fmt: skip
    counts: dict[str, int] = {}
    for record in running.jobs:
        name = record.model.split(":", 1)[0]
        counts[name] = counts.get(name, 0) + 1
    for name, count in counts.items():
        by_model.labels(name).set(count)
    finished = Gauge("predq_jobs_finished_last_hour", "Jobs that ended in the last hour",
                     ["model", "outcome"], registry=registry)  # fmt: skip
    for name, outcomes in stats.last_hour.by_model.items():
        for outcome, count in outcomes.items():
            finished.labels(name, outcome).set(count)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
