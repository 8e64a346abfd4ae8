"""The worker's settings: the shared Config plus what only a worker needs, from the environment.

Environment (beyond producer.config.Config's): ``PREDQ_CONCURRENCY``, ``PREDQ_MAX_ATTEMPTS``,
``PREDQ_ATTEMPT_TIMEOUT_S``, ``PREDQ_CREATE_TIMEOUT_S``, ``PREDQ_CREATE_WAIT_S``, ``PREDQ_BACKOFF_BASE_S``,
``PREDQ_BACKOFF_MAX_S``, ``PREDQ_POLL_INTERVAL_S``, ``PREDQ_LEASE_S``, ``PREDQ_MAX_RECOVERIES``,
``PREDQ_SHUTDOWN_GRACE_S``, ``PREDQ_QUEUE_POLL_S``, ``PREDQ_CREATES_PER_MIN``,
``PREDQ_REQUESTS_PER_MIN``, ``PREDQ_CREATE_BURST``, ``PREDQ_REQUEST_BURST``,
``PREDQ_THROTTLE_PAUSE_S``, ``PREDQ_MODEL_CONCURRENCY``, ``PREDQ_WEBHOOK_URL``,
``PREDQ_WEBHOOK_FALLBACK_POLL_S``, ``PREDQ_OUTPUT_MAX_BYTES``, ``PREDQ_CANCEL_AFTER_MARGIN_S``,
``PREDQ_LOG_LEVEL``, ``PREDQ_LOG_FORMAT``,
and the replicate client's own ``REPLICATE_API_TOKEN`` and ``REPLICATE_BASE_URL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from producer.config import Config, redis_password
from producer.models import ATTEMPT_TIMEOUT_LIMIT_S, MAX_ATTEMPTS_LIMIT, MODEL_REF

LogFormat = Literal["auto", "json", "console"]
#: The token workers send a sandbox they use for want of a Replicate token.
SANDBOX_TOKEN = "r8_local_sandbox_token_0000000000"
#: Replicate's two request budgets: prediction creates, and everything else.
Kind = Literal["create", "other"]
#: Budgets run this much slower than the nominal rate: requests reach Replicate with some jitter
#: after their slot, and at exactly the rate the 601st create can land within 60 s of the first
#: one (measured by the bench against a sandbox enforcing the same limit).
SAFETY_FACTOR = 1.01


@dataclass(frozen=True)
class Budget:
    """``per_min`` requests per minute, plus up to ``burst`` more at once after a quiet spell."""

    per_min: int
    burst: int = 0

    @property
    def interval_ms(self) -> float:
        return 60_000 / self.per_min * SAFETY_FACTOR


class WorkerConfig(Config):
    """Everything one worker process needs; built once in worker.main and passed down."""

    #: Jobs in flight at once in one worker process (arq's ``max_jobs``).
    concurrency: int = Field(50, alias="PREDQ_CONCURRENCY", ge=1, le=10_000)
    #: Attempts per job, unless the job says otherwise.
    max_attempts: int = Field(5, alias="PREDQ_MAX_ATTEMPTS", ge=1, le=MAX_ATTEMPTS_LIMIT)
    #: Deadline of one attempt, create to final status; then the prediction is canceled.
    attempt_timeout_s: float = Field(
        600.0, alias="PREDQ_ATTEMPT_TIMEOUT_S", gt=0, le=ATTEMPT_TIMEOUT_LIMIT_S
    )
    #: Deadline of the create request alone (the replicate client sets none on creates).
    create_timeout_s: float = Field(30.0, alias="PREDQ_CREATE_TIMEOUT_S", gt=0)
    #: How long Replicate may hold a create until the prediction is done (``Prefer: wait``):
    #: fast models then cost one request instead of a create and its polls. 0: never hold.
    create_wait_s: int = Field(5, alias="PREDQ_CREATE_WAIT_S", ge=0, le=60)
    #: Backoff before attempt n+1 is drawn from [d/2, d], d = min(max, base * 2**(n-1)).
    backoff_base_s: float = Field(2.0, alias="PREDQ_BACKOFF_BASE_S", gt=0)
    backoff_max_s: float = Field(300.0, alias="PREDQ_BACKOFF_MAX_S", gt=0)
    #: How often a running prediction is polled on Replicate.
    poll_interval_s: float = Field(1.0, alias="PREDQ_POLL_INTERVAL_S", gt=0)
    #: A running job's lease: another worker takes it over this long after its worker died.
    lease_s: float = Field(15.0, alias="PREDQ_LEASE_S", ge=1)
    #: Recoveries after worker deaths before the job is failed as a poison pill.
    max_recoveries: int = Field(3, alias="PREDQ_MAX_RECOVERIES", ge=0)
    #: On SIGTERM, how long running jobs may finish before they are handed over.
    shutdown_grace_s: int = Field(30, alias="PREDQ_SHUTDOWN_GRACE_S", ge=0)
    #: How often an idle worker looks for new jobs (arq's ``poll_delay``).
    queue_poll_s: float = Field(0.2, alias="PREDQ_QUEUE_POLL_S", gt=0)
    #: Replicate's published limits, shared by all workers (0: no limit of predq's own).
    creates_per_min: int = Field(600, alias="PREDQ_CREATES_PER_MIN", ge=0)
    requests_per_min: int = Field(3000, alias="PREDQ_REQUESTS_PER_MIN", ge=0)
    #: Requests allowed at once above the rate after a quiet spell.
    create_burst: int = Field(0, alias="PREDQ_CREATE_BURST", ge=0)
    request_burst: int = Field(0, alias="PREDQ_REQUEST_BURST", ge=0)
    #: How long all workers hold a budget after a 429 that gave no Retry-After.
    throttle_pause_s: float = Field(5.0, alias="PREDQ_THROTTLE_PAUSE_S", ge=0)
    #: In-flight caps per model across all workers: ``owner/name=N,owner/other=M``.
    model_concurrency: dict[str, int] = Field(default_factory=dict, alias="PREDQ_MODEL_CONCURRENCY")
    #: Where Replicate should report finished predictions (the webhook receiver's public URL);
    #: unset: predictions are polled.
    webhook_url: str | None = Field(None, alias="PREDQ_WEBHOOK_URL")
    #: With webhooks on, how long to wait for one before polling once (a lost webhook).
    webhook_fallback_poll_s: float = Field(60.0, alias="PREDQ_WEBHOOK_FALLBACK_POLL_S", gt=0)
    #: The largest output file copied to the output store; a larger one fails the job (storage).
    output_max_bytes: int = Field(2 * 1024**3, alias="PREDQ_OUTPUT_MAX_BYTES", ge=1)
    #: Replicate stops a prediction by itself this long after its attempt's deadline
    #: (``Cancel-After``), should no worker be left to cancel it.
    cancel_after_margin_s: float = Field(10.0, alias="PREDQ_CANCEL_AFTER_MARGIN_S", ge=0)
    #: Signs completion callbacks (``whsec_`` + base64); without it none are delivered.
    callback_secret: SecretStr | None = Field(None, alias="PREDQ_CALLBACK_SECRET", repr=False)
    #: A callback not taken this long after its job ended is given up.
    callback_give_up_s: float = Field(24 * 3600.0, alias="PREDQ_CALLBACK_GIVE_UP_S", gt=0)
    #: How often the worker says it is alive (3 missed beats: shown dead).
    heartbeat_s: float = Field(5.0, alias="PREDQ_HEARTBEAT_S", gt=0, le=60)
    #: Serve this process's Prometheus metrics on this port (unset: not served).
    metrics_port: int | None = Field(None, alias="PREDQ_METRICS_PORT", ge=1, le=65535)
    #: Check REPLICATE_API_TOKEN at start-up (GET /v1/account) and refuse to start without it.
    check_token: bool = Field(True, alias="PREDQ_CHECK_TOKEN")
    #: An idle worker (its last poll found nothing) polls again after this long, or as soon as
    #: a job is queued (worker/wake.py).
    idle_poll_s: float = Field(2.0, alias="PREDQ_IDLE_POLL_S", gt=0, le=60)
    #: Run the worker (arq's CLI) on uvloop's event loop when it is installed.
    uvloop: bool = Field(True, alias="PREDQ_UVLOOP")
    log_level: str = Field("INFO", alias="PREDQ_LOG_LEVEL")
    log_format: LogFormat = Field("auto", alias="PREDQ_LOG_FORMAT")
    replicate_api_token: SecretStr | None = Field(None, alias="REPLICATE_API_TOKEN", repr=False)
    replicate_base_url: str | None = Field(None, alias="REPLICATE_BASE_URL")
    #: A local sandbox to use when no REPLICATE_API_TOKEN is set (docker-compose sets it): with a
    #: token, workers go to Replicate (or REPLICATE_BASE_URL), never to the sandbox.
    sandbox_url: str | None = Field(None, alias="PREDQ_SANDBOX_URL")

    @model_validator(mode="before")
    @classmethod
    def _sandbox_without_token(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        token = values.get("replicate_api_token") or values.get("REPLICATE_API_TOKEN")
        sandbox = values.get("sandbox_url") or values.get("PREDQ_SANDBOX_URL")
        if sandbox and not token:
            values = {**values, "replicate_base_url": sandbox,
                      "replicate_api_token": SANDBOX_TOKEN}  # fmt: skip
            values.pop("REPLICATE_BASE_URL", None)
        return values

    @field_validator("model_concurrency", mode="before")
    @classmethod
    def _parse_caps(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        caps: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            model, _, cap = item.rpartition("=")
            if not MODEL_REF.match(model) or ":" in model or not cap.isdigit() or int(cap) < 1:
                raise ValueError(f"expected owner/name=N[,owner/name=N...], got {item!r}")
            caps[model] = int(cap)
        return caps

    @model_validator(mode="after")
    def _check_backoff(self) -> WorkerConfig:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("PREDQ_BACKOFF_MAX_S must be at least PREDQ_BACKOFF_BASE_S")
        return self

    def budgets(self) -> dict[Kind, Budget]:
        """The rate-limit budgets that are on (a rate of 0 turns one off)."""
        budgets: dict[Kind, Budget] = {}
        if self.creates_per_min:
            budgets["create"] = Budget(self.creates_per_min, self.create_burst)
        if self.requests_per_min:
            budgets["other"] = Budget(self.requests_per_min, self.request_burst)
        return budgets

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line."""
        found = []
        if self.replicate_api_token is not None:
            found.append(self.replicate_api_token.get_secret_value())

        password = redis_password(self.redis_url)
        if password:
            found.append(password)
        for secret in (self.aws_secret_access_key, self.aws_session_token, self.callback_secret):
            if secret is not None:
                found.append(secret.get_secret_value())
        return found
