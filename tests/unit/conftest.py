"""The unit tier's worker: arq's own Worker in-process, on fakeredis, against the sandbox app
through ``httpx.ASGITransport`` (no sockets, no subprocesses), so each hard path of a job runs in
milliseconds. The integration tier repeats the important ones with real processes and HTTP.

    async def test_x(workers: InProcessWorkers) -> None:
        [record] = await workers.run(("sandbox/echo", {}))          # burst: until the queue is empty
        async with workers.running(PREDQ_LEASE_S="1") as worker:     # a polling worker
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import arq.worker
import fakeredis
import httpx
import pytest
import uvicorn
from arq.connections import ArqRedis

from devkit.launch import free_port
from devkit.wait import eventually
from producer.client import Producer
from producer.config import Config
from producer.models import JobRecord
from producer.store import JobStore
from sandbox.app import create_app
from sandbox.config import SandboxConfig
from worker.main import build_settings

TOKEN = "r8_unit-test-token-0123456789"
#: Worker settings that make retries and polling fast enough for the unit tier.
ENV = {
    "REPLICATE_API_TOKEN": TOKEN,
    "REPLICATE_BASE_URL": "http://sandbox",
    "PREDQ_BACKOFF_BASE_S": "0.01",
    "PREDQ_BACKOFF_MAX_S": "0.05",
    "PREDQ_POLL_INTERVAL_S": "0.01",
    "PREDQ_QUEUE_POLL_S": "0.01",
    "PREDQ_CREATE_WAIT_S": "0",
    "PREDQ_CREATES_PER_MIN": "0",
    "PREDQ_REQUESTS_PER_MIN": "0",
}


async def _no_info(*_: Any) -> None:
    """fakeredis has no INFO command, which arq's start-up log uses."""


class InProcessWorkers:
    """Makes arq Workers sharing one fakeredis and one sandbox app."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis, config: Config, outputs: Path) -> None:
        self.redis = redis
        #: Output files go to a directory of the test's own.
        self.env = {**ENV, "PREDQ_OUTPUT_STORE": outputs.as_uri()}
        self.config = config.model_copy(update={"output_store": outputs.as_uri()})
        self.outputs = outputs
        self.app = create_app(SandboxConfig(latency_s=0.02, token=TOKEN, retry_after_s=0))
        self.producer = Producer(config=self.config, redis=redis)
        self.store = JobStore(redis, self.config)
        self._base_url: str | None = None

    @property
    def sandbox(self) -> Any:
        return self.app.state.sandbox

    def stats(self) -> dict[str, int]:
        """The sandbox's counters (created, canceled, polls, ...)."""
        return dict(self.sandbox.store.stats(self.sandbox.clock()))

    async def faults(self, **settings: Any) -> None:
        """``POST /sandbox/faults``: change settings and/or queue one-shot faults."""
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as control:
            (await control.post("/sandbox/faults", json=settings)).raise_for_status()

    @contextlib.asynccontextmanager
    async def served(self) -> AsyncIterator[None]:
        """Serve the sandbox over real HTTP on a loopback port, in this event loop, for the
        block: ``httpx.ASGITransport`` buffers whole responses, so a stream only streams over a
        socket. Workers made meanwhile use it."""
        port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="off")  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        await eventually(lambda: server.started, timeout_s=5, what="the sandbox to listen")
        self._base_url = f"http://127.0.0.1:{port}"
        try:
            yield
        finally:
            self._base_url = None
            self.sandbox.release_holds()
            server.should_exit = True
            await task

    def make(self, *, burst: bool, **env: str) -> arq.worker.Worker:
        """A Worker with the production Settings for ``ENV`` plus ``env``."""
        over_http = {"REPLICATE_BASE_URL": self._base_url} if self._base_url else {}
        kwargs = arq.worker.get_kwargs(build_settings({**self.env, **over_http, **env}))
        kwargs.pop("redis_settings")
        transport = None if self._base_url else httpx.ASGITransport(app=self.app)
        return arq.worker.Worker(
            **kwargs,
            redis_pool=ArqRedis(pool_or_conn=self.redis.connection_pool),
            burst=burst,
            handle_signals=False,
            ctx={"http_transport": transport},
        )

    async def run(
        self, *jobs: tuple[str, dict[str, Any]], env: dict[str, str] | None = None, **enqueue: Any
    ) -> list[JobRecord]:
        """Enqueue ``jobs`` (``enqueue``'s keyword arguments apply to each), run a burst worker
        until the queue is empty, and return their records."""
        queued = [await self.producer.enqueue(model, data, **enqueue) for model, data in jobs]
        worker = self.make(burst=True, **(env or {}))
        try:
            await worker.main()
        finally:
            await worker.close()
        records = await self.producer.get_many([job.id for job in queued])
        assert all(r is not None for r in records)
        return [r for r in records if r is not None]

    @contextlib.asynccontextmanager
    async def running(self, **env: str) -> AsyncIterator[arq.worker.Worker]:
        """A polling worker for the block; on exit it stops as a SIGKILL would leave nothing
        unfinished: running jobs are cancelled (and handed back), then it closes."""
        worker = self.make(burst=False, **env)
        task = asyncio.create_task(worker.async_run())
        await eventually(lambda: "leases" in worker.ctx, timeout_s=5, what="worker start-up")
        try:
            yield worker
        finally:
            # Jobs still running (or finishing) are cancelled, as a shutdown would end them; arq's
            # close() would raise their CancelledError before its on_shutdown closes clients.
            worker.handle_sig(signal.SIGUSR1)
            await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
            worker.tasks.clear()
            await worker.close()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def record_when(self, job_id: str, check: Any, timeout_s: float = 5) -> JobRecord:
        """The job's record once ``check(record)`` is true."""

        async def ready() -> JobRecord | None:
            record = await self.producer.get(job_id)
            return record if record is not None and check(record) else None

        found: JobRecord = await eventually(ready, timeout_s=timeout_s, what=f"job {job_id}")
        return found


@pytest.fixture
def workers(
    fake_redis: fakeredis.FakeAsyncRedis,
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> InProcessWorkers:
    monkeypatch.setattr(arq.worker, "log_redis_info", _no_info)
    return InProcessWorkers(fake_redis, config, tmp_path / "outputs")
