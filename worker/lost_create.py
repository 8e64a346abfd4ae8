"""Finding a prediction whose create response was lost, before paying for another one.

Replicate has no idempotency key. When a create gets no clear answer (a timeout, a dropped
connection, a 5xx, or a worker killed mid-create), the prediction may exist anyway. Before the next
attempt creates again, it lists the predictions created since the earliest such create (minus
``LOOKUP_SKEW`` for clock skew) up to now, and adopts one with the same model and exactly the same
input that no other job has claimed (``predq:prediction:{id}``, claimed atomically by
``JobStore.set_prediction_id``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from producer import clock
from producer.store import JobStore
from worker.replicate_client import Predictions

log = structlog.get_logger(__name__)

#: Clock skew allowed between this host and Replicate.
LOOKUP_SKEW = timedelta(seconds=10)


async def adopt_lost_create(
    predictions: Predictions,
    store: JobStore,
    *,
    job_id: str,
    run: str,
    model: str,
    input: dict[str, object],
    since: datetime,
) -> str | None:
    """The id of this job's lost prediction, now claimed for it; None if there is none.

    Raises whatever the listing raises (the attempt then fails and is retried: better than risking
    a second prediction). Returns None as well when the job is no longer this run's to claim for.
    """
    candidates = await predictions.find(
        model,
        input,
        created_after=(since - LOOKUP_SKEW).isoformat(),
        created_before=(clock.now() + LOOKUP_SKEW).isoformat(),
    )
    for prediction_id in candidates:
        status = await store.set_prediction_id(job_id, run, prediction_id)
        if status == "ok":
            log.info("prediction.found", job_id=job_id, prediction_id=prediction_id)
            return prediction_id
        if status != "claimed":
            return None
    log.info("prediction.not_found", job_id=job_id, since=since.isoformat(), seen=len(candidates))
    return None
