"""`GET /v1/streams/{id}`: a streaming model's output as server-sent events, as Replicate sends
them (`urls.stream` of the prediction).

Events, in the order they happen, each with an `id:` (its position, 0-based):

    event: output   data: one token, at the moment the model produces it
    event: logs     data: a line of the logs, when it is printed
    event: error    data: {"detail": "..."}         (a failed prediction)
    event: done     data: {} or {"reason": "canceled"} / {"reason": "aborted"}

A reader that reconnects with `Last-Event-ID: N` gets only the events after N, so the official
clients' `stream`/`async_stream` and a worker resuming a stream both see each event once. The
response ends after `done`; a server shutting down answers held streams at once (they end).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sandbox import responses
from sandbox.prediction import Prediction
from sandbox.state import Sandbox, sandbox_of


def timeline(prediction: Prediction) -> list[tuple[float, str, str]]:
    """Every output and logs event of the prediction's run: (when, event, data), in order."""
    span = prediction.completed_s - prediction.started_s
    events = [(at, "output", prediction.token(n)) for n, at in enumerate(prediction.token_times())]
    events += [
        (prediction.started_s + span * fraction, "logs", line.rstrip("\n"))
        for fraction, line in prediction.run.logs
    ]
    return sorted(events, key=lambda event: event[0])


def _sse(event: str, seq: int, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\nid: {seq}\n{lines}\n".encode()


async def events(sandbox: Sandbox, prediction: Prediction, after: int) -> AsyncIterator[bytes]:
    """The SSE body: the events after position ``after``, each when it happens, then `done`."""
    planned = timeline(prediction)
    lag_s = prediction.run.stream_lag_s
    seq = after + 1
    while True:
        now_s = sandbox.clock() - lag_s
        ended = prediction.is_terminal(now_s)
        until = min(now_s, prediction.end_s)
        while seq < len(planned) and planned[seq][0] <= until:
            _, event, data = planned[seq]
            yield _sse(event, seq, data)
            seq += 1
        if ended:
            break
        next_at = planned[seq][0] if seq < len(planned) else math.inf
        if not await sandbox.hold_until(prediction, min(next_at, prediction.end_s) + lag_s):
            return  # the server is shutting down
    status = prediction.final_status
    if status == "failed":
        yield _sse("error", len(planned), json.dumps({"detail": prediction.run.error}))
    reason = {} if status in ("succeeded", "failed") else {"reason": status}
    yield _sse("done", len(planned) + 1, json.dumps(reason))


async def stream_prediction(request: Request) -> Response:
    """`GET /v1/streams/{id}`: 404 for an unknown prediction or a model that does not stream."""
    sandbox = sandbox_of(request)
    decision = await sandbox.gate(request, "other")
    if isinstance(decision, Response):
        return decision
    prediction = sandbox.store.get(request.path_params["id"])
    if prediction is None or not prediction.run.streams:
        return responses.not_found("No stream for this prediction.")
    last = request.headers.get("last-event-id", "")
    after = int(last) if last.isdigit() else -1
    return StreamingResponse(
        events(sandbox, prediction, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


ROUTES = (Route("/v1/streams/{id}", stream_prediction, methods=["GET"]),)
