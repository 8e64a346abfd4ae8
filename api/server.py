"""``predq serve``: the HTTP API under uvicorn (no access log: keys and inputs stay out of logs)."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from api.app import create_app
from api.config import ApiConfig
from producer.errors import ConfigError

EXIT_CONFIG = 6


def main(argv: list[str], *, prog: str = "predq serve") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="predq's HTTP API")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (%(default)s)")
    args = parser.parse_args(argv)
    try:
        config = ApiConfig.from_env(os.environ)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not config.api_keys and not config.read_keys:
        print(f"{prog}: no API keys: set PREDQ_API_KEYS (and PREDQ_API_READ_KEYS)", file=sys.stderr)
        return EXIT_CONFIG
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    return 0
