"""Start and stop predq's processes for local runs: the demo, the tests, the soak and the bench.

Everything is a real subprocess: the sandbox (``python -m sandbox``) and workers
(``python -m arq worker.main.Settings``, exactly what production runs), each logging to a file.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

WORKER_COMMAND = (sys.executable, "-m", "arq", "worker.main.Settings")
READY_PREFIX = "sandbox listening on "
READY_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for children that must not outlive the process that started them (Linux:
    SIGTERM on the parent's death; elsewhere nothing), so a killed test run leaves no servers."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class SandboxProcess:
    """A ``python -m sandbox`` subprocess; ``url`` is where it listens."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sandbox", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=die_with_parent,
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"the sandbox did not start: {log_path.read_text()[-2000:]}")
        self.url = line.removeprefix(READY_PREFIX)

    def stop(self) -> None:
        stop([self.process])
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_worker(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """One worker process with ``env`` as its whole environment, logging to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(WORKER_COMMAND, env=dict(env), stdout=log, stderr=subprocess.STDOUT)


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
