"""`serve`: run the sandbox with uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Final

import uvicorn

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.state import Sandbox

#: How long a shutdown waits for held requests (`Prefer: wait`, slow faults) before cutting them.
SHUTDOWN_GRACE_S: Final = 2


def listening_url(host: str, port: int) -> str:
    """The base URL for a listening address (IPv6 hosts in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _SandboxServer(uvicorn.Server):
    """A uvicorn server that prints `sandbox listening on URL` once its socket listens, and
    answers held requests at once when shutting down instead of cutting them off."""

    def __init__(self, config: uvicorn.Config, sandbox: Sandbox) -> None:
        super().__init__(config)
        self.sandbox = sandbox

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"sandbox listening on {listening_url(self.config.host, port)}", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.sandbox.release_holds()
        await super().shutdown(sockets=sockets)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing (see `_absorb_reraised_signals`)."""


@contextlib.contextmanager
def _absorb_reraised_signals() -> Iterator[None]:
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal against the
    # handler that was installed before it started: we install one that ignores it, so `serve`
    # returns normally instead of raising KeyboardInterrupt or dying of SIGTERM.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(config: SandboxConfig) -> None:
    """Serve `create_app(config)` on `config.host:config.port` until SIGINT or SIGTERM.

    Blocks. Once the socket listens, prints exactly one line to stdout and flushes it:
    `sandbox listening on http://HOST:PORT` (the real port when `config.port` is 0). Uses uvloop
    and httptools when installed, no access log, and uvicorn's logging at `config.log_level`.
    Returns normally after a signal: held requests (`Prefer: wait`, slow faults) are answered
    at once, other requests get `SHUTDOWN_GRACE_S` to finish.

    Raises:
        SystemExit: the address cannot be bound (uvicorn logs why, exit code 3).
    """
    app = create_app(config)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_level=config.log_level,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    with _absorb_reraised_signals():
        _SandboxServer(uv_config, app.state.sandbox).run()
