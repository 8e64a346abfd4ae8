"""The poll-loop wrappers in worker/arq_patches.py, on stand-ins for arq's Worker (the batch
claim is in test_claim.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis.exceptions
from arq.worker import Worker

from worker import arq_patches


async def test_the_poll_loop_outlives_redis_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def no_sleep(delay_s: float) -> None:
        sleeps.append(delay_s)

    monkeypatch.setattr(arq_patches.asyncio, "sleep", no_sleep)
    outcomes: list[BaseException | None] = [
        redis.exceptions.ConnectionError("down"),
        ConnectionRefusedError(111, "refused"),
        None,
    ]

    async def poll(self: Any) -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    wrapped = arq_patches._surviving_redis(poll)
    worker: Any = SimpleNamespace()
    for _ in range(3):
        await wrapped(worker)
    assert sleeps == [0.1, 0.2]
    assert worker._predq_redis_failures == 0


async def test_other_errors_still_surface() -> None:
    async def poll(self: Any) -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await arq_patches._surviving_redis(poll)(SimpleNamespace())


def test_applied_once_by_the_worker_settings() -> None:
    from worker.main import build_settings

    build_settings({})  # what arq's CLI does when it looks up worker.main.Settings
    assert getattr(Worker, "_predq_patched", False)
    before = Worker._poll_iteration
    arq_patches.apply()
    assert Worker._poll_iteration is before


async def test_arqs_finish_is_skipped_only_for_jobs_their_transition_finished() -> None:
    calls: list[tuple[str, bool]] = []

    async def finish_job(self: Any, job_id: str, finish: bool, *rest: Any) -> None:
        calls.append((job_id, finish))

    finish = arq_patches._skipped_when_finished_by_record(finish_job)
    worker: Any = SimpleNamespace(ctx={"finished_by_record": {"done", "cut-short"}})
    await finish(worker, "done", True, None, 0, False, None, None)
    await finish(worker, "cut-short", False, None, 0, False, None, None)  # canceled after its end
    assert calls == [] and worker.ctx["finished_by_record"] == set()
    await finish(worker, "done", True, None, 0, False, None, None)  # once only
    await finish(worker, "other", True, None, 0, False, None, None)
    await finish(worker, "retried", False, None, 0, False, 5, None)
    assert calls == [("done", True), ("other", True), ("retried", False)]
