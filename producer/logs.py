"""Logging, configured once per process at its composition root (the worker, the CLI).

structlog renders JSON when stderr is not a terminal (or ``PREDQ_LOG_FORMAT=json``) and a readable
console format otherwise. A redaction processor masks every configured secret (the Replicate token,
the Redis password) in every value, so a secret cannot reach a log line even by accident. Modules
only ever do ``structlog.get_logger(__name__)``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]
_MASK = "***"


def _redactor(secrets: Iterable[str]) -> structlog.types.Processor:
    hidden = tuple(s for s in secrets if s and len(s) >= 4)

    def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not hidden:
            return event
        for key, value in event.items():
            text = value if isinstance(value, str) else None
            if text is None and not isinstance(value, int | float | bool | type(None)):
                text = str(value)
            if text is not None and any(s in text for s in hidden):
                for secret in hidden:
                    text = text.replace(secret, _MASK)
                event[key] = text
        return event

    return redact


def configure_logging(
    level: str = "INFO", fmt: LogFormat = "auto", *, secrets: Iterable[str] = ()
) -> None:
    """Set up structlog and the stdlib root logger (arq logs through it) for this process."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    redact = _redactor(secrets)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
