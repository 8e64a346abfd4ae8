"""The simulated model table: what each sandbox model does with its input.

| model              | runs for          | result                                                    |
|--------------------|-------------------|-----------------------------------------------------------|
| `sandbox/echo`     | `latency_s`       | succeeds, output = input                                  |
| `sandbox/sleep`    | `input.seconds`   | succeeds, output = input; `seconds` must be 0..3600       |
| `sandbox/fail`     | `latency_s`       | fails, error = `input.message` (or a default), some logs  |
| `sandbox/image`    | `latency_s`       | succeeds, output = `input.num_outputs` (1..4, default 1)  |
|                    |                   | PNG URLs served by the sandbox; tqdm-style progress logs  |
| `sandbox/video`    | `latency_s`       | succeeds, output = one MP4-typed file of `input.size_bytes` |
|                    |                   | (default 1 MiB, at most 1 GiB) of seeded random bytes     |
| `sandbox/llm`      | `latency_s`       | a language model: `input.max_tokens` (default 20, at most |
|                    |                   | 2000) tokens produced evenly over the run, streamed (SSE) |
|                    |                   | and growing in polled output; `input.stamp` adds each     |
|                    |                   | token's emission time (`word@unix-seconds `);             |
|                    |                   | `input.stream_lag_s` delays the stream (a slow proxy)     |
| any other model    | `latency_s`       | like `sandbox/echo`                                       |

Every model has one version, `version_id(model)` (64 hex chars, fixed), so
`replicate.async_run("sandbox/fail:<id>")` runs the fail model although the client sends only the
bare id; any other version id is refused with 422, as Replicate refuses a typo'd version. A bad
input raises `InvalidInput`, which the API answers with 422 "Input validation failed".

Logs are lines shown from a fraction of the run on (`ModelRun.logs`), so they grow while a
prediction processes; `sandbox/image` writes tqdm-style percentages, as diffusion models do.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

IMAGE_MODEL: Final = "sandbox/image"
VIDEO_MODEL: Final = "sandbox/video"
LLM_MODEL: Final = "sandbox/llm"

MAX_SLEEP_S: Final = 3600.0
MAX_IMAGES: Final = 4
DEFAULT_VIDEO_BYTES: Final = 1024 * 1024
MAX_VIDEO_BYTES: Final = 1024**3
IMAGE_STEPS: Final = 20
DEFAULT_FAIL_MESSAGE: Final = "sandbox/fail: the model raised an error (as asked)"
MAX_TOKENS: Final = 2000
_TEXT: Final = (
    "the lighthouse keeper watched the tide turn at dusk while gulls circled over the "
    "rocks and a slow ship crossed the bay under a violet sky"
)
_WORDS: Final = tuple(_TEXT.split())


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
class OutputFile:
    """A file output, generated on request (see `sandbox.files`): `name` within the prediction,
    its content type, its size (None: a small PNG) and the seed of its bytes."""

    name: str
    content_type: str
    size_bytes: int | None
    seed: str


@dataclasses.dataclass(frozen=True, slots=True)
class ModelRun:
    """The planned outcome of one prediction, fixed at creation.

    Attributes:
        duration_s: seconds from creation to the terminal state.
        output: the JSON output once succeeded (None if the run fails); file outputs are URLs.
        error: the error message if the run fails, else None.
        logs: (fraction of the run, line): each line is shown once the prediction is that far.
        files: the file outputs, by the last path segment of their URLs.
    """

    duration_s: float
    output: Any = None
    error: str | None = None
    logs: tuple[tuple[float, str], ...] = ()
    files: tuple[OutputFile, ...] = ()
    #: A streaming model's output: it is a list of these, the n-th produced at fraction
    #: (n + 1) / len of the run (polls show it growing, ``urls.stream`` sends it token by token).
    tokens: tuple[str, ...] = ()
    #: Tokens carry the time they are produced (``word@1700000000.123456 ``), for latency benches.
    stamp_tokens: bool = False
    #: The event stream sends each event this long after it happens (a lagging stream).
    stream_lag_s: float = 0.0

    @property
    def streams(self) -> bool:
        return bool(self.tokens)

    def tokens_at(self, fraction: float) -> list[str]:
        """The tokens produced once the run is ``fraction`` done (all of them at 1)."""
        count = len(self.tokens) if fraction >= 1 else int(fraction * len(self.tokens))
        return list(self.tokens[:count])

    @property
    def fails(self) -> bool:
        """Whether the prediction ends `failed` rather than `succeeded`."""
        return self.error is not None

    def logs_at(self, fraction: float) -> str:
        """The logs once the run is `fraction` (0..1) done."""
        return "".join(line for at, line in self.logs if at <= fraction)

    def file(self, name: str) -> OutputFile | None:
        return next((f for f in self.files if f.name == name), None)


Runner = Callable[[Mapping[str, Any], RunContext], ModelRun]


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSpec:
    """One simulated model: how it runs and the OpenAPI `Output` schema its version advertises."""

    run: Runner
    output_schema: Mapping[str, Any]
    description: str = ""


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
    return ModelRun(
        duration_s=float(seconds), output=inp, logs=((0.0, f"sleeping {seconds:g} s\n"),)
    )


def _fail(inp: Mapping[str, Any], ctx: RunContext) -> ModelRun:
    message = inp.get("message")
    error = message if isinstance(message, str) and message else DEFAULT_FAIL_MESSAGE
    logs = (
        (0.0, "sandbox/fail: setting up\n"),
        (0.5, "sandbox/fail: running predict()\n"),
        (1.0, f"Traceback (most recent call last):\nRuntimeError: {error}\n"),
    )
    return ModelRun(duration_s=ctx.latency_s, error=error, logs=logs)


def tqdm_line(step: int, steps: int) -> str:
    """A tqdm progress line, as diffusion models print them: `` 45%|####5     | 9/20 [...]``."""
    percent = 100 * step // steps
    bar = ("#" * (10 * step // steps)).ljust(10)
    return f"{percent:3d}%|{bar}| {step}/{steps} [00:0{step % 10}<00:0{(steps - step) % 10}]\n"


def _image(inp: Mapping[str, Any], ctx: RunContext) -> ModelRun:
    count = inp.get("num_outputs", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_IMAGES:
        raise InvalidInput("input.num_outputs", f"Must be an integer between 1 and {MAX_IMAGES}")
    files = tuple(
        OutputFile(f"{i}.png", "image/png", None, f"{ctx.prediction_id}/{i}") for i in range(count)
    )
    steps = tuple(
        (step / IMAGE_STEPS, tqdm_line(step, IMAGE_STEPS)) for step in range(IMAGE_STEPS + 1)
    )
    logs = ((0.0, f"Using seed: {sum(map(ord, ctx.prediction_id))}\n"), *steps)
    return ModelRun(
        duration_s=ctx.latency_s,
        output=[file_url(ctx.base_url, ctx.prediction_id, f.name) for f in files],
        logs=(*logs, (1.0, f"generated {count} image(s)\n")),
        files=files,
    )


def _video(inp: Mapping[str, Any], ctx: RunContext) -> ModelRun:
    size = inp.get("size_bytes", DEFAULT_VIDEO_BYTES)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_VIDEO_BYTES:
        raise InvalidInput(
            "input.size_bytes", f"Must be an integer between 1 and {MAX_VIDEO_BYTES}"
        )
    video = OutputFile("0.mp4", "video/mp4", size, f"{ctx.prediction_id}/video")
    return ModelRun(
        duration_s=ctx.latency_s,
        output=file_url(ctx.base_url, ctx.prediction_id, video.name),
        logs=((0.0, "rendering frames\n"), (1.0, f"wrote {size} bytes\n")),
        files=(video,),
    )


def _llm(inp: Mapping[str, Any], ctx: RunContext) -> ModelRun:
    count = inp.get("max_tokens", 20)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_TOKENS:
        raise InvalidInput("input.max_tokens", f"Must be an integer between 1 and {MAX_TOKENS}")
    prompt = inp.get("prompt", "")
    if not isinstance(prompt, str):
        raise InvalidInput("input.prompt", "Must be a string")
    offset = sum(map(ord, prompt))
    tokens = tuple(f"{_WORDS[(offset + n) % len(_WORDS)]} " for n in range(count))
    lag = inp.get("stream_lag_s", 0.0)
    if isinstance(lag, bool) or not isinstance(lag, int | float) or not 0 <= lag <= 60:
        raise InvalidInput("input.stream_lag_s", "Must be a number of seconds between 0 and 60")
    return ModelRun(
        duration_s=ctx.latency_s,
        output=list(tokens),
        logs=((0.0, f"prompt: {len(prompt)} characters\n"), (1.0, f"{count} tokens\n")),
        tokens=tokens,
        stamp_tokens=inp.get("stamp") is True,
        stream_lag_s=float(lag),
    )


def file_url(base_url: str, prediction_id: str, name: str) -> str:
    """The URL of output file `name` of a prediction (served by `sandbox.control`)."""
    return f"{base_url}sandbox/files/{prediction_id}/{name}"


_ANY_OUTPUT: Final = MappingProxyType({"title": "Output"})
_URI_OUTPUT: Final = MappingProxyType({"title": "Output", "type": "string", "format": "uri"})

_ECHO: Final = ModelSpec(run=_echo, output_schema=_ANY_OUTPUT, description="returns its input")

MODELS: Final[Mapping[str, ModelSpec]] = MappingProxyType(
    {
        "sandbox/echo": _ECHO,
        "sandbox/sleep": ModelSpec(_sleep, _ANY_OUTPUT, "runs input.seconds, returns its input"),
        "sandbox/fail": ModelSpec(_fail, _ANY_OUTPUT, "fails with input.message"),
        IMAGE_MODEL: ModelSpec(
            _image,
            MappingProxyType({"title": "Output", "type": "array", "items": dict(_URI_OUTPUT)}),
            "input.num_outputs PNG files, with progress in its logs",
        ),
        VIDEO_MODEL: ModelSpec(_video, _URI_OUTPUT, "one video file of input.size_bytes"),
        LLM_MODEL: ModelSpec(
            _llm,
            MappingProxyType(
                {
                    "title": "Output",
                    "type": "array",
                    "items": {"type": "string"},
                    "x-cog-array-type": "iterator",
                    "x-cog-array-display": "concatenate",
                }
            ),
            "a language model: input.max_tokens tokens, streamed",
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


def model_for_version(version: str) -> str | None:
    """The listed model whose version id this is, or None."""
    return _MODEL_BY_VERSION.get(version)


def version_json(model: str) -> dict[str, Any]:
    """`model`'s one Version object (the 1.0.7 client parses it).

    The `Output` schema is never an iterator type, so `async_run` waits for the prediction and
    returns its output rather than an async generator.
    """
    return {
        "id": version_id(model),
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


def model_json(model: str, base_url: str) -> dict[str, Any]:
    """A Model object (`GET /v1/models/{owner}/{name}`, `GET /v1/models`)."""
    owner, _, name = model.partition("/")
    return {
        "url": f"{base_url}{model}",
        "owner": owner,
        "name": name,
        "description": lookup(model).description or "an echo model of the sandbox",
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": 0,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": version_json(model),
    }
