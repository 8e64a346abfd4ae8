"""The API's settings: the producer's, plus its keys and limits (read once, from the environment).

``PREDQ_API_KEYS``: comma-separated keys with full access (enqueue, cancel, retry);
``PREDQ_API_READ_KEYS``: keys that may only read. With neither set, the API refuses every request
but ``/healthz`` and ``/readyz``: there is no anonymous access.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from producer.config import Config


def _keys(value: object) -> object:
    if isinstance(value, str):
        return [SecretStr(key.strip()) for key in value.split(",") if key.strip()]
    return value


class ApiConfig(Config):
    """Everything ``predq serve`` needs."""

    api_keys: list[SecretStr] = Field(default_factory=list, alias="PREDQ_API_KEYS", repr=False)
    read_keys: list[SecretStr] = Field(
        default_factory=list, alias="PREDQ_API_READ_KEYS", repr=False
    )
    #: The largest request body accepted (a batch of jobs with large inputs fits).
    max_body_bytes: int = Field(8 * 1024 * 1024, alias="PREDQ_API_MAX_BODY_BYTES", ge=1024)
    #: How long ``GET /v1/jobs/{id}?wait=S`` may hold a request.
    max_wait_s: float = Field(60.0, alias="PREDQ_API_MAX_WAIT_S", gt=0, le=600)

    _split_full = field_validator("api_keys", mode="before")(_keys)
    _split_read = field_validator("read_keys", mode="before")(_keys)

    @field_validator("api_keys", "read_keys")
    @classmethod
    def _long_enough(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            if len(key.get_secret_value()) < 16:
                raise ValueError("every API key needs at least 16 characters")
        return keys
