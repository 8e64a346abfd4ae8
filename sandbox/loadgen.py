"""A small HTTP load generator for the sandbox's create and get endpoints.

    python -m sandbox.loadgen --url http://127.0.0.1:8787 --connections 64 --duration 10

Each connection loops: create a `sandbox/echo` prediction (no `Prefer`), then GET it, over one
keep-alive HTTP/1.1 connection. It speaks raw HTTP on asyncio streams (uvloop when installed)
because an httpx client would saturate a core long before the server does. Prints one JSON
line: requests, seconds, requests/s, error count and latency percentiles in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
import urllib.parse
from typing import Any


@dataclasses.dataclass
class Tally:
    """What the connections measured, shared by all of them."""

    latencies_s: list[float] = dataclasses.field(default_factory=list)
    errors: int = 0


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def _request(method: str, host: str, path: str, token: str | None, body: bytes = b"") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    url: urllib.parse.SplitResult, token: str | None, deadline: float, tally: Tally
) -> None:
    host = url.hostname or "127.0.0.1"
    reader, writer = await asyncio.open_connection(host, url.port or 80)
    netloc = url.netloc
    body = json.dumps({"input": {"prompt": "load"}}).encode()
    create = _request("POST", netloc, "/v1/models/sandbox/echo/predictions", token, body)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status, payload = await _exchange(reader, writer, create)
            tally.latencies_s.append(time.perf_counter() - started)
            if status != 201:
                tally.errors += 1
                continue
            path = f"/v1/predictions/{json.loads(payload)['id']}"
            started = time.perf_counter()
            status, _ = await _exchange(reader, writer, _request("GET", netloc, path, token))
            tally.latencies_s.append(time.perf_counter() - started)
            tally.errors += status != 200
    finally:
        writer.close()


def _percentile_ms(sorted_s: list[float], fraction: float) -> float:
    if not sorted_s:
        return 0.0
    return round(1000 * sorted_s[min(len(sorted_s) - 1, int(fraction * len(sorted_s)))], 3)


async def run(url: str, connections: int, duration_s: float, token: str | None) -> dict[str, Any]:
    """Drive `connections` create+get loops for `duration_s`; returns the summary."""
    parts = urllib.parse.urlsplit(url)
    tally = Tally()
    started = time.perf_counter()
    deadline = started + duration_s
    await asyncio.gather(*(_connection(parts, token, deadline, tally) for _ in range(connections)))
    elapsed_s = time.perf_counter() - started
    latencies = sorted(tally.latencies_s)
    return {
        "requests": len(latencies),
        "seconds": round(elapsed_s, 3),
        "requests_per_s": round(len(latencies) / elapsed_s, 1),
        "errors": tally.errors,
        "p50_ms": _percentile_ms(latencies, 0.50),
        "p99_ms": _percentile_ms(latencies, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the load, print the JSON summary; exit 1 if any request failed."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.loadgen", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8787")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, metavar="S")
    parser.add_argument("--token", default=None)
    ns = parser.parse_args(argv)
    try:
        import uvloop

        summary = uvloop.run(run(ns.url, ns.connections, ns.duration, ns.token))
    except ImportError:
        summary = asyncio.run(run(ns.url, ns.connections, ns.duration, ns.token))
    print(json.dumps(summary), flush=True)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
