"""The ``predq`` job commands: each one Producer call (or a few), shown by producer/cli_show.py."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from producer.cli_show import dead_letter_line, job_line, render, stats_text, worker_line
from producer.client import Producer
from producer.config import Config
from producer.errors import (
    FileUnavailable,
    InvalidRequest,
    JobNotFound,
    JobNotRetryable,
    WaitTimeout,
)
from producer.events import FinalEvent, OutputEvent, StateEvent
from producer.models import JobRecord, JobState

EXIT_JOB_UNSUCCESSFUL = 1
_RETRY_ALL_LIMIT = 100_000


def parse_input(text: str) -> Any:
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


async def _show_queue(producer: Producer, args: argparse.Namespace) -> None:
    """``predq jobs``, ``predq workers``, ``predq stats``."""
    if args.command == "jobs":
        states = [JobState(s) for s in args.state] if args.state else None
        page = await producer.list_jobs(states, model=args.model, limit=args.limit)
        for record in page.jobs:
            print(record.model_dump_json() if args.json else job_line(record))
    elif args.command == "workers":
        for worker in await producer.workers():
            print(worker.model_dump_json() if args.json else worker_line(worker))
    else:
        stats = await producer.stats()
        print(stats.model_dump_json() if args.json else stats_text(stats))


def _show(record: JobRecord, as_json: bool) -> None:
    print(record.model_dump_json() if as_json else render(record))


def _final_code(record: JobRecord) -> int:
    return 0 if record.state is JobState.SUCCEEDED else EXIT_JOB_UNSUCCESSFUL


async def run_job_command(args: argparse.Namespace, config: Config) -> int:
    async with Producer(config=config) as producer:
        if args.command == "enqueue":
            record = await producer.enqueue(
                args.model,
                parse_input(args.input),
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
                print(dead.model_dump_json() if args.json else dead_letter_line(dead))
            return 0
        elif args.command == "retry":
            return await _retry(producer, args)
        elif args.command == "files":
            return await _download(producer, args.id, Path(args.output_dir))
        elif args.command in ("jobs", "workers", "stats"):
            await _show_queue(producer, args)
            return 0
        else:
            record = await producer.cancel(args.id)
            _show(record, args.json)
            return 0
    _show(record, args.json)
    return _final_code(record)
