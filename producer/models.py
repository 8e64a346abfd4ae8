"""The wire contract: what producers send (JobRequest) and what everyone reads (JobRecord).

Records are carried as JSON (pydantic v2), never pickle. ``JobRecord.model_dump(mode="json")`` is the
object ``predq status --json`` prints.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from producer.callbacks import check_url
from producer.errors import InputTooLarge, InvalidInput, InvalidModelRef, InvalidRequest

#: ``owner/name`` or ``owner/name:version``, the forms the replicate client accepts.
MODEL_REF = re.compile(
    r"^(?P<owner>[A-Za-z0-9][A-Za-z0-9_.-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)"
    r"(?::(?P<version>[A-Za-z0-9]+))?$"
)
IDEMPOTENCY_KEY_MAX_CHARS = 256
MAX_ATTEMPTS_LIMIT = 100
ATTEMPT_TIMEOUT_LIMIT_S = 24 * 3600.0


class JobState(StrEnum):
    """Where a job is. ``succeeded``, ``failed`` and ``canceled`` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})


class ErrorKind(StrEnum):
    """Why an attempt ended badly; worker/retry.py maps every exception to one of these."""

    TIMEOUT = "timeout"  # our per-attempt deadline passed (the prediction was canceled)
    THROTTLED = "throttled"  # Replicate answered 429
    TRANSIENT = "transient"  # 5xx, connection or read errors: worth another attempt
    PERMANENT = "permanent"  # 4xx input errors: another attempt would fail the same way
    CONFIG = "config"  # 401/402/403: the token, the account or its credit
    MODEL = "model"  # the prediction itself failed
    CANCELED = "canceled"  # canceled by a user or on Replicate
    CRASHED = "crashed"  # the worker running the attempt died
    STORAGE = "storage"  # the output files could not be copied to the output store
    INTERNAL = "internal"  # a bug or an unexpected response: not retried blindly


class JobPhase(StrEnum):
    """What a running job is doing right now (``JobRecord.phase``)."""

    WAITING_FOR_RATE_LIMIT = "waiting_for_rate_limit"  # its create waits for the shared budget
    WAITING_FOR_MODEL_SLOT = "waiting_for_model_slot"  # its model's concurrency cap is reached
    CREATING = "creating"  # the create request is on its way
    STARTING = "starting"  # the prediction boots at Replicate
    PROCESSING = "processing"  # the model runs
    STORING_OUTPUTS = "storing_outputs"  # its output files are being copied to the output store


class OutputFile(BaseModel):
    """One output file, copied where it outlives Replicate's one-hour deletion.

    ``url`` is its durable location (``s3://bucket/key`` or ``file:///path``); a browser gets it
    through ``Producer.file_url``. ``source_url`` is where Replicate served it (a ``data:`` URI
    is kept as ``data:<media type>``).
    """

    model_config = ConfigDict(frozen=True)

    url: str
    source_url: str
    content_type: str
    size_bytes: int = Field(ge=0)
    sha256: str


class ErrorInfo(BaseModel):
    """One attempt's error, as kept on the record (the latest in ``error``, all in ``errors``)."""

    model_config = ConfigDict(frozen=True)

    kind: ErrorKind
    message: str
    attempt: int = Field(ge=0)
    at: datetime
    status_code: int | None = None
    prediction_id: str | None = None
    #: How long the worker waits before the next attempt (None when none follows).
    retry_in_s: float | None = None


def encode_input(value: Any, *, max_bytes: int) -> str:
    """``value`` as compact JSON, after checking it is a JSON object no larger than ``max_bytes``.

    Raises InvalidInput or InputTooLarge with a message that says exactly what was wrong.
    """
    if not isinstance(value, dict):
        raise InvalidInput(f"input must be a JSON object, got {type(value).__name__}")
    try:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"input is not JSON-serializable: {exc}") from None
    size = len(encoded.encode())
    if size > max_bytes:
        raise InputTooLarge(f"input is {size:,} bytes as JSON; the limit is {max_bytes:,} bytes")
    return encoded


def check_model_ref(model: object) -> str:
    """``model`` if it is ``owner/name`` or ``owner/name:version``; raises InvalidModelRef."""
    if not isinstance(model, str) or not MODEL_REF.match(model):
        raise InvalidModelRef(
            f"model must be 'owner/name' or 'owner/name:version', got {str(model)[:200]!r}"
        )
    return model


def split_model_ref(model: str) -> tuple[str, str | None] | None:
    """``("owner/name", version or None)`` for a model reference; None if it is not one."""
    match = MODEL_REF.match(model)
    if match is None:
        return None
    return f"{match['owner']}/{match['name']}", match["version"]


