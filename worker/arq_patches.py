"""Changes to arq 0.28's worker loop: it rides out a Redis restart, claims a poll's jobs in one
round trip, and stops polling Redis when idle.

arq is in maintenance-only mode and pinned (0.28.x), so these are applied here, once, when
``worker.main`` is imported (``arq worker.main.Settings`` imports it before building the Worker):

1. ``Worker._poll_iteration`` lets any Redis error escape, which ends ``Worker.main`` and the process
   (python-arq/arq#435, #498). redis-py's own retries cover most of an outage, but not all: a
   connection error while WATCHing is raised as ``WatchError`` and never retried. The wrapper logs
   the error, backs off (0.1 s doubling to 2 s) and lets the loop go on.
2. ``Worker.start_jobs`` claims each job with a WATCH/MULTI transaction of its own (four round
   trips a job). The replacement claims as many of the poll's jobs as there are free slots in one
   Lua call (worker/claim.py: the same keys, checks and TTL) and starts arq's ``run_job`` for each,
   taking a slot (``job_counter`` + semaphore) only for a job it claimed. (arq's own took the slot
   first and kept it when the claim raised: after a few outages a worker had no slots left.)
3. ``Worker.finish_job`` deletes a finished job's arq entries in a transaction of its own (one
   more round trip a job). The transition by which a job's attempt made it final has already
   deleted them (producer/arq_wire.py, "The end"), so for those jobs (``finished_by_record`` in
   the worker's ctx) the wrapper skips it, however arq's run ended (a shutdown may cancel it after
   the move); every other end (a skipped delivery, a hand-back, a crash) is finished by arq.
4. ``Worker._poll_iteration`` polls every ``poll_delay`` even when nothing is queued. When the last
   poll found no job although the worker had free slots, the wrapper first waits for a wake
   (worker/wake.py: a job was queued) or ``PREDQ_IDLE_POLL_S``. Not in burst mode, and a SIGTERM
   ends the wait (arq's graceful shutdown waits for its task list, which only a poll tidies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from signal import Signals
from typing import Any

import redis.exceptions
import structlog
from arq.worker import Worker

from producer import clock
from worker.claim import Claims
from worker.wake import Wake

log = structlog.get_logger(__name__)

REDIS_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.WatchError,
    OSError,
)
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0


def apply() -> None:
    """Install the wrappers on arq's Worker (idempotent)."""
    if getattr(Worker, "_predq_patched", False):
        return
    Worker._poll_iteration = _surviving_redis(_waiting_when_idle(Worker._poll_iteration))  # type: ignore[method-assign,assignment]
    Worker.start_jobs = _noting_found(_claiming_in_batches)  # type: ignore[method-assign,assignment]
    Worker.finish_job = _skipped_when_finished_by_record(Worker.finish_job)  # type: ignore[method-assign,assignment]
    Worker.handle_sig_wait_for_completion = _waking(Worker.handle_sig_wait_for_completion)  # type: ignore[method-assign,assignment]
    Worker._predq_patched = True  # type: ignore[attr-defined]


def _surviving_redis(
    poll: Callable[[Worker], Awaitable[None]],
) -> Callable[[Worker], Awaitable[None]]:
    async def poll_iteration(self: Worker) -> None:
        try:
            await poll(self)
        except REDIS_ERRORS as exc:
            failures = getattr(self, "_predq_redis_failures", 0) + 1
            self._predq_redis_failures = failures  # type: ignore[attr-defined]
            delay_s = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (failures - 1))
            log.warning(
                "worker.redis_unavailable",
                error=f"{type(exc).__name__}: {exc}",
                failures=failures,
                retry_in_s=delay_s,
            )
            await asyncio.sleep(delay_s)
        else:
            if getattr(self, "_predq_redis_failures", 0):
                log.info("worker.redis_back", failures=self._predq_redis_failures)  # type: ignore[attr-defined]
                self._predq_redis_failures = 0  # type: ignore[attr-defined]

    return poll_iteration


async def _claiming_in_batches(self: Worker, job_ids: list[bytes]) -> None:
    """arq's ``start_jobs``: claim the due jobs among ``job_ids`` (read from the queue in score
    order) that fit in the free slots, in one round trip, and run each as arq does."""
    claims: Claims = self.ctx["claims"]  # (made in on_startup, before the first poll)
    # Jobs this worker claimed stay due until their start moves their score on: not again.
    fresh = [job_id for job_id in (i.decode() for i in job_ids) if job_id not in self.tasks]
    claimed = await claims.claim_due(
        fresh,
        limit=self.max_jobs - self.job_counter,
        now_ms=clock.now_ms(),
        ttl_ms=int(self.in_progress_timeout_s * 1000),
    )
    for job_id, score in claimed:
        # The semaphore holds max_jobs + 1 and each running job one: never waits here.
        await self.sem.acquire()
        self.job_counter += 1
        task = self.loop.create_task(self.run_job(job_id, score))
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task


def _skipped_when_finished_by_record(
    finish_job: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    async def finish(self: Worker, job_id: str, finish: bool, *args: Any, **kwargs: Any) -> None:
        finished: set[str] | None = self.ctx.get("finished_by_record") if self.ctx else None
        if finished is not None and job_id in finished:
            finished.discard(job_id)
            return
        await finish_job(self, job_id, finish, *args, **kwargs)

    return finish


def _waiting_when_idle(
    poll: Callable[[Worker], Awaitable[None]],
) -> Callable[[Worker], Awaitable[None]]:
    async def poll_iteration(self: Worker) -> None:
        wake = _wake_of(self)
        idle = getattr(self, "_predq_idle", False) and self.allow_pick_jobs and not self.burst
        if wake is not None and idle:
            await wake.idle()
        self._predq_found = None  # type: ignore[attr-defined]
        await poll(self)
        found = getattr(self, "_predq_found", None)
        self._predq_idle = found == 0  # type: ignore[attr-defined]  # polled (free slots), found none

    return poll_iteration


def _noting_found(
    start_jobs: Callable[[Worker, list[bytes]], Awaitable[None]],
) -> Callable[[Worker, list[bytes]], Awaitable[None]]:
    async def start(self: Worker, job_ids: list[bytes]) -> None:
        self._predq_found = len(job_ids)  # type: ignore[attr-defined]
        await start_jobs(self, job_ids)

    return start


def _waking(handler: Callable[[Worker, Signals], None]) -> Callable[[Worker, Signals], None]:
    def handle(self: Worker, signum: Signals) -> None:
        handler(self, signum)
        wake = _wake_of(self)
        if wake is not None:
            wake.nudge()

    return handle


def _wake_of(worker: Worker) -> Wake | None:
    found = worker.ctx.get("wake") if isinstance(worker.ctx, dict) else None
    return found if isinstance(found, Wake) else None
