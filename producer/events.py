"""A job's events: what happened to it, in order, as ``Producer.stream`` yields them.

Every job has an event stream in Redis (``keys.events``: at most ``keys.EVENTS_MAXLEN`` entries,
expiring with the record). The store appends to it in the same Lua call as each change:

    state     the job moved (queued, running, retrying with its error, succeeded, ...)
    progress  a running job's phase and progress changed
    output    a streaming model produced a chunk of output (jobs enqueued with ``stream=True``)
    logs      a streaming model printed a line

Each entry is ``t`` (the type) and ``d`` (its data, JSON). ``Producer.stream`` ends with a
``final`` event that carries the final record (it is not stored: it is the record).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from producer.models import ErrorInfo, JobPhase, JobRecord, JobState
from producer.records import as_text


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: The event's id in the job's stream (``stream(after=id)`` resumes after it).
    id: str
    at: datetime


class StateEvent(_Event):
    type: Literal["state"] = "state"
    state: JobState
    #: The error that sent the job to ``retrying`` or ``failed``.
    error: ErrorInfo | None = None


class ProgressEvent(_Event):
    type: Literal["progress"] = "progress"
    phase: JobPhase | None = None
    progress: float | None = None


class OutputEvent(_Event):
    type: Literal["output"] = "output"
    #: One chunk of a streaming model's output (a token, for a language model).
    output: Any


class LogsEvent(_Event):
    type: Literal["logs"] = "logs"
    logs: str


class FinalEvent(_Event):
    type: Literal["final"] = "final"
    record: JobRecord


JobEvent = Annotated[
    StateEvent | ProgressEvent | OutputEvent | LogsEvent | FinalEvent, Field(discriminator="type")
]
_EVENT: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)


def state_event(state: JobState, error: ErrorInfo | None = None) -> str:
    """A state event's data."""
    data: dict[str, Any] = {"state": state.value}
    if error is not None:
        data["error"] = error.model_dump(mode="json")
    return json.dumps(data)


def progress_event(phase: str | None, progress: str | None) -> str:
    """A progress event's data ("" when neither is given: no event)."""
    data: dict[str, Any] = {}
    if phase:
        data["phase"] = phase
    if progress:
        data["progress"] = float(progress)
    return json.dumps(data) if data else ""


def parse_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    """A JobEvent from one stream entry (``XRANGE``/``XREAD``)."""
    event_id = as_text(entry_id)
    decoded = {as_text(k): as_text(v) for k, v in fields.items()}
    kind = decoded.get("t", "")
    data = json.loads(decoded.get("d", "null"))
    at = datetime.fromtimestamp(int(event_id.split("-")[0]) / 1000, UTC)
    body: dict[str, Any] = {"type": kind, "id": event_id, "at": at}
    if kind == "output":
        body["output"] = data
    elif kind == "logs":
        body["logs"] = data
    else:
        body.update(data)
    return _EVENT.validate_python(body)


def final_event(record: JobRecord, after: str) -> FinalEvent:
    """The stream's last event: the final record (``after``: the last stored event's id)."""
    return FinalEvent(id=after, at=record.finished_at or record.updated_at, record=record)