class JobRequest(BaseModel):
    """A validated enqueue request. Build it with ``JobRequest.build``, which checks everything."""

    model_config = ConfigDict(frozen=True)

    model: str
    input_json: str
    idempotency_key: str | None = None
    max_attempts: int | None = None
    attempt_timeout_s: float | None = None
    stream: bool = False
    callback_url: str | None = None

    @classmethod
    def build(
        cls,
        model: object,
        input: object,
        *,
        max_input_bytes: int,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        attempt_timeout_s: float | None = None,
        stream: bool = False,
        callback_url: str | None = None,
    ) -> JobRequest:
        """Validate every argument; raises an InvalidRequest subclass naming the bad one."""
        ref = check_model_ref(model)
        encoded = encode_input(input, max_bytes=max_input_bytes)
        if idempotency_key is not None and not (
            isinstance(idempotency_key, str)
            and 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX_CHARS
            and idempotency_key.isprintable()
        ):
            raise InvalidRequest(
                f"idempotency_key must be 1-{IDEMPOTENCY_KEY_MAX_CHARS} printable characters"
            )
        if max_attempts is not None and not (
            isinstance(max_attempts, int) and 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT
        ):
            raise InvalidRequest(
                f"max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT}, "
                f"got {max_attempts!r}"
            )
        if attempt_timeout_s is not None and not (
            isinstance(attempt_timeout_s, int | float)
            and 0 < attempt_timeout_s <= ATTEMPT_TIMEOUT_LIMIT_S
        ):
            raise InvalidRequest(
                f"attempt_timeout_s must be a number of seconds in (0, {ATTEMPT_TIMEOUT_LIMIT_S:.0f}]"
                f", got {attempt_timeout_s!r}"
            )
        return cls(
            model=ref,
            input_json=encoded,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            attempt_timeout_s=float(attempt_timeout_s) if attempt_timeout_s is not None else None,
            stream=_flag("stream", stream),
            callback_url=check_url(callback_url) if callback_url is not None else None,
        )


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false, got {value!r}")
    return value


class CallbackState(BaseModel):
    """How the completion callback of a job is getting on."""

    model_config = ConfigDict(frozen=True)

    #: ``pending`` (queued or being retried), ``delivered``, or ``failed`` (given up).
    status: str = "pending"
    #: The ``webhook-id`` of every attempt (receivers dedupe on it).
    message_id: str | None = None
    attempts: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    next_attempt_at: datetime | None = None


class JobRecord(BaseModel):
    """Everything known about one job. Only producer.store.JobStore writes it.

    ``output`` is the prediction's output, with every file replaced by its durable ``url`` (see
    ``files``). ``attempts`` counts attempts started (a worker crash resumes the same attempt and counts in
    ``recoveries`` instead). ``error`` is the latest attempt's error; ``errors`` keeps every one.
    ``max_attempts`` and ``attempt_timeout_s`` are this job's overrides (None: the worker's default).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    state: JobState
    model: str
    input: dict[str, Any]
    output: Any = None
    error: ErrorInfo | None = None
    errors: list[ErrorInfo] = Field(default_factory=list)
    attempts: int = 0
    recoveries: int = 0
    #: How many times this job was re-driven out of ``failed`` (each time with fresh attempts).
    redrives: int = 0
    max_attempts: int | None = None
    attempt_timeout_s: float | None = None
    #: Whether the model's output is streamed into the job's events as it is produced.
    stream: bool = False
    #: Where the final record is POSTed (signed), and how that is going.
    callback_url: str | None = None
    callback: CallbackState | None = None
    prediction_id: str | None = None
    idempotency_key: str | None = None
    #: The output files, copied to the output store; ``output`` names them by ``url``.
    files: list[OutputFile] = Field(default_factory=list)
    #: While running: what it is doing, how far (0-1, when the model's logs say) and the logs' tail.
    phase: JobPhase | None = None
    progress: float | None = None
    #: The worker running it (``host:pid:...``, see ``predq workers``).
    worker: str | None = None
    logs: str | None = None
    #: Replicate's metrics of the prediction once it ended (``predict_time``, ``total_time``, s).
    metrics: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Bookkeeping for the worker, not part of the JSON contract:
    #: ``attempts`` when the job was last re-driven; this drive's budget counts from here.
    attempt_base: int = Field(0, exclude=True)
    #: When an attempt's create got no answer (the prediction may exist): look for it first.
    create_unconfirmed_at: datetime | None = Field(None, exclude=True)
    #: The last streamed event already in the job's events (a resumed stream goes on after it).
    stream_last_id: str | None = Field(None, exclude=True)

    @property
    def is_final(self) -> bool:
        return self.state.is_final

    @property
    def attempts_this_drive(self) -> int:
        """Attempts since the job was created or last re-driven (what ``max_attempts`` bounds)."""
        return self.attempts - self.attempt_base
