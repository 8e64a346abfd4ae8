"""Start and stop predq's processes for local runs: the demo, the tests, the soak and the bench.

Everything is a real subprocess, logging to a file, that dies with the process that started it
(Linux: SIGTERM on the parent's death), so a killed test run or bench leaves no servers behind:

- the sandbox (``python -m sandbox``): ``SandboxProcess``, ready once it prints where it listens;
- workers (``python -m arq worker.main.Settings``, exactly what production runs): ``start_worker``;
- the webhook receiver (``python -m worker.webhook_receiver``): ``ReceiverProcess``;
- anything else (the bench's bare arq worker): ``spawn``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORKER_COMMAND = (sys.executable, "-m", "arq", "worker.main.Settings")
READY_PREFIX = "sandbox listening on "
READY_TIMEOUT_S = 30.0
RECEIVER_PATH = "/replicate/webhook"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for children that must not outlive the process that started them (Linux:
    SIGTERM on the parent's death; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether ``port`` can be bound on the loopback interface right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def clean_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) without any predq, Replicate or Redis settings: the
    base every launched process gets before its own settings, so nothing leaks in by accident."""
    source = os.environ if environ is None else environ
    return {
        name: value
        for name, value in source.items()
        if not name.startswith(("PREDQ_", "REPLICATE_", "BENCH_")) and name != "REDIS_URL"
    }


def spawn(
    command: Sequence[str], env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """``command`` with ``env`` as its whole environment, output appended to ``log_path``.

    It runs in a session of its own: a Ctrl-C in the terminal reaches only the process that
    started it, which stops its children in order (``stop``) instead of all at once."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )


def start_worker(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """One ``arq worker.main.Settings`` process with ``env`` as its whole environment."""
    return spawn(WORKER_COMMAND, env, log_path)


def stop(processes: Iterable[subprocess.Popen[bytes]], timeout_s: float = 40) -> None:
    """SIGTERM each running process, wait up to ``timeout_s`` in all, then SIGKILL the rest."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SandboxProcess:
    """A ``python -m sandbox`` subprocess on a free port; ``url`` is where it listens."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sandbox", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                env=clean_env() | {"SANDBOX_TOKEN": ""},
                preexec_fn=die_with_parent,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"the sandbox did not start: {log_path.read_text()[-2000:]}")
        self.url = line.removeprefix(READY_PREFIX)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int | None:
        """SIGTERM it and wait; returns its exit code."""
        stop([self.process])
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


class ReceiverProcess:
    """``python -m worker.webhook_receiver`` on a free loopback port, healthy once constructed.

    Without ``PREDQ_WEBHOOK_SECRET`` in ``env`` it asks ``REPLICATE_BASE_URL`` (the sandbox) for
    the signing secret at start-up, as it asks Replicate.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        command = (sys.executable, "-m", "worker.webhook_receiver", "--host", "127.0.0.1",
                   "--port", str(self.port))  # fmt: skip
        self.process = spawn(command, env, log_path)
        from devkit.wait import eventually_blocking

        eventually_blocking(self.healthy, timeout_s=READY_TIMEOUT_S, what="the webhook receiver")

    @property
    def url(self) -> str:
        """The webhook URL workers send Replicate (``PREDQ_WEBHOOK_URL``)."""
        return f"http://127.0.0.1:{self.port}{RECEIVER_PATH}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the webhook receiver exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        stop([self.process])


class S3Server:
    """An S3-compatible server on a free loopback port (moto's, ``moto_server``), with
    ``bucket`` created: what the output-store tests and the bench copy files into."""

    def __init__(self, log_path: Path, bucket: str = "predq-outputs") -> None:
        self.port = free_port()
        self.bucket = bucket
        command = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                   "-p", str(self.port)]  # fmt: skip
        self.process = spawn(command, clean_env(), log_path)
        from devkit.wait import eventually_blocking

        eventually_blocking(self._bucket_made, timeout_s=READY_TIMEOUT_S, what="the S3 server")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, prefix: str = "outputs") -> dict[str, str]:
        """The settings that point predq's output store at this server."""
        return {
            "PREDQ_OUTPUT_STORE": f"s3://{self.bucket}/{prefix}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "predq-test",
            "AWS_SECRET_ACCESS_KEY": "predq-test-secret-0000",
        }

    def _bucket_made(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError("the S3 server exited at start")
        try:
            return httpx.put(f"{self.endpoint}/{self.bucket}", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        stop([self.process])


class ApiProcess:
    """``predq serve`` on a free loopback port, ready once constructed; ``url`` is its base."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, port: int | None = None) -> None:
        self.port = port if port is not None and port_is_free(port) else free_port()
        command = (sys.executable, "-m", "producer.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port))  # fmt: skip
        self.log_path = log_path
        self.process = spawn(command, env, log_path)
        from devkit.wait import eventually_blocking

        eventually_blocking(self._healthy, timeout_s=READY_TIMEOUT_S, what="predq serve")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"predq serve exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        stop([self.process])
