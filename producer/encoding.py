"""How records and arq payloads look in Redis, and how redis-py's errors look to callers.

Shared by producer/store.py (the one writer) and anything that reads Redis replies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis.exceptions

from producer import keys
from producer.config import Config
from producer.errors import RedisUnavailable
from producer.models import JobRecord

JSON_FIELDS = ("input", "output", "error", "errors")
#: Hash fields only the store and workers use; not part of a JobRecord.
INTERNAL_FIELDS = ("run", "resume", "run_started_at", "op")


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_record(fields: Mapping[Any, Any]) -> JobRecord:
    """A JobRecord from a job hash as Redis returns it (bytes or str keys and values)."""
    data: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
    for name in JSON_FIELDS:
        if name in data:
            data[name] = json.loads(data[name])
    for internal in INTERNAL_FIELDS:
        data.pop(internal, None)
    return JobRecord.model_validate(data)


def arq_payload(job_id: str, enqueue_ms: int) -> str:
    """arq's job payload (JSON, as worker.main deserializes it): only the job id travels."""
    return json.dumps({"t": None, "f": keys.JOB_FUNCTION, "a": [job_id], "k": {}, "et": enqueue_ms})


def pairs(items: list[Any]) -> dict[Any, Any]:
    return dict(zip(items[::2], items[1::2], strict=True))


@contextmanager
def redis_errors(config: Config) -> Iterator[None]:
    """Translate redis-py's failures into RedisUnavailable, with one line that names neither the
    password nor the command's arguments (they hold users' inputs)."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise RedisUnavailable(
            f"Redis at {config.redis_url_redacted} is unavailable: {type(exc).__name__}"
        ) from None
    except redis.exceptions.RedisError as exc:
        raise RedisUnavailable(
            f"Redis at {config.redis_url_redacted} refused the command: {_server_reason(exc)}"
        ) from None


def _server_reason(exc: Exception) -> str:
    """The server's own words (e.g. "OOM command not allowed ..."), without the command that
    redis-py quotes in pipeline errors."""
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    text = first.rsplit("caused error: ", 1)[-1].split(" script: ", 1)[0]
    lines = text.strip().splitlines() or [type(exc).__name__]
    return lines[0][:200]
