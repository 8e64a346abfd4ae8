"""The worker's composition root: ``arq worker.main.Settings``.

arq reads its settings from class attributes when it imports this module, so this is the one place
where the worker reads the environment (``WorkerConfig.from_env(os.environ)``), once. Everything else
gets the config, the Redis pool, the JobStore and the replicate client through arq's ctx, made in
``on_startup`` (inside the worker's event loop) and closed in ``on_shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any, cast

import redis.exceptions
import structlog
from arq.connections import RedisSettings
from arq.worker import func
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff

from producer.keys import JOB_FUNCTION
from producer.logs import configure_logging
from producer.models import ATTEMPT_TIMEOUT_LIMIT_S
from producer.store import JobStore
from worker import arq_patches
from worker.config import WorkerConfig
from worker.jobs import WorkerContext, run_prediction
from worker.lease import Leases
from worker.model_slots import ModelSlots
from worker.ratelimit import RateLimiter
from worker.replicate_client import Predictions
from worker.webhook_wait import WebhookWaiters

log = structlog.get_logger(__name__)

#: arq's own timeout never preempts ours: the longest per-job deadline plus room to record it.
ARQ_JOB_TIMEOUT_S = int(ATTEMPT_TIMEOUT_LIMIT_S) + 600
#: arq's try counter counts crashes and shutdowns too; predq counts attempts itself.
ARQ_MAX_TRIES = 1_000_000


def serialize(data: dict[str, Any]) -> bytes:
    """arq payloads as JSON, never pickle (``default=str`` so arq can record an exception)."""
    return json.dumps(data, default=str).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(raw))


def redis_settings(config: WorkerConfig) -> RedisSettings:
    """arq's connection settings: commands are retried with backoff through a Redis restart.

    The URL is read by redis-py's own parser (as producers read it: percent-decoding, and
    ``?password=``), not arq's ``from_dsn``, which ignores both.
    """
    url = parse_url(config.redis_url)
    settings = RedisSettings(
        host=url.get("host", "localhost"),
        port=int(url.get("port", 6379)),
        database=int(url.get("db", 0)),
        username=url.get("username"),
        password=url.get("password"),
        ssl=url.get("connection_class") is SSLConnection,
        unix_socket_path=url.get("path"),
    )
    settings.conn_timeout = int(max(1, config.redis_timeout_s))
    settings.conn_retries = 30
    settings.conn_retry_delay = 1
    settings.max_connections = config.concurrency + 50
    settings.retry_on_timeout = True
    # OSError too: a refused connection (Redis restarting) surfaces as ConnectionRefusedError.
    settings.retry_on_error = [
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        OSError,
    ]
    settings.retry = RedisRetry(ExponentialBackoff(cap=2.0, base=0.1), 30)
    return settings


def build_settings(environ: Mapping[str, str]) -> type:
    """The class arq reads its Worker arguments from, for the configuration in ``environ``."""
    config = WorkerConfig.from_env(environ)
    arq_patches.apply()

    async def on_startup(ctx: dict[str, Any]) -> None:
        if ctx.get("configure_logging", True):  # an embedding process (a test) may say no
            configure_logging(config.log_level, config.log_format, secrets=config.secrets())
            arq_logger = logging.getLogger("arq")
            arq_logger.handlers.clear()  # arq's CLI adds one; ours is the root's
            arq_logger.setLevel(config.log_level.upper())  # arq's CLI pins it at INFO
        job_ctx = cast(WorkerContext, ctx)
        job_ctx["config"] = config
        job_ctx["store"] = JobStore(ctx["redis"], config)
        budgets = config.budgets()
        limiter = RateLimiter(ctx["redis"], budgets) if budgets else None
        # ctx may carry an HTTP transport (tests run the sandbox in-process through one).
        waiters = WebhookWaiters(ctx["redis"]) if config.webhook_url else None
        job_ctx["predictions"] = Predictions(
            config, transport=ctx.get("http_transport"), limiter=limiter, waiters=waiters
        )
        slots = ModelSlots(ctx["redis"], config.model_concurrency, lease_s=config.lease_s)
        job_ctx["model_slots"] = slots
        leases = Leases(
            ctx["redis"],
            queue_name=config.queue_name,
            lease_s=config.lease_s,
            arq_claim_s=ARQ_JOB_TIMEOUT_S + 10,
        )
        job_ctx["leases"] = leases
        job_ctx["background"] = [
            asyncio.create_task(leases.keep_renewing()),
            asyncio.create_task(slots.keep_renewing()),
        ]
        if waiters is not None:
            job_ctx["background"].append(asyncio.create_task(waiters.listen()))
        log.info(
            "worker.started",
            queue=config.queue_name,
            concurrency=config.concurrency,
            rate_limits={kind: budget.per_min for kind, budget in budgets.items()},
            model_caps=config.model_concurrency,
            webhooks=config.webhook_url is not None,
            redis=config.redis_url_redacted,
            replicate=config.replicate_base_url or "https://api.replicate.com",
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        job_ctx = cast(WorkerContext, ctx)
        for task in job_ctx.get("background", []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        predictions = job_ctx.get("predictions")
        if predictions is not None:
            await predictions.aclose()
        log.info("worker.stopped")

    class Settings:
        functions = (
            func(
                run_prediction,  # type: ignore[arg-type]
                name=JOB_FUNCTION,
                timeout=ARQ_JOB_TIMEOUT_S,
                max_tries=ARQ_MAX_TRIES,
                keep_result=0,
            ),
        )
        queue_name = config.queue_name
        max_jobs = config.concurrency
        # Running jobs' queue scores sit in the future (see worker/lease.py), so a small read
        # window suffices: it only ever holds due jobs.
        queue_read_limit = max(100, 2 * config.concurrency)
        poll_delay = config.queue_poll_s
        job_timeout = ARQ_JOB_TIMEOUT_S
        max_tries = ARQ_MAX_TRIES
        keep_result = 0
        job_completion_wait = config.shutdown_grace_s
        health_check_interval = 10
        job_serializer = staticmethod(serialize)
        job_deserializer = staticmethod(deserialize)

    Settings.on_startup = staticmethod(on_startup)  # type: ignore[attr-defined]
    Settings.on_shutdown = staticmethod(on_shutdown)  # type: ignore[attr-defined]
    Settings.redis_settings = redis_settings(config)  # type: ignore[attr-defined]
    Settings.config = config  # type: ignore[attr-defined]
    return Settings


Settings = build_settings(os.environ)
