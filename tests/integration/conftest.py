"""The integration tier: a real redis-server, the sandbox over HTTP and real worker processes.

Each is started here, on free loopback ports, and never a shared instance: the session's Redis is
flushed before every test, the sandbox reset. Workers are ``arq worker.main.Settings`` subprocesses
whose logs go to files under pytest's tmp dir (printed when a test fails).
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from devkit.control import SandboxControl
from devkit.launch import ApiProcess, SandboxProcess, clean_env, start_worker, stop
from devkit.local_redis import LocalRedis
from devkit.wait import eventually, eventually_blocking
from producer.client import Producer
from producer.config import Config
from producer.models import JobRecord

SANDBOX_TOKEN = "r8_sandbox-test-token-0123456789"
#: Worker settings that make retries and polling fast enough for tests.
FAST_WORKER_ENV = {
    "PREDQ_BACKOFF_BASE_S": "0.05",
    "PREDQ_BACKOFF_MAX_S": "1",
    "PREDQ_POLL_INTERVAL_S": "0.05",
    "PREDQ_QUEUE_POLL_S": "0.05",
    # An idle worker polls again this soon (a retry's short backoff is not waited out for 2 s);
    # tests/integration/test_end_to_end.py has the test of the wake itself.
    "PREDQ_IDLE_POLL_S": "0.1",
    "PREDQ_CREATE_TIMEOUT_S": "2",
    "PREDQ_LOG_FORMAT": "json",
    "PREDQ_LOG_LEVEL": "DEBUG",
    # predq's own rate limits are off unless a test is about them (tests/integration/test_limits.py).
    "PREDQ_CREATES_PER_MIN": "0",
    "PREDQ_REQUESTS_PER_MIN": "0",
    # Creates return at once and predictions are polled, so tests can see them running;
    # held creates (Prefer: wait) have their own test.
    "PREDQ_CREATE_WAIT_S": "0",
}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    with LocalRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


class Sandbox(SandboxControl):
    """The sandbox subprocess, controlled through its endpoints."""

    def __init__(self, log_path: Path) -> None:
        args = ["--latency", "0.2", "--log-level", "warning", "--token", SANDBOX_TOKEN,
                "--seed", "7"]  # fmt: skip
        self._process = SandboxProcess(args, log_path)
        self.url = self._process.url
        super().__init__(self.url, token=SANDBOX_TOKEN)

    def close(self) -> None:
        super().close()
        self._process.stop()


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    server = Sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.log")
    yield server
    server.close()


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    sandbox_server.reset()
    sandbox_server.faults(
        throttle_rate=0, error_rate=0, slow_rate=0, lost_create_rate=0, latency_s=0.2,
        retry_after_s=1, wait_returns_processing=False, output_ttl_s=3600, boot_s=None,
    )  # fmt: skip
    return sandbox_server


class Workers:
    """Starts and stops ``arq worker.main.Settings`` processes for one test."""

    def __init__(self, redis_url: str, sandbox: Sandbox, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.sandbox = sandbox
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, count: int = 1, **env: str) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            log_path = self.log_dir / f"worker-{len(self.processes)}.log"
            full_env = {
                **clean_env(),
                **FAST_WORKER_ENV,
                "PREDQ_OUTPUT_STORE": outputs_dir(self.log_dir).as_uri(),
                "REDIS_URL": self.redis_url,
                "REPLICATE_BASE_URL": self.sandbox.url,
                "REPLICATE_API_TOKEN": SANDBOX_TOKEN,
                **env,
            }
            process = start_worker(full_env, log_path)
            self.processes.append(process)
            self.logs.append(log_path)
            started.append(process)
        for process, log_path in zip(started, self.logs[-count:], strict=True):
            eventually_blocking(
                functools.partial(_started, process, log_path),
                timeout_s=20,
                what="a worker to start",
            )
        return started

    def stop_all(self) -> None:
        stop(self.processes)

    def log_text(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-6000:]}" for path in self.logs)


def _started(process: subprocess.Popen[bytes], log_path: Path) -> bool:
    if process.poll() is not None:
        pytest.fail(f"worker exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
    return "worker.started" in log_path.read_text()


@pytest.fixture
def workers(
    redis_url: str, sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Workers]:
    pool = Workers(redis_url, sandbox, tmp_path)
    yield pool
    pool.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(pool.log_text())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def predq(
    redis_url: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``predq`` command against ``redis_url`` (``env``: more settings)."""
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        env={**clean_env(), "REDIS_URL": redis_url, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def outputs_dir(tmp_path: Path) -> Path:
    """Where one test's workers copy output files (its producer reads them there)."""
    return tmp_path / "outputs"


@pytest.fixture
async def producer(redis_url: str, tmp_path: Path) -> AsyncIterator[Producer]:
    config = Config.from_env({}, redis_url=redis_url, output_store=outputs_dir(tmp_path).as_uri())
    async with Producer(config=config) as producer:
        yield producer


async def record_when(
    producer: Producer, job_id: str, check: Callable[[JobRecord], Any], timeout_s: float = 30
) -> JobRecord:
    """The job's record once ``check(record)`` is true; the test fails after ``timeout_s``."""
    last: list[JobRecord | None] = [None]

    async def ready() -> JobRecord | None:
        last[0] = record = await producer.get(job_id)
        return record if record is not None and check(record) else None

    found: JobRecord = await eventually(
        ready, timeout_s=timeout_s, what=f"job {job_id}", show=lambda: last[0]
    )
    return found


API_FULL_KEY = "integration-full-key-0123456789"
API_READ_KEY = "integration-read-key-0123456789"


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    """``predq serve`` for this test's Redis and output store, with a full and a read key."""
    env = {
        **clean_env(),
        "REDIS_URL": redis_url,
        "PREDQ_OUTPUT_STORE": outputs_dir(tmp_path).as_uri(),
        "PREDQ_API_KEYS": API_FULL_KEY,
        "PREDQ_API_READ_KEYS": API_READ_KEY,
    }
    server = ApiProcess(env, tmp_path / "api.log")
    yield server
    server.stop()
