"""The ``predq`` command: enqueue, inspect, wait for and cancel jobs; run the sandbox and the demo.

    predq enqueue MODEL --input JSON [--idempotency-key K] [--stream] [--wait [--timeout S]]
    predq status ID [--json]          predq wait ID [--timeout S] [--follow] [--json]
    predq cancel ID [--json]          predq failed [--limit N] [--json]
    predq retry ID | --all-failed     predq files ID [-o DIR]
    predq jobs [--state S] [--model M] [--limit N] [--json]
    predq workers [--json]            predq stats [--json]
    predq serve [--host H --port P]   predq sandbox [...]           predq demo [...]

Exit codes: 0 success; 1 the job ended failed or canceled (or is not failed, for ``retry``); 2 bad
arguments or input; 3 no such job (or file); 4 Redis unavailable; 5 ``--timeout`` passed before the job
finished; 6 bad settings. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from producer.cli_jobs import run_job_command
from producer.config import Config
from producer.errors import (
    ConfigError,
    FileUnavailable,
    InvalidRequest,
    JobNotFound,
    JobNotRetryable,
    PredqError,
    RedisUnavailable,
    WaitTimeout,
)
from producer.models import JobState

EXIT_JOB_UNSUCCESSFUL = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REDIS = 4
EXIT_TIMEOUT = 5
EXIT_CONFIG = 6
_EXIT_CODES: tuple[tuple[type[PredqError], int], ...] = (
    (InvalidRequest, EXIT_USAGE),
    (JobNotFound, EXIT_NOT_FOUND),
    (RedisUnavailable, EXIT_REDIS),
    (WaitTimeout, EXIT_TIMEOUT),
    (ConfigError, EXIT_CONFIG),
    (JobNotRetryable, EXIT_JOB_UNSUCCESSFUL),
    (FileUnavailable, EXIT_NOT_FOUND),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="Redis to use (default: $REDIS_URL)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enqueue = commands.add_parser("enqueue", help="queue a prediction job")
    enqueue.add_argument("model", help="owner/name or owner/name:version")
    enqueue.add_argument("--input", required=True, help="JSON object, @file.json, or - (stdin)")
    enqueue.add_argument("--idempotency-key", help="return the existing job for this key")
    enqueue.add_argument("--max-attempts", type=int, help="override the worker's default")
    enqueue.add_argument("--attempt-timeout", type=float, metavar="S", help="per-attempt deadline")
    enqueue.add_argument(
        "--stream", action="store_true", help="relay the model's output live (wait --follow)"
    )
    enqueue.add_argument("--wait", action="store_true", help="wait for the job to finish")
    enqueue.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S")
    enqueue.add_argument("--json", action="store_true", help="print the record as JSON")

    for name, text in (("status", "show a job"), ("cancel", "cancel a job that has not finished")):
        command = commands.add_parser(name, help=text)
        command.add_argument("id")
        command.add_argument("--json", action="store_true", help="print the record as JSON")

    wait = commands.add_parser("wait", help="wait for a job to finish")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    wait.add_argument(
        "--follow", action="store_true", help="print its output as it arrives, state on stderr"
    )
    wait.add_argument("--json", action="store_true", help="print the record as JSON")

    files = commands.add_parser("files", help="download a job's output files from the store")
    files.add_argument("id")
    files.add_argument("-o", "--output-dir", default=".", metavar="DIR", help="where (%(default)s)")

    failed = commands.add_parser("failed", help="list failed jobs (the dead letters)")
    failed.add_argument("--limit", type=int, default=100, help="at most this many (%(default)s)")
    failed.add_argument("--json", action="store_true", help="one JSON record per line")

    jobs = commands.add_parser("jobs", help="list jobs, most recently changed first")
    jobs.add_argument("--state", action="append", choices=[s.value for s in JobState],
                      help="only these states (repeat for several)")  # fmt: skip
    jobs.add_argument("--model", help="only this model (owner/name: every version)")
    jobs.add_argument("--limit", type=int, default=50, help="at most this many (%(default)s)")
    jobs.add_argument("--json", action="store_true", help="one JSON record per line")

    for name, text in (("workers", "list the worker processes, alive and dead"),
                       ("stats", "the queue now, and its last hour and day")):  # fmt: skip
        command = commands.add_parser(name, help=text)
        command.add_argument("--json", action="store_true", help="print JSON")

    retry = commands.add_parser("retry", help="re-drive failed jobs: same id, fresh attempts")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="the failed job to retry")
    which.add_argument("--all-failed", action="store_true", help="retry every failed job")
    retry.add_argument("--json", action="store_true", help="print the record(s) as JSON")

    # Dispatched lazily: its flags belong to the sandbox (predq sandbox --help lists them), and
    # its imports (uvicorn, starlette) must not slow down every other command.
    commands.add_parser(
        "sandbox", help="run the local Replicate-compatible API server", add_help=False
    )
    commands.add_parser("serve", help="run the HTTP API (and dashboard)", add_help=False)

    demo = commands.add_parser("demo", help="run the whole system locally and show it working")
    demo.add_argument("--jobs", type=int, default=50, help="jobs to enqueue (%(default)s)")
    demo.add_argument("--workers", type=int, default=2, help="worker processes (%(default)s)")
    demo.add_argument("--model", help="model for every job (default: sandbox models)")
    demo.add_argument("--input", help="with --model: the input JSON for every job")
    demo.add_argument("--keep", action=argparse.BooleanOptionalAction, default=None,
                      help="keep the dashboard up after the jobs until Ctrl-C (default: at a "
                      "terminal)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "sandbox":
        return _sandbox(rest)
    if args.command == "serve":
        return _serve(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        config = Config.from_env(os.environ, redis_url=args.redis_url)
        if args.command == "demo":
            return _demo(args, config)
        return asyncio.run(run_job_command(args, config))
    except PredqError as exc:
        print(f"predq: {exc}", file=sys.stderr)
        return next((code for kind, code in _EXIT_CODES if isinstance(exc, kind)), 1)
    except KeyboardInterrupt:
        return 130


def _extra_missing(command: str, extra: str, exc: ImportError) -> int:
    print(
        f"predq {command}: needs the '{extra}' extra ({exc.name or exc} is not installed): "
        f"pip install 'predq[{extra}]'",
        file=sys.stderr,
    )
    return EXIT_USAGE


def _sandbox(argv: list[str]) -> int:
    try:
        from sandbox.cli import main as sandbox_main
    except ImportError as exc:
        return _extra_missing("sandbox", "sandbox", exc)
    return sandbox_main(argv, prog="predq sandbox")


def _serve(argv: list[str]) -> int:
    try:
        from api.server import main as serve_main
    except ImportError as exc:
        return _extra_missing("serve", "api", exc)
    return serve_main(argv)


def _demo(args: argparse.Namespace, config: Config) -> int:
    try:
        from devkit.demo import run_demo
    except ImportError as exc:
        return _extra_missing("demo", "devkit", exc)
    return run_demo(args, config, environ=os.environ)


if __name__ == "__main__":
    sys.exit(main())
