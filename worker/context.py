"""WorkerContext: arq's ctx, typed. Made in ``worker.main``'s on_startup, closed in on_shutdown."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from producer.store import JobStore
from worker.config import WorkerConfig
from worker.lease import Leases
from worker.model_slots import ModelSlots
from worker.outputs import Copier
from worker.replicate_client import Predictions


class WorkerContext(TypedDict):
    """The worker-wide dependencies made in on_startup, plus arq's per-job keys."""

    redis: Any
    config: WorkerConfig
    store: JobStore
    predictions: Predictions
    outputs: Copier
    leases: Leases
    model_slots: ModelSlots
    background: list[asyncio.Task[None]]
    job_id: str
    job_try: int
