"""The API's request bodies (responses are the producer's own models: JobRecord, JobPage, ...).

Their constraints are the producer's, so that the OpenAPI document says what the server accepts;
what only the producer can judge (an input's size in bytes, a callback URL's address) is answered
with a problem (413, 422).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from producer.callbacks import MAX_URL_CHARS
from producer.client import MAX_BATCH
from producer.models import (
    ATTEMPT_TIMEOUT_LIMIT_S,
    IDEMPOTENCY_KEY_MAX_CHARS,
    MAX_ATTEMPTS_LIMIT,
    MODEL_REF,
    JobRecord,
)

ModelRef = Annotated[
    str,
    Field(
        pattern=MODEL_REF.pattern,
        max_length=300,
        description="owner/name or owner/name:version",
        examples=["black-forest-labs/flux-schnell"],
    ),
]


class EnqueueRequest(BaseModel):
    """One prediction job."""

    model_config = ConfigDict(extra="forbid")

    model: ModelRef
    input: dict[str, Any] = Field(description="the model's input, a JSON object")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_CHARS,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the same key returns the job it first created (for 24 h)",
    )
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS_LIMIT)
    attempt_timeout_s: float | None = Field(None, gt=0, le=ATTEMPT_TIMEOUT_LIMIT_S)
    stream: bool = Field(False, description="relay the model's output into the job's events")
    callback_url: str | None = Field(
        None,
        max_length=MAX_URL_CHARS,
        pattern=r"^https?://[^\s/?#]+",
        description="gets one signed POST of the final record",
    )

    def arguments(self) -> dict[str, Any]:
        """The arguments of ``Producer.enqueue``."""
        return self.model_dump(exclude_none=True)


class BatchRequest(BaseModel):
    """Several jobs at once: all are queued, or none (one bad job refuses the batch)."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[EnqueueRequest] = Field(min_length=1, max_length=MAX_BATCH)


class JobList(BaseModel):
    """The jobs a batch queued, in its order."""

    jobs: list[JobRecord]


class Health(BaseModel):
    status: str
    redis: str | None = None
