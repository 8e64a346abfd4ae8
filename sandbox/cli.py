"""Command-line flags for the sandbox, reusable by other CLIs (`predq sandbox`).

    python -m sandbox --port 8787 --latency 1 --throttle-rate 0.05 --seed 7

Another parser can take the same flags: `add_arguments(subparser)`, then
`serve(config_from_args(ns))`. Every flag's `dest` starts with `sandbox_`, so they cannot clash
with the host parser's own options.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from sandbox.config import DEFAULT_FAULT_ON, ConfigError, SandboxConfig
from sandbox.server import serve

_DEFAULTS = SandboxConfig()
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's flags to `parser` (dests prefixed `sandbox_`)."""
    d = _DEFAULTS
    add = parser.add_argument
    add(
        "--host",
        dest="sandbox_host",
        default=d.host,
        metavar="HOST",
        help="address to bind (%(default)s)",
    )
    add(
        "--port",
        dest="sandbox_port",
        type=int,
        default=d.port,
        metavar="PORT",
        help="0 = any free port",
    )
    add(
        "--latency",
        dest="sandbox_latency",
        type=float,
        default=d.latency_s,
        metavar="S",
        help="seconds a prediction runs (%(default)s)",
    )
    add(
        "--token",
        dest="sandbox_token",
        default=None,
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' (default: $SANDBOX_TOKEN, else none)",
    )
    for flag, default, what in (
        ("--throttle-rate", d.throttle_rate, "answer 429"),
        ("--error-rate", d.error_rate, "answer a 5xx"),
        ("--slow-rate", d.slow_rate, "hold the response --slow-s seconds"),
        ("--lost-create-rate", d.lost_create_rate, "create, then answer 502 (lost response)"),
    ):
        dest = "sandbox_" + flag[2:].replace("-", "_")
        add(
            flag,
            dest=dest,
            type=float,
            default=default,
            metavar="P",
            help=f"probability per request to {what} ({default})",
        )
    add(
        "--slow-s",
        dest="sandbox_slow_s",
        type=float,
        default=d.slow_s,
        metavar="S",
        help="seconds a slow response is held (%(default)s)",
    )
    add(
        "--lost-delay",
        dest="sandbox_lost_delay_s",
        type=float,
        default=d.lost_delay_s,
        metavar="S",
        help="seconds before a lost create's 502",
    )
    add(
        "--retry-after",
        dest="sandbox_retry_after_s",
        type=int,
        default=d.retry_after_s,
        metavar="S",
        help="Retry-After of injected 429s (%(default)s)",
    )
    add(
        "--fault-on",
        dest="sandbox_fault_on",
        default=",".join(sorted(DEFAULT_FAULT_ON)),
        metavar="KINDS",
        help="request kinds faults hit: create,get,cancel,list,file (%(default)s)",
    )
    add(
        "--seed",
        dest="sandbox_seed",
        type=int,
        default=None,
        metavar="N",
        help="seed for random faults",
    )
    add(
        "--create-limit",
        dest="sandbox_create_limit",
        type=int,
        default=None,
        metavar="N",
        help="creates allowed per sliding minute (default: unlimited)",
    )
    add(
        "--other-limit",
        dest="sandbox_other_limit",
        type=int,
        default=None,
        metavar="N",
        help="other /v1 requests allowed per sliding minute (default: unlimited)",
    )
    add(
        "--wait-returns-processing",
        dest="sandbox_wait_returns_processing",
        action="store_true",
        help="a timed-out Prefer: wait answers 'processing'",
    )
    add(
        "--output-ttl",
        dest="sandbox_output_ttl_s",
        type=float,
        default=d.output_ttl_s,
        metavar="S",
        help="seconds a finished prediction keeps its output and files (%(default)s, as Replicate)",
    )
    add(
        "--boot-s",
        dest="sandbox_boot_s",
        type=float,
        default=None,
        metavar="S",
        help="seconds a prediction stays 'starting' (default: a tenth of its run, at most 0.1)",
    )
    add("--log-level", dest="sandbox_log_level", default=d.log_level, choices=LOG_LEVELS)


def config_from_args(
    ns: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> SandboxConfig:
    """The `SandboxConfig` for parsed flags; `--token` falls back to `SANDBOX_TOKEN` in
    `environ` (default: `os.environ`).

    Raises:
        sandbox.config.ConfigError: a value out of range (the message names it).
    """
    env = os.environ if environ is None else environ
    fault_on = frozenset(kind.strip() for kind in ns.sandbox_fault_on.split(",") if kind.strip())
    return SandboxConfig(
        host=ns.sandbox_host,
        port=ns.sandbox_port,
        latency_s=ns.sandbox_latency,
        token=ns.sandbox_token or env.get("SANDBOX_TOKEN") or None,
        throttle_rate=ns.sandbox_throttle_rate,
        error_rate=ns.sandbox_error_rate,
        slow_rate=ns.sandbox_slow_rate,
        slow_s=ns.sandbox_slow_s,
        lost_create_rate=ns.sandbox_lost_create_rate,
        lost_delay_s=ns.sandbox_lost_delay_s,
        retry_after_s=ns.sandbox_retry_after_s,
        fault_on=fault_on,
        seed=ns.sandbox_seed,
        create_limit_per_min=ns.sandbox_create_limit,
        other_limit_per_min=ns.sandbox_other_limit,
        wait_returns_processing=ns.sandbox_wait_returns_processing,
        output_ttl_s=ns.sandbox_output_ttl_s,
        boot_s=ns.sandbox_boot_s,
        log_level=ns.sandbox_log_level,
    )


def main(argv: list[str] | None = None, *, prog: str = "python -m sandbox") -> int:
    """Run the sandbox from the command line; returns the exit code (2 for bad flags)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local Replicate-compatible API server (see the sandbox package docs).",
    )
    add_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        config = config_from_args(ns)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    serve(config)
    return 0
