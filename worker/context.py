"""WorkerContext: arq's ctx, typed. Made in ``worker.main``'s on_startup, closed in on_shutdown."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import httpx

from producer.store import JobStore
from worker.callbacks import Deliveries
from worker.claim import Claims
from worker.config import WorkerConfig
from worker.lease import Leases
from worker.metrics import Metrics
from worker.model_slots import ModelSlots
from worker.outputs import Copier
from worker.registry import Registration
from worker.replicate_client import Predictions
from worker.wake import Wake


class WorkerContext(TypedDict):
    """The worker-wide dependencies made in on_startup, plus arq's per-job keys."""

    redis: Any
    config: WorkerConfig
    store: JobStore
    predictions: Predictions
    outputs: Copier
    callbacks: Deliveries
    leases: Leases
    model_slots: ModelSlots
    metrics: Metrics
    worker_id: str
    registration: Registration
    wake: Wake
    #: arq's claim of a poll's jobs, for this worker (worker/arq_patches.py uses it).
    claims: Claims
    #: An HTTP transport for Replicate and file downloads (tests: the sandbox, in-process).
    http_transport: httpx.AsyncBaseTransport | None
    background: list[asyncio.Task[None]]
    #: Jobs whose attempt made them final here: that transition removed arq's entries for them,
    #: so arq's own finish is skipped (worker/arq_patches.py takes each id out again).
    finished_by_record: set[str]
    job_id: str
    job_try: int
