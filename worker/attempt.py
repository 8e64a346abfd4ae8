"""Attempt: one claimed attempt at a job, from the prediction to the record's next state.

The order of writes matters and is always the same: the record first, then Replicate. A deadline
or a final failure records its outcome (which forgets the prediction when it is to be dropped) and
only then cancels the prediction on Replicate, so a worker that dies in between leaves a record
that still points at a running prediction (resumed later), never one that points at a prediction
predq itself canceled. Outcomes written by an attempt whose job was taken over by another worker
are refused (run token) and the arq run is handed back (``HandBack``) instead of finishing, so
arq never deletes the queue entry of a job another worker is running.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any, Literal

import structlog

from producer import clock
from producer.models import ErrorInfo, ErrorKind, JobPhase, JobRecord
from producer.store import Transition
from worker.context import WorkerContext
from worker.lease import Hold
from worker.lost_create import adopt_lost_create
from worker.observe import PredictionWatch
from worker.outputs import StorageFailed, find_files
from worker.progress import ProgressReporter
from worker.replicate_client import Outcome
from worker.retry import Verdict, classify, retry_delay_s
from worker.stream_relay import StreamRelay

log = structlog.get_logger(__name__)
#: Kinds of failure after which the prediction itself is over (no need to cancel it).
_PREDICTION_OVER = frozenset({ErrorKind.MODEL, ErrorKind.CANCELED, ErrorKind.STORAGE})


class HandBack(Exception):
    """End this arq run without finishing the job: the record already says when (and whether)
    the job is due again. worker/jobs.py turns it into arq's ``Retry``."""


