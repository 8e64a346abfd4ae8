"""The HTTP API under load: enqueue rate and status latency with 50 concurrent clients, against
the Python producer in the same run."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp

from devkit.launch import ApiProcess, clean_env
from ops.bench.harness import Bench
from ops.bench.table import Check, Result, Target, fmt

CLIENTS = 50
ENQUEUES = 4_000
STATUS_READS = 4_000
KEY = "bench-api-key-0123456789abcdef"


async def row_api(bench: Bench) -> Result:
    """``predq serve`` (one uvicorn process): ENQUEUES ``POST /v1/jobs`` then STATUS_READS
    ``GET /v1/jobs/{id}`` from CLIENTS concurrent keep-alive clients; and the same enqueues
    through one Python Producer with CLIENTS concurrent calls."""
    env = {**clean_env(), "REDIS_URL": bench.redis_url, "PREDQ_API_KEYS": KEY}
    server = ApiProcess(env, bench.log("api"))
    try:
        # aiohttp as the load generator: httpx's client tops out near 450 requests/s on this
        # machine, so it would measure itself, not the server.
        headers = {"Authorization": f"Bearer {KEY}"}
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(server.url, headers=headers, connector=connector,
                                         timeout=timeout) as http:  # fmt: skip
            body = {"model": "sandbox/echo", "input": {"prompt": "a lighthouse at dusk"}}
            ids: list[str] = []

            async def enqueue_one(_: int) -> None:
                async with http.post("/v1/jobs", json=body) as response:
                    response.raise_for_status()
                    ids.append((await response.json())["id"])

            http_enqueue_s = await _spread(enqueue_one, ENQUEUES)
            latencies: list[float] = []

            async def read_one(n: int) -> None:
                started = time.perf_counter()
                async with http.get(f"/v1/jobs/{ids[n % len(ids)]}") as response:
                    response.raise_for_status()
                    await response.read()
                latencies.append(time.perf_counter() - started)

            await _spread(read_one, STATUS_READS)
    finally:
        server.stop()
    await bench.flush()
    async with bench.producer() as producer:

        async def produce_one(_: int) -> None:
            await producer.enqueue("sandbox/echo", {"prompt": "a lighthouse at dusk"})

        python_s = await _spread(produce_one, ENQUEUES)
    ordered = sorted(latencies)
    p99_ms = ordered[int(0.99 * len(ordered))] * 1000
    http_rate, python_rate = ENQUEUES / http_enqueue_s, ENQUEUES / python_s
    return Result(
        measured=http_rate,
        unit="enqueues/s",
        shown=f"{fmt(http_rate)} enqueues/s (Python producer {fmt(python_rate)}/s)",
        checks=[Check(p99_ms, "ms status p99", Target("<", 100, "ms status p99"))],
        notes=[
            f"predq serve (one process) and {CLIENTS} concurrent keep-alive aiohttp clients in "
            f"the bench: {ENQUEUES:,} POST /v1/jobs ({http_enqueue_s:.2f} s), then {STATUS_READS:,} "
            f"GET /v1/jobs/{{id}}: p50 {fmt(statistics.median(ordered) * 1000)} ms, p99 "
            f"{fmt(p99_ms)} ms",
            f"the same {ENQUEUES:,} enqueues through one Producer, {CLIENTS} calls at a time: "
            f"{python_s:.2f} s; both on this 2-core machine with the bench's Redis",
        ],
    )


async def _spread(call: object, total: int) -> float:
    """Run ``call(n)`` for n < total, CLIENTS at a time; the seconds it took."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)

    async def client() -> None:
        while not queue.empty():
            await call(queue.get_nowait())  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.perf_counter() - started
