"""``python -m ops.bench [--only ROW,...] [--keep-logs]``: see ``ops/bench/__init__.py``."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

import ops.bench
from ops.bench.rows import ROWS, bench_main


def main(argv: list[str] | None = None) -> int:
    description = (ops.bench.__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m ops.bench", description=description)
    parser.add_argument("--only", help="comma-separated rows: " + ",".join(r.key for r in ROWS))
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs even if all ran")
    args = parser.parse_args(argv)
    rows = ROWS
    if args.only:
        wanted = args.only.split(",")
        rows = [r for r in ROWS if r.key in wanted]
        if len(rows) != len(wanted):
            parser.error(f"unknown row in --only; rows: {', '.join(r.key for r in ROWS)}")
    workdir = Path(tempfile.mkdtemp(prefix="predq-bench-"))
    console = Console(width=None if sys.stdout.isatty() else 140)
    started = time.monotonic()
    results = asyncio.run(bench_main(rows, workdir, console))
    ran = all(r.error is None for r in results)
    console.print(f"total {time.monotonic() - started:.0f} s", markup=False, highlight=False)
    if ran and not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        console.print(f"logs kept in {workdir}", markup=False, highlight=False)
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