class Attempt:
    """One claimed attempt: runs the prediction under the deadline and records how it ended."""

    def __init__(self, ctx: WorkerContext, record: JobRecord, run: str, hold: Hold) -> None:
        """``hold`` is the job's lease: released before a write that sets when the job is due
        again, so that no renewal in flight moves that time."""
        self.hold = hold
        self.record = record
        self.run = run
        self.store = ctx["store"]
        self.config = ctx["config"]
        self.predictions = ctx["predictions"]
        self.copier = ctx["outputs"]
        self.metrics = ctx["metrics"]
        self._finished_by_record = ctx["finished_by_record"]
        self._last_error: ErrorKind | None = None
        self.reporter = ProgressReporter(self.store, record.id, run)
        self.watch = PredictionWatch(
            on_created=self._created,
            on_update=self._updated,
            on_rate_wait=self._waiting_for_rate_limit,
            prediction_id=record.prediction_id,
        )
        self.relay = (
            StreamRelay(
                self.predictions, self.store, job_id=record.id, run=run, after=record.stream_last_id
            )
            if record.stream
            else None
        )
        self.log = log.bind(
            job_id=record.id,
            attempt=record.attempts,
            model=record.model,
            prediction_id=record.prediction_id,
        )
        self._task: asyncio.Task[Outcome] | None = None
        #: Why the attempt was stopped from outside: a user canceled the job, or it was taken over.
        self._stopped: Literal["canceled", "stale"] | None = None
        #: The earliest create of this job whose answer is unknown, until it has been looked for.
        self._unconfirmed: datetime | None = record.create_unconfirmed_at
        #: The prediction's own output, kept on the record if its files cannot be stored.
        self._raw_output: Any = None
        self._started = time.monotonic()

    @property
    def timeout_s(self) -> float:
        return self.record.attempt_timeout_s or self.config.attempt_timeout_s

    def stop(self, reason: Literal["canceled", "stale"]) -> None:
        """Stop the prediction task; ``execute`` then cancels the prediction on Replicate.

        A create in flight is let through first (its id arrives in ``_created``, which stops the
        task then), so that the prediction it makes can be canceled instead of left running.
        """
        self._stopped = reason
        if self._task is not None and not self.watch.creating:
            self._task.cancel()

    async def _created(self, prediction_id: str) -> None:
        self.log = self.log.bind(prediction_id=prediction_id)
        phase = JobPhase.PROCESSING if self.watch.status == "processing" else JobPhase.STARTING
        status = await self.store.set_prediction_id(
            self.record.id, self.run, prediction_id, phase=phase
        )
        self.reporter.seen(phase=phase.value)
        if self.relay is not None:
            self.relay.start(self.watch.last)
        self.log.info("prediction.created", stored=status)
        if status in ("illegal", "stale"):
            self._stopped = "canceled" if status == "illegal" else "stale"
        if self._stopped is not None and self._task is not None:
            self._task.cancel()

    async def _updated(self, prediction: dict[str, Any]) -> None:
        await self.reporter.prediction(prediction)
        if self.relay is not None:
            self.relay.start(prediction)  # a resumed prediction: its stream goes on from here

    async def _waiting_for_rate_limit(self, seconds: float) -> None:
        await self.reporter.phase(JobPhase.WAITING_FOR_RATE_LIMIT)
        self.log.debug("prediction.waiting_for_rate_limit", seconds=round(seconds, 3))

    async def execute(self) -> None:
        """Run the attempt to its end; raises HandBack when the job goes back to the queue."""
        try:
            await self._execute()
        finally:
            if self.relay is not None:
                await self.relay.stop()

    async def _execute(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run())
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                outcome = await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stopped is None or current is None or current.cancelling():
                await self._hand_over()  # the worker is shutting down
                raise
            await self._cancel_remote(self.watch.prediction_id)
            self.log.info("job.stopped", reason=self._stopped)
            if self._stopped == "stale":
                raise HandBack("taken over by another worker") from None
            return
        except TimeoutError:
            if not deadline.expired():
                raise
            verdict = Verdict(
                ErrorKind.TIMEOUT,
                f"the attempt's deadline of {self.timeout_s:g} s passed; "
                "its prediction was canceled",
                retryable=True,
                keep_prediction=False,
                ambiguous_create=self.watch.prediction_id is None
                and self.watch.create_sent_at is not None,
            )
            await self.give_up(verdict, cancel=self.watch.prediction_id)
            return
        except Exception as exc:
            verdict = classify(exc, prediction_known=self.watch.prediction_id is not None)
            self.log.debug("attempt.error", exc_info=True)
        else:
            try:
                await self._finish(outcome)
            except asyncio.CancelledError:
                await self._hand_over()  # shut down while copying outputs: the next worker will
                raise
            return
        await self.give_up(verdict)

    async def _run(self) -> Outcome:
        if self.watch.prediction_id is None and self._unconfirmed is not None:
            found = await adopt_lost_create(
                self.predictions,
                self.store,
                job_id=self.record.id,
                run=self.run,
                model=self.record.model,
                input=self.record.input,
                since=self._unconfirmed,
            )
            self._unconfirmed = None
            if found is not None:
                self.watch.prediction_id = found
                self.log = self.log.bind(prediction_id=found)
        # Replicate stops the prediction by itself a margin after this attempt's deadline, in
        # case no worker is left to cancel it.
        remaining_s = self.timeout_s - (time.monotonic() - self._started)
        self.watch.cancel_after_s = remaining_s + self.config.cancel_after_margin_s
        return await self.predictions.run(
            self.record.model, self.record.input, self.watch, create_wait_s=self._create_wait_s()
        )

    def _create_wait_s(self) -> int:
        """How long the create may be held: at most a third of the attempt's deadline, so that
        a held create never eats the time the attempt has to notice a slow prediction; never,
        for a streaming job (its stream is read while the prediction runs)."""
        if self.record.stream:
            return 0
        return min(self.config.create_wait_s, int(self.timeout_s / 3))

    async def _finish(self, outcome: Outcome) -> None:
        if self.relay is not None:
            await self.relay.finish()  # every streamed chunk before the final state
        if outcome.status in ("aborted", "deadline"):
            stopped = (
                "its Cancel-After deadline passed before it started (aborted, not billed)"
                if outcome.status == "aborted"
                else "it was stopped at its Cancel-After deadline"
            )
            verdict = Verdict(
                ErrorKind.TIMEOUT, f"Replicate ended the prediction: {stopped}", True,
                keep_prediction=False,
            )  # fmt: skip
            await self.give_up(verdict)
            return
        if outcome.status == "canceled":
            error = self._error(Verdict(ErrorKind.CANCELED, "canceled on Replicate", False))
            self.hold.release()  # no renewal may touch the job's queue entry once it is over
            transition = self._ended(
                await self.store.cancel(self.record.id, run=self.run, error=error)
            )
            self._settled(transition, "job.canceled")
            return
        self._raw_output = outcome.output
        if find_files(outcome.output) and self.copier.store.enabled:
            await self.reporter.phase(JobPhase.STORING_OUTPUTS)
        try:
            output, files = await self.copier.copy_all(self.record.id, outcome.output)
        except StorageFailed as exc:
            message = f"copying the output files failed: {exc}"
            await self.give_up(Verdict(ErrorKind.STORAGE, message, exc.transient))
            return
        self.hold.release()
        transition = self._ended(
            await self.store.succeed(
                self.record.id,
                self.run,
                json.dumps(output),
                prediction_id=self.watch.prediction_id,
                files=files,
                metrics=outcome.metrics,
            )
        )
        if not transition.ok:
            await self.copier.discard(files)  # no record will point at them
        self._settled(transition, "job.succeeded", files=len(files))

    async def give_up(self, verdict: Verdict, *, cancel: str | None = None) -> None:
        """End this attempt with ``verdict``: retry later if allowed and left, else fail the job.

        ``cancel`` is a prediction to cancel on Replicate once the outcome is recorded (a final
        failure cancels the attempt's prediction anyway, unless it is already over).
        """
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
            self.hold.release()
            transition = await self.store.retry_later(
                self.record.id,
                self.run,
                self._error(verdict, delay_s),
                prediction_id=keep,
                create_unconfirmed_at=self._unconfirmed_create(verdict),
            )
            await self._cancel_remote(cancel)
            self._settled(transition, "job.retrying", error=verdict.message, retry_in_s=delay_s)
            if transition.ok:
                raise HandBack("retrying later")
            return
        if verdict.retryable:
            verdict = Verdict(
                verdict.kind,
                f"{verdict.message} (attempt {attempt} of {attempts_allowed}: no attempts left)",
                retryable=False,
                status_code=verdict.status_code,
            )
        raw = json.dumps(self._raw_output) if verdict.kind is ErrorKind.STORAGE else None
        self.hold.release()
        transition = self._ended(
            await self.store.fail(
                self.record.id,
                self.run,
                self._error(verdict),
                prediction_id=self.watch.prediction_id,
                output_json=raw,
            )
        )
        if verdict.kind not in _PREDICTION_OVER:
            cancel = cancel or self.watch.prediction_id
        await self._cancel_remote(cancel)
        self._settled(transition, "job.failed", error=verdict.message)

    def _unconfirmed_create(self, verdict: Verdict) -> str | None:
        """The earliest create of this job whose answer is still unknown (ISO), if any."""
        if self.watch.prediction_id is not None:
            return None
        times = []
        if verdict.ambiguous_create and self.watch.create_sent_at is not None:
            times.append(self.watch.create_sent_at)
        if self._unconfirmed is not None:  # not looked for yet (the lookup itself failed)
            times.append(self._unconfirmed.isoformat())
        return min(times, default=None)

    def _error(self, verdict: Verdict, retry_in_s: float | None = None) -> ErrorInfo:
        self._last_error = verdict.kind
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
        unconfirmed = None
        if self.watch.prediction_id is None:
            unconfirmed = self.watch.create_sent_at
        self.hold.release()
        try:
            transition = await asyncio.shield(
                self.store.hand_over(
                    self.record.id,
                    self.run,
                    self.watch.prediction_id,
                    create_unconfirmed_at=unconfirmed,
                )
            )
        except Exception as exc:  # its lease runs out instead: recovered, not lost
            self.log.warning("job.hand_over_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._settled(transition, "job.handed_over", hand_back=False)

    async def _cancel_remote(self, prediction_id: str | None) -> None:
        if prediction_id is None:
            return
        try:
            await asyncio.shield(self.predictions.cancel(prediction_id))
            self.log.info("prediction.canceled", canceled_prediction=prediction_id)
        except Exception as exc:
            self.log.warning("prediction.cancel_failed", error=f"{type(exc).__name__}: {exc}")

    def _count(self, event: str) -> None:
        outcome = event.removeprefix("job.")
        if outcome in ("succeeded", "failed", "canceled"):
            age_s = (clock.now() - self.record.created_at).total_seconds()
            self.metrics.job_finished(self.record.model, outcome, age_s)
        elif outcome == "retrying" and self._last_error is not None:
            self.metrics.retried(self.record.model, self._last_error.value)

    def _ended(self, transition: Transition) -> Transition:
        """Note a final move that took arq's entries with it, at once (before any remote cancel):
        this worker's arq run then skips arq's own finish (worker/arq_patches.py)."""
        if transition.ended_arq:
            self._finished_by_record.add(self.record.id)
        return transition

    def _settled(
        self, transition: Transition, event: str, *, hand_back: bool = True, **fields: Any
    ) -> None:
        """Log how a write went. A write refused because another worker took the job over
        (``stale``) hands the arq run back, so arq does not end a job it no longer runs here."""
        self.log = self.log.bind(prediction_id=self.watch.prediction_id)
        if transition.ok:
            level = "error" if event == "job.failed" else "info"
            getattr(self.log, level)(event, **fields)
            self._count(event)
            return
        # A user canceled the job meanwhile, or another worker took it over: its state stands.
        self.log.warning(
            "job.outcome_discarded",
            outcome=event,
            reason=transition.status,
            state=transition.previous,
        )
        if transition.status == "stale" and hand_back:
            raise HandBack("taken over by another worker")
