"""JobRecord <-> Redis hash: the one Python owner of the record's layout.

A record is the hash ``keys.job(id)``. Scalar fields are stored as text under the JobRecord field
of the same name; JSON-valued fields (``JSON_FIELDS``) are stored as opaque JSON strings, so user
data never passes through Lua's cjson. Some fields are the store's and the worker's bookkeeping and
never part of a JobRecord (``INTERNAL_FIELDS``): the run token, the hand-over flag, the current
run's start, the last operation id (replay safety) and whether a re-drive resumes the prediction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from producer.models import JobRecord, JobRequest, JobState

JSON_FIELDS = ("input", "output", "error", "errors", "files", "metrics", "callback")
#: Hash fields only the store and workers use; not part of a JobRecord.
INTERNAL_FIELDS = ("run", "resume", "run_started_at", "op", "resume_prediction")


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def pairs(items: list[Any]) -> dict[Any, Any]:
    """``{k: v}`` from a flat ``[k, v, k, v, ...]`` reply (HGETALL inside Lua)."""
    return dict(zip(items[::2], items[1::2], strict=True))


def parse_record(fields: Mapping[Any, Any]) -> JobRecord:
    """A JobRecord from a job hash as Redis returns it (bytes or str keys and values)."""
    data: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
    for name in JSON_FIELDS:
        if name in data:
            data[name] = json.loads(data[name])
    for internal in INTERNAL_FIELDS:
        data.pop(internal, None)
    return JobRecord.model_validate(data)


def new_record_fields(job_id: str, request: JobRequest, now: datetime) -> dict[str, str]:
    """The hash fields of a newly queued job."""
    fields: dict[str, str] = {
        "id": job_id,
        "state": JobState.QUEUED.value,
        "model": request.model,
        "input": request.input_json,
        "errors": "[]",
        "attempts": "0",
        "recoveries": "0",
        "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
    }
    if request.idempotency_key is not None:
        fields["idempotency_key"] = request.idempotency_key
    if request.max_attempts is not None:
        fields["max_attempts"] = str(request.max_attempts)
    if request.attempt_timeout_s is not None:
        fields["attempt_timeout_s"] = repr(request.attempt_timeout_s)
    if request.stream:
        fields["stream"] = "1"
    if request.callback_url is not None:
        fields["callback_url"] = request.callback_url
    return fields
