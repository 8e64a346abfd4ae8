"""The ``predq`` command: enqueue, inspect, wait for and cancel jobs; run the sandbox and the demo.

    predq enqueue MODEL --input JSON [--idempotency-key K] [--stream] [--wait [--timeout S]]
    predq status ID [--json]          predq wait ID [--timeout S] [--follow] [--json]
    predq cancel ID [--json]          predq failed [--limit N] [--json]
    predq retry ID | --all-failed     predq files ID [-o DIR]
    predq sandbox [...]               predq demo [...]

Exit codes: 0 success; 1 the job ended failed or canceled (or is not failed, for ``retry``); 2 bad
arguments or input; 3 no such job (or file); 4 Redis unavailable; 5 ``--timeout`` passed before the job
finished; 6 bad settings. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from producer.client import Producer
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
from producer.events import FinalEvent, OutputEvent, StateEvent
from producer.models import JobRecord, JobState

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
_OUTPUT_PREVIEW_CHARS = 500
_RETRY_ALL_LIMIT = 100_000


def _parse_input(text: str) -> Any:
    """``--input``: inline JSON, ``@path`` to a JSON file, or ``-`` for standard input."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise InvalidRequest(f"cannot read --input file {text[1:]!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"--input is not valid JSON: {exc}") from None


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

    demo = commands.add_parser("demo", help="run the whole system locally and show it working")
    demo.add_argument("--jobs", type=int, default=50, help="jobs to enqueue (%(default)s)")
    demo.add_argument("--workers", type=int, default=2, help="worker processes (%(default)s)")
    demo.add_argument("--model", help="model for every job (default: sandbox models)")
    demo.add_argument("--input", help="with --model: the input JSON for every job")
    return parser


def render(record: JobRecord) -> str:
    """A record as aligned ``name: value`` lines for people (``--json`` is for programs)."""
    rows: list[tuple[str, Any]] = [
        ("id", record.id),
        ("state", record.state.value),
        ("model", record.model),
        ("attempts", record.attempts),
        ("prediction_id", record.prediction_id or "-"),
        ("created_at", record.created_at.isoformat(timespec="seconds")),
    ]
    if record.phase is not None:
        rows.append(("phase", record.phase.value))
    if record.progress is not None:
        rows.append(("progress", f"{record.progress:.0%}"))
    if record.finished_at is not None:
        rows.append(("finished_at", record.finished_at.isoformat(timespec="seconds")))
    if record.recoveries:
        rows.append(("recoveries", record.recoveries))
    if record.error is not None:
        rows.append(
            ("error", f"[{record.error.kind.value}] {record.error.message.splitlines()[0]}")
        )
    if record.metrics:
        rows.append(("metrics", ", ".join(f"{k} {v:.2f} s" for k, v in record.metrics.items())))
    if record.state is JobState.SUCCEEDED:
        output = json.dumps(record.output)
        if len(output) > _OUTPUT_PREVIEW_CHARS:
            output = output[:_OUTPUT_PREVIEW_CHARS] + "... (--json for all)"
        rows.append(("output", output))
    for n, file in enumerate(record.files):
        rows.append((f"file {n}", f"{file.url} ({file.content_type}, {file.size_bytes:,} bytes)"))
    if record.logs and not record.is_final:
        rows.append(("logs", record.logs.strip().splitlines()[-1][:200]))
    return "\n".join(f"{name + ':':<15}{value}" for name, value in rows)


async def _follow(producer: Producer, job_id: str, timeout_s: float | None) -> JobRecord:
    """``predq wait --follow``: output chunks to stdout as they come, states to stderr."""
    try:
        async with asyncio.timeout(timeout_s):
            async for event in producer.stream(job_id):
                if isinstance(event, OutputEvent):
                    chunk = (
                        event.output if isinstance(event.output, str) else json.dumps(event.output)
                    )
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                elif isinstance(event, StateEvent):
                    print(f"[{event.state.value}]", file=sys.stderr, flush=True)
                elif isinstance(event, FinalEvent):
                    print()
                    return event.record
    except TimeoutError:
        raise WaitTimeout(f"job {job_id!r} is not final after {timeout_s:g} s") from None
    raise JobNotFound(job_id)


