"""What every bench row runs on: ``Bench`` (the private redis-server, the work directory with the
logs, and context managers that start a sandbox, a worker or the webhook receiver and always stop
it), and the environments the bench's processes get.

Processes are started and stopped with ``devkit.launch`` (they die with the bench); the sandbox is
read and reset through ``devkit.control``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from devkit.control import SandboxControl
from devkit.launch import WORKER_COMMAND, ReceiverProcess, SandboxProcess, clean_env, spawn, stop
from devkit.local_redis import LocalRedis
from producer.client import Producer
from producer.config import Config
from sandbox.clock import parse_iso8601

PREDQ_COMMAND = WORKER_COMMAND
BARE_ARQ_COMMAND = (sys.executable, "-m", "arq", "ops.bench.bare_arq.Settings")
#: How long a stopped worker may take to finish before it is killed.
WORKER_STOP_S = 20
#: Creates and requests per minute for predq's shared rate limiter: far above anything a bench
#: run reaches, so the limiter does all its work (one Redis call per request) but never paces.
#: At Replicate's published limits (the defaults, 600 creates/min) every worker row would only
#: measure the pacing; the limiter's own row measures that.
UNBINDING_PER_MIN = "6000000"
#: The API token every bench process sends (the sandbox checks it only if started with one). Not
#: a word, so that log redaction never has a reason to touch ordinary text.
API_TOKEN = "r8_predq-bench-token-000000000000"
#: What every predq worker in the bench runs with, unless a row says otherwise.
PREDQ_ENV = {
    "PREDQ_CREATES_PER_MIN": UNBINDING_PER_MIN,
    "PREDQ_REQUESTS_PER_MIN": UNBINDING_PER_MIN,
    "PREDQ_LOG_LEVEL": "WARNING",
    "PREDQ_LOG_FORMAT": "json",
    "PREDQ_QUEUE_POLL_S": "0.05",
    # The bench releases parked jobs with a RENAME (worker_run.py), which wakes no idle worker
    # (worker/wake.py wakes them on enqueue): idle workers poll as often as busy ones, so that a
    # run's clock does not start with up to the default 2 s of idle wait.
    "PREDQ_IDLE_POLL_S": "0.05",
    "PREDQ_SHUTDOWN_GRACE_S": "5",
    "REPLICATE_API_TOKEN": API_TOKEN,
}


@dataclass
class Sandbox:
    """A running ``python -m sandbox`` and its control client; async reads run in a thread."""

    process: SandboxProcess
    control: SandboxControl

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.control.stats)

    async def reset(self) -> None:
        await asyncio.to_thread(self.control.reset)

    async def created_times(self) -> list[float]:
        """Every prediction's ``created_at`` (unix seconds), oldest first (read through the list
        endpoint: these requests count in ``requests``, not in ``polls``)."""
        predictions = await asyncio.to_thread(self.control.predictions)
        return sorted(parse_iso8601(p["created_at"]) for p in predictions)


@dataclass
class Worker:
    """A running worker process (predq's, bare arq's) and its log."""

    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"the worker exited with code {code}; see {self.log}")


class Bench:
    """Shared by every row: the private Redis, the work directory, process starters."""

    def __init__(self, redis_server: LocalRedis, workdir: Path) -> None:
        self.redis_server = redis_server
        self.workdir = workdir
        self.redis: aioredis.Redis = aioredis.Redis.from_url(redis_server.url)

    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def flush(self) -> None:
        """Forget every key (each row starts from an empty Redis)."""
        await self.redis.flushall()

    def producer(self) -> Producer:
        return Producer(config=Config.from_env({}, redis_url=self.redis_url))

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    async def redis_pid(self) -> int:
        info = await self.redis.info("server")
        return int(info["process_id"])

    @contextmanager
    def sandbox(self, name: str, *args: str) -> Iterator[Sandbox]:
        process = SandboxProcess(["--log-level", "warning", *args], self.log(name))
        control = SandboxControl(process.url, token=API_TOKEN)
        try:
            yield Sandbox(process, control)
        finally:
            control.close()
            process.stop()

    def predq_env(self, sandbox: Sandbox, **settings: str) -> dict[str, str]:
        """A predq worker's whole environment: the bench's defaults, then ``settings``."""
        outputs = (self.workdir / "outputs").as_uri()
        return {**clean_env(), **PREDQ_ENV, "PREDQ_OUTPUT_STORE": outputs, **settings,
                "REDIS_URL": self.redis_url, "REPLICATE_BASE_URL": sandbox.url}  # fmt: skip

    def bare_env(self, sandbox: Sandbox, **settings: str) -> dict[str, str]:
        return {**clean_env(), **settings, "REDIS_URL": self.redis_url,
                "REPLICATE_BASE_URL": sandbox.url, "REPLICATE_API_TOKEN": API_TOKEN}  # fmt: skip

    @contextmanager
    def webhook_receiver(self, name: str, sandbox: Sandbox) -> Iterator[ReceiverProcess]:
        """The webhook receiver on a free local port, healthy; it asks ``sandbox`` for the signing
        secret at start-up (as it asks Replicate without ``PREDQ_WEBHOOK_SECRET``)."""
        env = {**clean_env(), "REDIS_URL": self.redis_url, "REPLICATE_BASE_URL": sandbox.url,
               "REPLICATE_API_TOKEN": API_TOKEN, "PREDQ_LOG_LEVEL": PREDQ_ENV["PREDQ_LOG_LEVEL"],
               "PREDQ_LOG_FORMAT": PREDQ_ENV["PREDQ_LOG_FORMAT"]}  # fmt: skip
        receiver = ReceiverProcess(env, self.log(name))
        try:
            yield receiver
        finally:
            receiver.stop()

    @contextmanager
    def worker(self, name: str, command: tuple[str, ...], env: dict[str, str]) -> Iterator[Worker]:
        log = self.log(name)
        process = spawn(command, env, log)
        try:
            yield Worker(process, log)
        finally:
            stop([process], timeout_s=WORKER_STOP_S)


async def enqueue_in_batches(
    producer: Producer, jobs: list[dict[str, Any]], batch: int = 1000
) -> None:
    for start in range(0, len(jobs), batch):
        await producer.enqueue_many(jobs[start : start + batch])
