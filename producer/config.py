"""Settings, read once from an explicit environment mapping at a process's composition root.

Nothing here reads ``os.environ`` by itself: the caller passes the mapping (``Config.from_env(os.environ)``)
and hands the resulting object down. Subclasses (the worker's settings) add fields the same way: each
field's alias is its environment variable.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from producer.errors import ConfigError
from producer.outputs import DEFAULT_STORE, OutputStore, StoreLocation, s3_config

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def redact_url(url: str) -> str:
    """``url`` with any password (in the user part or a ``password=`` query parameter) replaced
    by ``***``, safe for logs and error messages."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable url>"
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
        parts = parts._replace(netloc=netloc)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in query):
        masked = [(name, "***" if name == "password" else value) for name, value in query]
        parts = parts._replace(query=urllib.parse.urlencode(masked, safe="*"))
    return urllib.parse.urlunsplit(parts)


def redis_password(url: str) -> str | None:
    """The password in a Redis URL, as redis-py reads it (user part or ``?password=``)."""
    from redis.asyncio.connection import parse_url

    try:
        password = parse_url(url).get("password")
    except ValueError:
        return None
    return str(password) if password else None


class EnvSettings(BaseModel):
    """A frozen settings object whose field aliases are environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Self:
        """Build from ``environ`` (only the variables this class names); ``overrides`` win.

        Raises ConfigError naming the variable and what was wrong with it (secrets not echoed).
        """
        names = {field.alias or name: name for name, field in cls.model_fields.items()}
        values: dict[str, Any] = {names[k]: v for k, v in environ.items() if k in names and v != ""}
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_describe(cls, exc)) from None


def _describe(cls: type[BaseModel], exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = cls.model_fields.get(name)
        env = (field.alias if field else None) or name
        secret = field is not None and field.annotation in (SecretStr, SecretStr | None)
        value = error.get("input")
        if field is not None and not field.repr and isinstance(value, str):
            value = redact_url(value)  # a URL that may carry a password
        shown = "" if secret else f" (got {value!r})"
        problems.append(f"{env}: {error['msg'].removeprefix('Value error, ')}{shown}")
    return "invalid settings: " + "; ".join(problems)


class Config(EnvSettings):
    """What producers and workers share: where Redis is, the queue, limits and retention.

    Environment: ``REDIS_URL``, ``PREDQ_QUEUE``, ``PREDQ_MAX_INPUT_BYTES``, ``PREDQ_RETENTION_S``,
    ``PREDQ_IDEMPOTENCY_WINDOW_S``, ``PREDQ_REDIS_TIMEOUT_S``, ``PREDQ_OUTPUT_STORE`` and the
    ``AWS_*`` settings of an S3 output store.
    """

    redis_url: str = Field(DEFAULT_REDIS_URL, alias="REDIS_URL", repr=False, min_length=1)
    queue_name: str = Field("predq:queue", alias="PREDQ_QUEUE", min_length=1)
    #: Largest accepted input, measured as its compact JSON encoding in bytes.
    max_input_bytes: int = Field(256 * 1024, alias="PREDQ_MAX_INPUT_BYTES", ge=2)
    #: How long a finished job's record is kept (live records never expire).
    retention_s: int = Field(7 * 86400, alias="PREDQ_RETENTION_S", ge=60)
    #: How long an idempotency key keeps returning the job it first created.
    idempotency_window_s: int = Field(86400, alias="PREDQ_IDEMPOTENCY_WINDOW_S", ge=1)
    #: Connect and command timeout against Redis; a producer call never hangs longer than this.
    redis_timeout_s: float = Field(5.0, alias="PREDQ_REDIS_TIMEOUT_S", gt=0)
    #: Where output files are copied: a directory, s3://bucket/prefix, or none (producer/outputs.py).
    output_store: str = Field(
        DEFAULT_STORE, alias="PREDQ_OUTPUT_STORE", min_length=1, validate_default=True
    )
    #: Where ``predq serve`` is reachable (``https://predq.example.com``): links to output files
    #: in a local store point there; unset, they are paths (``/v1/jobs/{id}/files/{n}``).
    api_url: str | None = Field(None, alias="PREDQ_API_URL")
    #: Callbacks may go to loopback, private and link-local addresses (a test, a private network).
    callback_allow_private: bool = Field(False, alias="PREDQ_CALLBACK_ALLOW_PRIVATE")
    #: S3 and S3-compatible stores, the usual way.
    aws_endpoint_url: str | None = Field(None, alias="AWS_ENDPOINT_URL")
    aws_region: str | None = Field(None, alias="AWS_REGION")
    aws_default_region: str | None = Field(None, alias="AWS_DEFAULT_REGION")
    aws_access_key_id: str | None = Field(None, alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(None, alias="AWS_SECRET_ACCESS_KEY", repr=False)
    aws_session_token: SecretStr | None = Field(None, alias="AWS_SESSION_TOKEN", repr=False)

    @field_validator("output_store")
    @classmethod
    def _check_output_store(cls, value: str) -> str:
        try:
            location = StoreLocation.parse(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("PREDQ_OUTPUT_STORE: ")) from None
        if location.kind == "local":
            return location.url("").rstrip("/")  # absolute: every process finds the same place
        return value

    def outputs(self) -> OutputStore:
        """The output store these settings name."""
        secret = self.aws_secret_access_key
        token = self.aws_session_token
        env = {
            "AWS_ENDPOINT_URL": self.aws_endpoint_url or "",
            "AWS_REGION": self.aws_region or "",
            "AWS_DEFAULT_REGION": self.aws_default_region or "",
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id or "",
            "AWS_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else "",
            "AWS_SESSION_TOKEN": token.get_secret_value() if token else "",
        }
        return OutputStore(StoreLocation.parse(self.output_store), s3_config(env))

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        from redis.asyncio.connection import parse_url

        try:
            parse_url(value)
        except ValueError as exc:
            reason = str(exc).split(". ", 1)[0].rstrip(".")
            raise ValueError(f"not a Redis URL: {reason}") from None
        return value

    @property
    def redis_url_redacted(self) -> str:
        """``redis_url`` with the password masked: the only form that may be logged."""
        return redact_url(self.redis_url)
