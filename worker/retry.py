"""Retry policy: one classification table and a pure backoff function.

Every exception an attempt can end with is mapped to an ErrorKind here and nowhere else:

| signal                                        | kind       | retried | next attempt            |
|-----------------------------------------------|------------|---------|-------------------------|
| our per-attempt deadline                      | timeout    | yes     | new prediction          |
| ReplicateError 429                            | throttled  | yes     | same prediction if any  |
| ReplicateError 5xx                            | transient  | yes     | same prediction if any  |
| httpx timeout / transport error               | transient  | yes     | same prediction if any  |
| ReplicateError 404 on a known prediction      | transient  | yes     | new prediction (vanished) |
| ReplicateError 401 / 403 / 402                | config     | no      |                         |
| ReplicateError other 4xx (400, 404, 422)      | permanent  | no      |                         |
| ModelError (the prediction failed)            | model      | no      |                         |
| "aborted" (Cancel-After passed before start)  | timeout    | yes     | new prediction          |
| canceled at its Cancel-After deadline         | timeout    | yes     | new prediction          |
| output files not copied (worker/outputs.py)   | storage    | if it   | same prediction (copied |
|                                               |            | passes  | again, never re-paid)   |
| anything else                                 | internal   | no      |                         |

When a create fails without an answer (timeout, connection error, 5xx) the prediction may exist
anyway: the verdict says ``ambiguous_create`` and the next attempt looks for it before creating
(worker/lost_create.py). A retryable error on a prediction that already exists does not end the
attempt at all: worker/replicate_client.py polls again until the attempt's deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx
from replicate.exceptions import ModelError, ReplicateError

from producer.models import ErrorKind

_LOGS_TAIL_CHARS = 1000


@dataclass(frozen=True)
class Verdict:
    """What an attempt's error means for the job."""

    kind: ErrorKind
    message: str
    retryable: bool
    status_code: int | None = None
    #: Whether the next attempt may resume the same prediction (else it creates a new one).
    keep_prediction: bool = True
    #: A create got no clear answer: the prediction may exist although its id is unknown.
    ambiguous_create: bool = False


def classify(exc: BaseException, *, prediction_known: bool) -> Verdict:
    """Map an attempt's exception to a Verdict (the table in this module's docstring)."""
    if isinstance(exc, ModelError):
        return Verdict(ErrorKind.MODEL, _model_error_message(exc), retryable=False)
    if isinstance(exc, ReplicateError):
        return _classify_status(exc, prediction_known=prediction_known)
    if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
        where = "polling the prediction" if prediction_known else "creating the prediction"
        detail = str(exc) or type(exc).__name__
        message = f"{type(exc).__name__} while {where}: {detail}"
        return Verdict(ErrorKind.TRANSIENT, message, True, ambiguous_create=not prediction_known)
    return Verdict(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}", retryable=False)


def _classify_status(exc: ReplicateError, *, prediction_known: bool) -> Verdict:
    status = exc.status or 0
    reason = " - ".join(part for part in (exc.title, exc.detail) if part) or "no details"
    message = f"Replicate answered {status}: {reason}"
    if status == 429:
        return Verdict(ErrorKind.THROTTLED, message, True, status)
    if status >= 500:
        return Verdict(
            ErrorKind.TRANSIENT, message, True, status, ambiguous_create=not prediction_known
        )
    if status == 404 and prediction_known:
        return Verdict(
            ErrorKind.TRANSIENT,
            f"the prediction vanished on Replicate (404): {reason}",
            True,
            status,
            keep_prediction=False,
        )
    if status in (401, 403):
        return Verdict(
            ErrorKind.CONFIG,
            f"{message} (check REPLICATE_API_TOKEN and the model's permissions)",
            False,
            status,
        )
    if status == 402:
        return Verdict(
            ErrorKind.CONFIG, f"{message} (the Replicate account needs credit)", False, 402
        )
    return Verdict(ErrorKind.PERMANENT, message, False, status)


def _model_error_message(exc: ModelError) -> str:
    prediction = exc.prediction
    message = f"the prediction failed: {prediction.error or 'no error message'}"
    logs = (prediction.logs or "").strip()
    if logs:
        message += f"\nlogs (tail):\n{logs[-_LOGS_TAIL_CHARS:]}"
    return message


def backoff_s(
    attempt: int, *, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, jittered, floored.

    Drawn from [d/2, d] with d = min(max_s, base_s * 2**(attempt-1)): never near zero, and a crowd
    of jobs failing together spreads out instead of returning in lockstep.
    """
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def retry_delay_s(
    attempt: int, *, base_s: float, max_s: float, retry_after_s: float | None
) -> float:
    """The wait before the next attempt: the backoff, or Replicate's Retry-After if that is longer."""
    delay = backoff_s(attempt, base_s=base_s, max_s=max_s)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay
