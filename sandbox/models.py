"""The simulated model table: what each sandbox model does with its input.

| model              | runs for          | result                                                    |
|--------------------|-------------------|-----------------------------------------------------------|
| `sandbox/echo`     | `latency_s`       | succeeds, output = input                                  |
| `sandbox/sleep`    | `input.seconds`   | succeeds, output = input; `seconds` must be 0..3600       |
| `sandbox/fail`     | `latency_s`       | fails, error = `input.message` (or a default), some logs  |
| `sandbox/image`    | `latency_s`       | succeeds, output = `input.num_outputs` (1..4, default 1)  |
|                    |                   | PNG URLs served by the sandbox at `/sandbox/files/...`    |
| any other model    | `latency_s`       | like `sandbox/echo`                                       |

Every listed model has a fixed version id (`version_id(model)`, 64 hex chars), so
`replicate.async_run("sandbox/fail:<id>")` runs the fail model even though the client sends only
the bare id. An unknown bare version id runs as the echo model `sandbox/versioned`. A bad input
raises `InvalidInput`, which the API answers with 422 "Input validation failed".
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

IMAGE_MODEL: Final = "sandbox/image"

#: The model that an unknown bare version id (`POST /v1/predictions {"version": "<id>"}`) runs as.
VERSIONED_MODEL: Final = "sandbox/versioned"

MAX_SLEEP_S: Final = 3600.0
MAX_IMAGES: Final = 4
DEFAULT_FAIL_MESSAGE: Final = "sandbox/fail: the model raised an error (as asked)"


class InvalidInput(ValueError):
    """The input does not fit the model; becomes one `invalid_fields` entry of a 422 answer.

    As Replicate does, `field` is `input` for a missing property and `input.<name>` for a bad one.
    """

    def __init__(self, field: str, description: str, kind: str = "type") -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description
        self.kind = kind


@dataclasses.dataclass(frozen=True, slots=True)
class RunContext:
    """What a model may use besides its input.

    Attributes:
        latency_s: the configured run time for latency-driven models.
        prediction_id: the id of the prediction being planned.
        base_url: the sandbox's external base URL, ending in "/" (for file outputs).
    """

    latency_s: float
    prediction_id: str
    base_url: str


@dataclasses.dataclass(frozen=True, slots=True)
class ModelRun:
    """The planned outcome of one prediction, fixed at creation.

    Attributes:
        duration_s: seconds from creation to the terminal state.
        output: the JSON output once succeeded (None if the run fails).
        error: the error message if the run fails, else None.
        logs: the logs, shown from the moment the prediction is processing.
    """

    duration_s: float
    output: Any = None
    error: str | None = None
    logs: str = ""

    @property
    def fails(self) -> bool:
        """Whether the prediction ends `failed` rather than `succeeded`."""
        return self.error is not None


Runner = Callable[[Mapping[str, Any], RunContext], ModelRun]


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSpec:
    """One simulated model: how it runs and the OpenAPI `Output` schema its version advertises."""

    run: Runner
    output_schema: Mapping[str, Any]


def _echo(inp: Mapping[str, Any], ctx: RunContext) -> ModelRun:
    return ModelRun(duration_s=ctx.latency_s, output=inp)


def _sleep(inp: Mapping[str, Any], ctx: RunContext) -> ModelRun:
    seconds = inp.get("seconds")
    if seconds is None:
        raise InvalidInput("input", "seconds is required", kind="required")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidInput("input.seconds", "Must be a number")
    if not 0 <= seconds <= MAX_SLEEP_S:
        raise InvalidInput("input.seconds", f"Must be between 0 and {MAX_SLEEP_S:g}", "range")
    return ModelRun(duration_s=float(seconds), output=inp, logs=f"sleeping {seconds:g} s\n")


def _fail(inp: Mapping[str, Any], ctx: RunContext) -> ModelRun:
    message = inp.get("message")
    error = message if isinstance(message, str) and message else DEFAULT_FAIL_MESSAGE
    logs = (
        "sandbox/fail: setting up\n"
        "sandbox/fail: running predict()\n"
        f"Traceback (most recent call last):\nRuntimeError: {error}\n"
    )
    return ModelRun(duration_s=ctx.latency_s, error=error, logs=logs)


def _image(inp: Mapping[str, Any], ctx: RunContext) -> ModelRun:
    count = inp.get("num_outputs", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_IMAGES:
        raise InvalidInput("input.num_outputs", f"Must be an integer between 1 and {MAX_IMAGES}")
    urls = [file_url(ctx.base_url, ctx.prediction_id, i) for i in range(count)]
    return ModelRun(duration_s=ctx.latency_s, output=urls, logs=f"generated {count} image(s)\n")


def file_url(base_url: str, prediction_id: str, index: int) -> str:
    """The URL of output file `index` of a `sandbox/image` prediction (see `sandbox.files`)."""
    return f"{base_url}sandbox/files/{prediction_id}/{index}.png"


_ANY_OUTPUT: Final = MappingProxyType({"title": "Output"})

_ECHO: Final = ModelSpec(run=_echo, output_schema=_ANY_OUTPUT)

MODELS: Final[Mapping[str, ModelSpec]] = MappingProxyType(
    {
        "sandbox/echo": _ECHO,
        "sandbox/sleep": ModelSpec(run=_sleep, output_schema=_ANY_OUTPUT),
        "sandbox/fail": ModelSpec(run=_fail, output_schema=_ANY_OUTPUT),
        IMAGE_MODEL: ModelSpec(
            run=_image,
            output_schema=MappingProxyType(
                {
                    "title": "Output",
                    "type": "array",
                    "items": {"type": "string", "format": "uri"},
                }
            ),
        ),
    }
)


def version_id(model: str) -> str:
    """The fixed 64-hex-char version id the sandbox gives `model` (any `owner/name`)."""
    return hashlib.sha256(f"sandbox:{model}".encode()).hexdigest()


_MODEL_BY_VERSION: Final[Mapping[str, str]] = MappingProxyType(
    {version_id(name): name for name in MODELS}
)


def lookup(model: str) -> ModelSpec:
    """The spec for `owner/name`; unknown models behave like `sandbox/echo`."""
    return MODELS.get(model, _ECHO)


def model_for_version(version: str) -> str:
    """The model a bare version id runs: a listed model's id maps to it, else `VERSIONED_MODEL`."""
    return _MODEL_BY_VERSION.get(version, VERSIONED_MODEL)


def version_json(model: str, version: str) -> dict[str, Any]:
    """A Version object (`GET /v1/models/{owner}/{name}/versions/{id}`) the 1.0.7 client parses.

    Any id is accepted. The `Output` schema is never an iterator type, so `async_run` waits for
    the prediction and returns its output rather than an async generator.
    """
    return {
        "id": version,
        "created_at": "2024-01-01T00:00:00.000000Z",
        "cog_version": "0.9.4",
        "openapi_schema": {
            "openapi": "3.0.2",
            "info": {"title": f"{model} (sandbox)", "version": "0.1.0"},
            "paths": {},
            "components": {
                "schemas": {
                    "Input": {"title": "Input", "type": "object"},
                    "Output": dict(lookup(model).output_schema),
                }
            },
        },
    }
