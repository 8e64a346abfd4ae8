"""run_prediction: one attempt at one job, from claim to the record's next state.

    start (claim, attempts+1; or recovery of a running job whose worker died)
      -> resume the stored prediction; or find one whose create answer was lost; or create one
         through async_run, its id stored the moment the create response arrives
      -> succeeded | canceled | retrying (due after the backoff) | failed
         | handed over (SIGTERM: due again at once, same attempt, same prediction)

Re-delivery is harmless: a job that is final (or was canceled) is skipped at the claim, and a
worker whose job was taken over by another is fenced out of every later write (run token).
"""

from __future__ import annotations

import contextlib
import random

import redis.exceptions
import structlog
from arq import Retry

from producer import clock
from producer.errors import RedisUnavailable
from producer.models import ErrorInfo, ErrorKind, JobPhase, JobState
from producer.store import Transition
from worker.attempt import Attempt, HandBack
from worker.context import WorkerContext
from worker.lease import Hold
from worker.retry import Verdict

log = structlog.get_logger(__name__)

#: How long a job waits before trying again for a slot of its capped model.
MODEL_SLOT_WAIT_S = 1.0


async def run_prediction(ctx: WorkerContext, job_id: str) -> None:
    """The arq function every job runs as; the only code that raises arq.Retry.

    ``Retry()`` (never with a defer: the record already says when the job is due again) ends the
    arq run without finishing the job, so arq keeps its queue entry. Nothing escapes to arq as a
    plain exception: arq would drop the job while its record still says it is live. Redis trouble
    hands the job back (due when its lease runs out); anything else is a bug, recorded on the job
    as an ``internal`` failure.
    """
    ctx["metrics"].job_began()
    ctx["finished_by_record"].discard(job_id)  # (left over if an earlier run was cut short)
    try:
        await _attempt(ctx, job_id)
    except HandBack as exc:
        raise Retry() from exc
    except (redis.exceptions.RedisError, RedisUnavailable, OSError) as exc:
        log.warning("job.handed_back", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        raise Retry() from exc
    except Exception as exc:  # a bug before the job was claimed (after, Attempt handles it)
        log.exception("job.crashed", job_id=job_id)
        error = ErrorInfo(
            kind=ErrorKind.INTERNAL,
            message=f"the worker failed unexpectedly: {type(exc).__name__}: {exc}",
            attempt=0,
            at=clock.now(),
        )
        try:
            await ctx["store"].fail(job_id, None, error)
        except (redis.exceptions.RedisError, RedisUnavailable, OSError):
            raise Retry() from exc
    finally:
        ctx["metrics"].job_ended()
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await ctx["model_slots"].give_back(job_id)


async def _attempt(ctx: WorkerContext, job_id: str) -> None:
    store, config, leases = ctx["store"], ctx["config"], ctx["leases"]
    # The start transition shortens arq's long claim to the lease in its own Lua call; only a
    # capped model's slot, taken before the start, needs the lease shortened first.
    hold = await leases.hold(job_id, extend=bool(config.model_concurrency))
    try:
        if config.model_concurrency:
            await _model_slot(ctx, job_id)
        claim, run = await store.start(job_id, worker=ctx["worker_id"], lease_ms=leases.lease_ms)
        if not claim.ok or claim.record is None:
            await _skip(ctx, job_id, claim)
            return
        await _run_claimed(ctx, claim, run, hold)
    finally:
        hold.release()


async def _skip(ctx: WorkerContext, job_id: str, claim: Transition) -> None:
    """A delivery of a job that is not to run: final, or canceled while it waited. A job canceled
    while it waited for a retry or after a hand-over may still have a running prediction."""
    log.info("job.skipped", job_id=job_id, reason=claim.status, state=claim.previous)
    record = claim.record
    if claim.previous is JobState.CANCELED and record is not None and record.prediction_id:
        with contextlib.suppress(Exception):
            await ctx["predictions"].cancel(record.prediction_id)
            log.info("prediction.canceled", job_id=job_id, prediction_id=record.prediction_id)


async def _run_claimed(ctx: WorkerContext, claim: Transition, run: str, hold: Hold) -> None:
    config = ctx["config"]
    record = claim.record
    assert record is not None
    attempt = Attempt(ctx, record, run, hold)
    hold.on_cancel(lambda: attempt.stop("canceled"))
    if claim.previous is JobState.RUNNING:
        if record.recoveries > config.max_recoveries:
            await attempt.give_up(
                Verdict(
                    ErrorKind.CRASHED,
                    f"a worker died while running this job {record.recoveries} times "
                    f"(limit {config.max_recoveries}): failed as a poison pill",
                    retryable=False,
                )
            )
            return
        attempt.log.warning("job.recovered", recoveries=record.recoveries)
        ctx["metrics"].recovered()
    else:
        attempt.log.info("job.running")
        first = record.attempts == 1 and record.recoveries == 0
        waited_s = (clock.now() - record.created_at).total_seconds() if first else None
        ctx["metrics"].attempt_started(record.model, queue_wait_s=waited_s)
    await attempt.execute()


async def _model_slot(ctx: WorkerContext, job_id: str) -> None:
    """Take a slot of the job's model if it is capped. When none is free, the job goes back to
    the queue, due again shortly, without an attempt counted (raises HandBack)."""
    model = await ctx["store"].model_of(job_id)
    if model is None or await ctx["model_slots"].take(model, job_id):
        return
    delay_s = random.uniform(MODEL_SLOT_WAIT_S / 2, MODEL_SLOT_WAIT_S)
    await ctx["store"].defer(job_id, delay_s, phase=JobPhase.WAITING_FOR_MODEL_SLOT)
    log.debug("job.waiting_for_model_slot", job_id=job_id, model=model)
    raise HandBack("waiting for a slot of its model")
