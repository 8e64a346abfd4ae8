"""The worker's composition root: ``arq worker.main.Settings``.

``Settings`` is built when arq looks it up (a module ``__getattr__``), from ``os.environ``, once:
that is the one place the worker reads the environment. Bad settings end the process with one line
on stderr (exit 6), never a traceback. Everything else gets the config, the Redis pool, the
JobStore and the replicate client through arq's ctx, made in ``on_startup`` (inside the worker's
event loop) and closed in ``on_shutdown``; ``build_settings`` makes the same class for an embedding
process (the unit tier).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, cast

import structlog
from arq.worker import func

from producer import arq_wire
from producer.errors import ConfigError
from worker import arq_patches, lifecycle
from worker.config import WorkerConfig
from worker.context import WorkerContext
from worker.jobs import run_prediction
from worker.logs import configure_logging, quiet_per_job_lines
from worker.redis_settings import redis_settings

log = structlog.get_logger(__name__)

#: arq's try counter counts crashes and shutdowns too; predq counts attempts itself.
ARQ_MAX_TRIES = 1_000_000
EXIT_CONFIG = lifecycle.EXIT_CONFIG


def serialize(data: dict[str, Any]) -> bytes:
    """arq payloads as JSON, never pickle (``default=str`` so arq can record an exception)."""
    return json.dumps(data, default=str).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(raw))


def _use_uvloop() -> None:
    """Give arq's Worker uvloop's event loop: it takes the thread's loop when it is made, which
    is after its CLI looked up ``Settings`` here (about 5% less worker CPU per job, ops/bench/)."""
    try:
        import uvloop
    except ImportError:  # not on this platform
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def build_settings(environ: Mapping[str, str], *, configure_logs: bool = False) -> type:
    """The class arq reads its Worker arguments from, for the configuration in ``environ``.

    ``configure_logs``: set up this process's logging now (the arq CLI; an embedding process
    keeps its own). Raises ConfigError for bad settings.
    """
    config = WorkerConfig.from_env(environ)
    if configure_logs:
        configure_logging(config.log_level, config.log_format, secrets=config.secrets())
        if config.uvloop:
            _use_uvloop()
    arq_patches.apply()

    async def on_startup(ctx: dict[str, Any]) -> None:
        if configure_logs:
            arq_logger = logging.getLogger("arq")
            arq_logger.handlers.clear()  # arq's CLI adds one; ours is the root's
            arq_logger.propagate = True
            arq_logger.setLevel(config.log_level.upper())  # arq's CLI pins it at INFO
            quiet_per_job_lines(config.log_level)
        await lifecycle.start(cast(WorkerContext, ctx), config)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await lifecycle.stop(cast(WorkerContext, ctx))

    class Settings:
        functions = (
            func(
                run_prediction,  # type: ignore[arg-type]
                name=arq_wire.FUNCTION,
                timeout=arq_wire.JOB_TIMEOUT_S,
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
        job_timeout = arq_wire.JOB_TIMEOUT_S
        max_tries = ARQ_MAX_TRIES
        keep_result = 0
        job_completion_wait = config.shutdown_grace_s
        health_check_interval = 10
        job_serializer = staticmethod(serialize)
        job_deserializer = staticmethod(deserialize)

    Settings.on_startup = staticmethod(on_startup)  # type: ignore[attr-defined]
    Settings.on_shutdown = staticmethod(on_shutdown)  # type: ignore[attr-defined]
    Settings.redis_settings = redis_settings(config)  # type: ignore[attr-defined]
    return Settings


_cli_settings: type | None = None


def __getattr__(name: str) -> Any:
    """``worker.main.Settings``, built from ``os.environ`` on first lookup (what arq's CLI does)."""
    global _cli_settings
    if name != "Settings":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _cli_settings is None:
        try:
            _cli_settings = build_settings(os.environ, configure_logs=True)
        except ConfigError as exc:
            print(f"predq worker: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None
    return _cli_settings
