"""A bare arq worker for ``ops.bench``: predq's replicate call and nothing else (the baseline).

    python -m arq ops.bench.bare_arq.Settings        (started by ``python -m ops.bench``)

One function, ``predict(model, input)``, does what predq's job does at its core:
``replicate.Client.async_run(model, input=..., wait=5, use_file_output=False)`` (``Prefer:
wait=5``, as predq's worker asks by default: ``PREDQ_CREATE_WAIT_S``) on one client made in
``on_startup``, with the same timeouts and poll interval as predq's worker. It then INCRs
``DONE_KEY`` (or ``FAILED_KEY``), which is how the bench counts finished jobs.
No records, no leases, no retries, no logging below WARNING; JSON payloads, keep_result=0.

Environment: ``REDIS_URL``, ``REPLICATE_BASE_URL``, ``REPLICATE_API_TOKEN``, ``BENCH_MAX_JOBS``
(arq's max_jobs), ``BENCH_POLL_DELAY_S`` (arq's poll_delay), ``BENCH_POLL_INTERVAL_S`` (the replicate
client's poll interval).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, cast

import httpx
from arq.connections import RedisSettings
from arq.worker import func
from replicate.client import Client as ReplicateClient

QUEUE = "bench:arq:queue"
FUNCTION = "predict"
DONE_KEY = "bench:arq:done"
FAILED_KEY = "bench:arq:failed"

MAX_JOBS = int(os.environ.get("BENCH_MAX_JOBS", "300"))
POLL_DELAY_S = float(os.environ.get("BENCH_POLL_DELAY_S", "0.05"))
POLL_INTERVAL_S = float(os.environ.get("BENCH_POLL_INTERVAL_S", "0.05"))


def serialize(data: dict[str, Any]) -> bytes:
    """The same JSON serializer as predq's worker (``worker.main.serialize``)."""
    return json.dumps(data, default=str).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(raw))


#: The same ``Prefer: wait`` as predq's default ``PREDQ_CREATE_WAIT_S``.
CREATE_WAIT_S = 5


async def predict(ctx: dict[str, Any], model: str, input: dict[str, Any]) -> None:
    """Run one prediction to its end, then count it."""
    client: ReplicateClient = ctx["replicate"]
    try:
        await client.async_run(model, input=input, wait=CREATE_WAIT_S, use_file_output=False)
    except Exception:
        await ctx["redis"].incr(FAILED_KEY)
        raise
    await ctx["redis"].incr(DONE_KEY)


async def on_startup(ctx: dict[str, Any]) -> None:
    logging.getLogger("arq").setLevel(logging.WARNING)  # as predq's PREDQ_LOG_LEVEL=WARNING
    pool = max(100, MAX_JOBS)  # predq's worker/replicate_client.py sizes its pool the same way
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    )
    client = ReplicateClient(
        api_token=os.environ.get("REPLICATE_API_TOKEN"),
        base_url=os.environ.get("REPLICATE_BASE_URL"),
        timeout=httpx.Timeout(30.0, connect=10.0, pool=30.0),
        transport=transport,
    )
    client.poll_interval = POLL_INTERVAL_S
    ctx["replicate"] = client
    ctx["transport"] = transport


async def on_shutdown(ctx: dict[str, Any]) -> None:
    transport: httpx.AsyncHTTPTransport | None = ctx.get("transport")
    if transport is not None:
        await transport.aclose()


class Settings:
    """arq's defaults, except what must match predq's worker for a fair comparison."""

    functions = (func(predict, name=FUNCTION),)
    queue_name = QUEUE
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY_S
    keep_result = 0
    job_serializer = staticmethod(serialize)
    job_deserializer = staticmethod(deserialize)
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    on_startup = staticmethod(on_startup)
    on_shutdown = staticmethod(on_shutdown)
