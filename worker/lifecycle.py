"""A worker process's start and stop: its context made in arq's ``on_startup`` (inside the
worker's event loop) and closed in ``on_shutdown``.

At start the worker checks its Replicate token (``GET /v1/account``) and refuses to run on a 401
or 403 with one clear line (``PREDQ_CHECK_TOKEN=0`` skips it): a bad token used to fail every job
it took, in 40 ms each. Then it registers (worker/registry.py) and starts its background tasks:
the wake subscription, lease renewals, model-slot renewals, the outputs sweeper, callback
deliveries, the heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import structlog
from replicate.exceptions import ReplicateError

from producer.connection import packing_in_c
from producer.store import JobStore
from worker.callbacks import Deliveries
from worker.claim import Claims
from worker.config import WorkerConfig
from worker.context import WorkerContext
from worker.lease import Leases
from worker.metrics import Metrics
from worker.model_slots import ModelSlots
from worker.outputs import Copier, Sweeper
from worker.ratelimit import RateLimiter
from worker.registry import Registration, new_worker_id
from worker.replicate_client import Predictions
from worker.wake import Wake
from worker.webhook_wait import WebhookWaiters

log = structlog.get_logger(__name__)
EXIT_CONFIG = 6


async def start(ctx: WorkerContext, config: WorkerConfig) -> None:
    """Fill ``ctx`` (arq's, with its ``redis``) and start the background tasks."""
    redis: Any = packing_in_c(ctx["redis"])
    transport = ctx.get("http_transport")
    metrics = Metrics()
    if config.metrics_port is not None:
        metrics.serve(config.metrics_port)
    ctx["metrics"] = metrics
    ctx["worker_id"] = new_worker_id()
    ctx["config"] = config
    ctx["finished_by_record"] = set()
    ctx["store"] = JobStore(redis, config)
    await ctx["store"].load_scripts()
    budgets = config.budgets()
    limiter = RateLimiter(redis, budgets) if budgets else None
    waiters = WebhookWaiters(redis) if config.webhook_url else None
    ctx["predictions"] = Predictions(
        config, transport=transport, limiter=limiter, waiters=waiters, metrics=metrics
    )
    if config.check_token:
        await _check_token(ctx["predictions"])
    outputs = config.outputs()
    ctx["outputs"] = Copier(outputs, max_bytes=config.output_max_bytes, transport=transport)
    ctx["model_slots"] = ModelSlots(redis, config.model_concurrency, lease_s=config.lease_s)
    ctx["leases"] = Leases(redis, queue_name=config.queue_name, lease_s=config.lease_s)
    ctx["callbacks"] = Deliveries(ctx["store"], config, counted=metrics.callback)
    registration = Registration(redis, metrics, worker_id=ctx["worker_id"],
                                queue=config.queue_name, concurrency=config.concurrency,
                                creates_per_min=config.creates_per_min,
                                heartbeat_s=config.heartbeat_s)  # fmt: skip
    ctx["registration"] = registration
    ctx["claims"] = Claims(redis, config.queue_name, owner=ctx["worker_id"])
    ctx["wake"] = Wake(redis, queue_name=config.queue_name, idle_poll_s=config.idle_poll_s)
    loops = [
        ctx["wake"].listen(),
        ctx["leases"].keep_renewing(),
        ctx["model_slots"].keep_renewing(),
        ctx["callbacks"].keep_delivering(),
        registration.keep_beating(),
    ]
    if outputs.enabled:
        loops.append(Sweeper(redis, outputs).keep_sweeping())
    if waiters is not None:
        loops.append(waiters.listen())
    ctx["background"] = [asyncio.create_task(loop) for loop in loops]
    log.info(
        "worker.started",
        worker=ctx["worker_id"],
        queue=config.queue_name,
        concurrency=config.concurrency,
        rate_limits={kind: budget.per_min for kind, budget in budgets.items()},
        model_caps=config.model_concurrency,
        webhooks=config.webhook_url is not None,
        redis=config.redis_url_redacted,
        replicate=config.replicate_base_url or "https://api.replicate.com",
        outputs=config.output_store,
        metrics_port=config.metrics_port,
    )


async def stop(ctx: WorkerContext) -> None:
    """Stop the background tasks, deregister, close the clients."""
    for task in ctx.get("background", []):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    registration = ctx.get("registration")
    if registration is not None:
        await registration.leave()
    for client in (ctx.get("predictions"), ctx.get("outputs"), ctx.get("callbacks")):
        if client is not None:
            await client.aclose()
    log.info("worker.stopped")


async def _check_token(predictions: Predictions) -> None:
    """Exit (code 6, one line) when Replicate refuses the token; other errors only warn (a
    Replicate outage must not stop workers from starting)."""
    try:
        await predictions.account()
    except ReplicateError as exc:
        if exc.status in (401, 403):
            line = (
                f"predq worker: Replicate refused REPLICATE_API_TOKEN ({exc.status}): set a valid "
                "token (https://replicate.com/account/api-tokens), or PREDQ_CHECK_TOKEN=0"
            )
            log.error("worker.bad_token", status=exc.status)
            print(line, file=sys.stderr, flush=True)
            await predictions.aclose()
            raise SystemExit(EXIT_CONFIG) from None
        log.warning("worker.token_not_checked", status=exc.status)
    except Exception as exc:
        log.warning("worker.token_not_checked", error=f"{type(exc).__name__}: {exc}")
