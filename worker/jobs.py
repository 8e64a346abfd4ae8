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

import asyncio
import contextlib
import json
import random
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

import redis.exceptions
import structlog
from arq import Retry

from producer import clock
from producer.errors import RedisUnavailable
from producer.models import ErrorInfo, ErrorKind, JobRecord, JobState
from producer.store import JobStore, Transition
from worker.config import WorkerConfig
from worker.lease import Leases
from worker.model_slots import ModelSlots
from worker.replicate_client import Outcome, Predictions, PredictionWatch
from worker.retry import Verdict, classify, retry_delay_s

log = structlog.get_logger(__name__)

#: How long a job waits before trying again for a slot of its capped model.
MODEL_SLOT_WAIT_S = 1.0
#: Clock skew allowed between this host and Replicate when looking for a lost create.
LOOKUP_SKEW = timedelta(seconds=10)


class WorkerContext(TypedDict):
    """arq's ctx: the worker-wide dependencies made in on_startup, plus arq's per-job keys."""

    redis: Any
    config: WorkerConfig
    store: JobStore
    predictions: Predictions
    leases: Leases
    model_slots: ModelSlots
    background: list[asyncio.Task[None]]
    job_id: str
    job_try: int


async def run_prediction(ctx: WorkerContext, job_id: str) -> None:
    """The arq function every job runs as. Raises arq.Retry to hand a job back to the queue.

    Nothing escapes to arq as a plain exception: arq would drop the job while its record still
    says it is live. Redis trouble hands the job back (due when its lease runs out); anything else
    is a bug, recorded on the job as an ``internal`` failure.
    """
    try:
        await _attempt(ctx, job_id)
    except Retry:
        raise
    except (redis.exceptions.RedisError, RedisUnavailable, OSError) as exc:
        log.warning("job.handed_back", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        raise Retry() from exc
    except Exception as exc:
        log.exception("job.crashed", job_id=job_id)
        error = ErrorInfo(
            kind=ErrorKind.INTERNAL,
            message=f"the worker failed unexpectedly: {type(exc).__name__}: {exc}",
            attempt=0,
            at=clock.now(),
        )
        await ctx["store"].fail(job_id, None, error)
    finally:
        ctx["leases"].drop(job_id)
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await ctx["model_slots"].give_back(job_id)


async def _attempt(ctx: WorkerContext, job_id: str) -> None:
    store, config = ctx["store"], ctx["config"]
    await ctx["leases"].hold(job_id)
    if config.model_concurrency and not await _model_slot(ctx, job_id):
        return
    claim, run = await store.start(job_id)
    if not claim.ok or claim.record is None:
        log.info("job.skipped", job_id=job_id, reason=claim.status, state=claim.previous)
        return
    record = claim.record
    attempt = Attempt(ctx, record, run)
    ctx["leases"].on_cancel(job_id, lambda: attempt.stop("canceled"))
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
    else:
        attempt.log.info("job.running")
    await attempt.execute()


async def _model_slot(ctx: WorkerContext, job_id: str) -> bool:
    """Take a slot of the job's model if it is capped. When none is free, the job goes back to
    the queue, due again shortly, without an attempt counted (raises arq.Retry)."""
    model = await ctx["store"].model_of(job_id)
    if model is None or await ctx["model_slots"].take(model, job_id):
        return True
    ctx["leases"].drop(job_id)
    delay_s = random.uniform(MODEL_SLOT_WAIT_S / 2, MODEL_SLOT_WAIT_S)
    await ctx["store"].defer(job_id, delay_s)
    log.debug("job.waiting_for_model_slot", job_id=job_id, model=model)
    raise Retry()


class Attempt:
    """One claimed attempt: runs the prediction under the deadline and records how it ended."""

    def __init__(self, ctx: WorkerContext, record: JobRecord, run: str) -> None:
        self.ctx = ctx
        self.record = record
        self.run = run
        self.store = ctx["store"]
        self.config = ctx["config"]
        self.predictions = ctx["predictions"]
        self.watch = PredictionWatch(on_created=self._created, prediction_id=record.prediction_id)
        self.log = log.bind(
            job_id=record.id,
            attempt=record.attempts,
            model=record.model,
            prediction_id=record.prediction_id,
        )
        self._task: asyncio.Task[Outcome] | None = None
        #: Why the attempt was stopped from outside: a user canceled the job, or it was taken over.
        self._stopped: Literal["canceled", "stale"] | None = None
        #: Whether this attempt finished looking for an earlier lost create.
        self._looked_up = False

    @property
    def timeout_s(self) -> float:
        return self.record.attempt_timeout_s or self.config.attempt_timeout_s

    def stop(self, reason: Literal["canceled", "stale"]) -> None:
        """Stop the prediction task; ``execute`` then cancels the prediction on Replicate."""
        self._stopped = reason
        if self._task is not None:
            self._task.cancel()

    async def _created(self, prediction_id: str) -> None:
        self.log = self.log.bind(prediction_id=prediction_id)
        status = await self.store.set_prediction_id(self.record.id, self.run, prediction_id)
        self.log.info("prediction.created", stored=status)
        if status in ("illegal", "stale"):
            self.stop("canceled" if status == "illegal" else "stale")

    async def execute(self) -> None:
        self._task = asyncio.create_task(self._run())
        if self._stopped is not None:
            self._task.cancel()
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                outcome = await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stopped is not None and current is not None and not current.cancelling():
                await self._cancel_remote()
                self.log.info("job.stopped", reason=self._stopped)
                return
            await self._hand_over()
            raise
        except TimeoutError:
            if not deadline.expired():
                raise
            await self._cancel_remote()
            verdict = Verdict(
                ErrorKind.TIMEOUT,
                f"the attempt's deadline of {self.timeout_s:g} s passed; "
                "its prediction was canceled",
                retryable=True,
                keep_prediction=False,
                ambiguous_create=self.watch.prediction_id is None
                and self.watch.create_sent_at is not None,
            )
        except Exception as exc:
            verdict = classify(exc, prediction_known=self.watch.prediction_id is not None)
            self.log.debug("attempt.error", exc_info=True)
        else:
            await self._finish(outcome)
            return
        await self.give_up(verdict)

    async def _run(self) -> Outcome:
        since = self.record.create_unconfirmed_at
        if self.watch.prediction_id is None and since is not None:
            await self._find_unconfirmed_create(since)
        return await self.predictions.run(self.record.model, self.record.input, self.watch)

    async def _find_unconfirmed_create(self, since: datetime) -> None:
        """An earlier create of this job got no answer: adopt its prediction if it exists.

        If the lookup itself fails, the attempt fails with it (and is retried) rather than
        risk paying for a second prediction.
        """
        # The create went out at ``since`` (or, after a crash, soon after) and took at most the
        # create timeout to reach Replicate.
        window_end = since + timedelta(seconds=self.config.create_timeout_s) + LOOKUP_SKEW
        candidates = await self.predictions.find(
            self.record.model,
            self.record.input,
            created_after=(since - LOOKUP_SKEW).isoformat(),
            created_before=window_end.isoformat(),
        )
        self._looked_up = True
        for prediction_id in candidates:
            status = await self.store.set_prediction_id(self.record.id, self.run, prediction_id)
            if status == "ok":
                self.watch.prediction_id = prediction_id
                self.log = self.log.bind(prediction_id=prediction_id)
                self.log.info("prediction.found", lost_create_at=since.isoformat())
                return
            if status != "claimed":
                return
        self.log.info(
            "prediction.not_found", lost_create_at=since.isoformat(), candidates=len(candidates)
        )

    async def _finish(self, outcome: Outcome) -> None:
        if outcome.status == "aborted":
            verdict = Verdict(
                ErrorKind.TRANSIENT,
                "Replicate aborted the prediction before it started",
                retryable=True,
                keep_prediction=False,
            )
            await self.give_up(verdict)
            return
        if outcome.status == "canceled":
            error = self._error(Verdict(ErrorKind.CANCELED, "canceled on Replicate", False))
            transition = await self.store.cancel(self.record.id, run=self.run, error=error)
            self._logged(transition, "job.canceled")
            return
        transition = await self.store.succeed(
            self.record.id,
            self.run,
            json.dumps(outcome.output),
            prediction_id=self.watch.prediction_id,
        )
        self._logged(transition, "job.succeeded")

    async def give_up(self, verdict: Verdict) -> None:
        """End this attempt with ``verdict``: retry later if allowed and left, else fail the job."""
        attempts_allowed = self.record.max_attempts or self.config.max_attempts
        attempt = self.record.attempts_this_drive
        if verdict.retryable and attempt < attempts_allowed:
            retry_after = self.watch.retry_after_s if verdict.kind is ErrorKind.THROTTLED else None
            delay_s = retry_delay_s(
                attempt,
                base_s=self.config.backoff_base_s,
                max_s=self.config.backoff_max_s,
                retry_after_s=retry_after,
            )
            keep = self.watch.prediction_id if verdict.keep_prediction else None
            unconfirmed = self._unconfirmed_create(verdict)
            self.ctx["leases"].drop(self.record.id)
            transition = await self.store.retry_later(
                self.record.id,
                self.run,
                self._error(verdict, delay_s),
                prediction_id=keep,
                create_unconfirmed_at=unconfirmed,
            )
            self._logged(transition, "job.retrying", error=verdict.message, retry_in_s=delay_s)
            if transition.ok:
                raise Retry()  # no defer: retry_later already set when the job is due
            return
        if verdict.retryable:
            verdict = Verdict(
                verdict.kind,
                f"{verdict.message} (attempt {attempt} of {attempts_allowed}: no attempts left)",
                retryable=False,
                status_code=verdict.status_code,
            )
        transition = await self.store.fail(
            self.record.id, self.run, self._error(verdict), prediction_id=self.watch.prediction_id
        )
        self._logged(transition, "job.failed", error=verdict.message)

    def _unconfirmed_create(self, verdict: Verdict) -> str | None:
        """The earliest create of this job whose answer is still unknown (ISO), if any."""
        if self.watch.prediction_id is not None:
            return None
        times = []
        if verdict.ambiguous_create and self.watch.create_sent_at is not None:
            times.append(self.watch.create_sent_at)
        earlier = self.record.create_unconfirmed_at
        if earlier is not None and not self._looked_up:
            times.append(earlier.isoformat())
        return min(times, default=None)

    def _error(self, verdict: Verdict, retry_in_s: float | None = None) -> ErrorInfo:
        return ErrorInfo(
            kind=verdict.kind,
            message=verdict.message,
            attempt=self.record.attempts,
            at=clock.now(),
            status_code=verdict.status_code,
            prediction_id=self.watch.prediction_id,
            retry_in_s=retry_in_s,
        )

    async def _hand_over(self) -> None:
        """The worker is shutting down: give the job back for another worker to go on with."""
        self.ctx["leases"].drop(self.record.id)
        try:
            transition = await asyncio.shield(
                self.store.hand_over(self.record.id, self.run, self.watch.prediction_id)
            )
        except Exception as exc:  # its lease runs out instead: recovered, not lost
            self.log.warning("job.hand_over_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._logged(transition, "job.handed_over")

    async def _cancel_remote(self) -> None:
        prediction_id = self.watch.prediction_id
        if prediction_id is None:
            return
        try:
            await asyncio.shield(self.predictions.cancel(prediction_id))
            self.log.info("prediction.canceled")
        except Exception as exc:
            self.log.warning("prediction.cancel_failed", error=f"{type(exc).__name__}: {exc}")

    def _logged(self, transition: Transition, event: str, **fields: Any) -> None:
        if transition.ok:
            level = "error" if event == "job.failed" else "info"
            getattr(self.log, level)(event, **fields)
        else:
            # A user canceled the job meanwhile, or another worker took it over: its state stands.
            self.log.warning(
                "job.outcome_discarded",
                outcome=event,
                reason=transition.status,
                state=transition.previous,
            )