async def _download(producer: Producer, job_id: str, directory: Path) -> int:
    """``predq files``: every output file of the job into ``directory``, checked by sha256."""
    record = await producer.get(job_id)
    if record is None:
        raise JobNotFound(job_id)
    if not record.files:
        print(f"job {job_id} has no output files in the store", file=sys.stderr)
        return EXIT_JOB_UNSUCCESSFUL
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a CLI: nothing else runs)
    for n, file in enumerate(record.files):
        path = directory / f"{job_id}-{n}{PurePosixPath(file.url).suffix}"
        digest = hashlib.sha256()
        with path.open("wb") as out:
            async for chunk in producer.open_file(job_id, n):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != file.sha256:
            path.unlink()
            raise FileUnavailable(f"{file.url} does not match its sha256; not kept")
        print(f"{path}  {file.size_bytes:,} bytes  sha256 {file.sha256[:12]}... ok")
    return 0


def _dead_letter_line(record: JobRecord) -> str:
    finished = record.finished_at.isoformat(timespec="seconds") if record.finished_at else "-"
    error = record.error
    reason = f"[{error.kind.value}] {error.message.splitlines()[0]}" if error else "-"
    return f"{record.id}  {finished}  {record.model}  attempts={record.attempts}  {reason}"


async def _retry(producer: Producer, args: argparse.Namespace) -> int:
    if not args.all_failed:
        _show(await producer.retry(args.id), args.json)
        return 0
    count = 0
    # A snapshot, so a job that fails again while this runs is not retried twice.
    for job_id in [r.id for r in await producer.failed(limit=_RETRY_ALL_LIMIT)]:
        try:
            retried = await producer.retry(job_id)
        except (JobNotFound, JobNotRetryable):  # expired or retried meanwhile
            continue
        count += 1
        print(retried.model_dump_json() if args.json else retried.id)
    print(f"retried {count} failed jobs", file=sys.stderr)
    return 0


def _show(record: JobRecord, as_json: bool) -> None:
    print(record.model_dump_json() if as_json else render(record))


def _final_code(record: JobRecord) -> int:
    return 0 if record.state is JobState.SUCCEEDED else EXIT_JOB_UNSUCCESSFUL


async def _run_job_command(args: argparse.Namespace, config: Config) -> int:
    async with Producer(config=config) as producer:
        if args.command == "enqueue":
            record = await producer.enqueue(
                args.model,
                _parse_input(args.input),
                idempotency_key=args.idempotency_key,
                max_attempts=args.max_attempts,
                attempt_timeout_s=args.attempt_timeout,
                stream=args.stream,
            )
            if not args.wait:
                print(record.model_dump_json() if args.json else record.id)
                return 0
            record = await producer.wait(record.id, args.timeout)
        elif args.command == "status":
            found = await producer.get(args.id)
            if found is None:
                raise JobNotFound(args.id)
            _show(found, args.json)
            return 0
        elif args.command == "wait" and args.follow:
            record = await _follow(producer, args.id, args.timeout)
        elif args.command == "wait":
            record = await producer.wait(args.id, args.timeout)
        elif args.command == "failed":
            for dead in await producer.failed(args.limit):
                print(dead.model_dump_json() if args.json else _dead_letter_line(dead))
            return 0
        elif args.command == "retry":
            return await _retry(producer, args)
        elif args.command == "files":
            return await _download(producer, args.id, Path(args.output_dir))
        else:
            record = await producer.cancel(args.id)
            _show(record, args.json)
            return 0
    _show(record, args.json)
    return _final_code(record)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "sandbox":
        return _sandbox(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        config = Config.from_env(os.environ, redis_url=args.redis_url)
        if args.command == "demo":
            return _demo(args, config)
        return asyncio.run(_run_job_command(args, config))
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


def _demo(args: argparse.Namespace, config: Config) -> int:
    try:
        from devkit.demo import run_demo
    except ImportError as exc:
        return _extra_missing("demo", "devkit", exc)
    return run_demo(args, config, environ=os.environ)


if __name__ == "__main__":
    sys.exit(main())
