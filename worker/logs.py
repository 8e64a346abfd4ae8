"""Logging, configured once per process at its composition root (the worker, the receiver).

structlog renders JSON when stderr is not a terminal (or ``PREDQ_LOG_FORMAT=json``) and a readable
console format otherwise; arq's stdlib logging goes through the same renderer. Modules only ever do
``structlog.get_logger(__name__)``.

A redaction processor runs on every event, structlog's and stdlib's alike. It masks tokens, not
words:

- a value that *is* a configured secret (the Replicate token, the Redis password), whatever its
  length;
- a configured secret of ``MIN_EMBEDDED_SECRET_CHARS`` or more characters wherever it appears
  inside a longer text (a real token is long and never a word: ``r8_`` + 37 characters);
- the credential of any ``Bearer`` header and the password of any URL (``scheme://user:pw@host``),
  configured or not.

A short secret inside a longer text is left alone on purpose: masking the demo's old token
``sandbox`` turned ``sandbox/fail`` into ``***/fail``. Choose real, long secrets.

Above DEBUG, the libraries' per-job lines are dropped: arq's start/finish/retry lines (predq logs
every state change itself, with its fields) and httpx's line per request (the metrics count
requests). Rendering them was about 8% of a busy worker's CPU at INFO.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]
MASK = "***"
#: Configured secrets at least this long are masked inside longer texts too.
MIN_EMBEDDED_SECRET_CHARS = 8
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(?=@)", re.I)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)[^\s'\",}]+", re.I)


class Redactor:
    """Masks secrets in text (see the module docstring for what counts)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._exact = frozenset(s for s in secrets if s)
        embedded = sorted((s for s in self._exact if len(s) >= MIN_EMBEDDED_SECRET_CHARS), key=len)
        self._embedded = tuple(reversed(embedded))

    def text(self, value: str) -> str:
        if value in self._exact:
            return MASK
        for secret in self._embedded:
            if secret in value:
                value = value.replace(secret, MASK)
        if "://" in value:
            value = _URL_PASSWORD.sub(rf"\g<head>{MASK}", value)
        if "earer" in value:
            value = _BEARER.sub(rf"\g<head>{MASK}", value)
        return value

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """A structlog processor: every value of the event, rendered as text where needed."""
        for key, value in event.items():
            if isinstance(value, int | float | bool | type(None)):
                continue
            text = value if isinstance(value, str) else str(value)
            masked = self.text(text)
            if masked is not text and masked != text:
                event[key] = masked
        return event


def configure_logging(
    level: str = "INFO",
    fmt: LogFormat = "auto",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and the stdlib root logger (arq logs through it) for this process.

    ``stream`` defaults to stderr (tests capture it)."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    redact = Redactor(secrets)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=stream is None,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _ArqPerJobLines(logging.Filter):
    """Drops arq's per-job INFO lines (``"%6.2fs → job(...)"``, ``"%6.2fs ← job ● ..."``, the
    retry and abort ones); its start-up, health and shutdown lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and record.msg.startswith("%6.2fs")
        )


def quiet_per_job_lines(level: str) -> None:
    """Drop the libraries' per-job lines unless ``level`` is DEBUG."""
    if level.upper() == "DEBUG":
        return
    arq_worker = logging.getLogger("arq.worker")
    if not any(isinstance(f, _ArqPerJobLines) for f in arq_worker.filters):
        arq_worker.addFilter(_ArqPerJobLines())
    logging.getLogger("httpx").setLevel(logging.WARNING)
