"""``GET /v1/jobs/{id}/events``: a job's events as server-sent events, live.

Each event is ``event: <type>`` (state, progress, output, logs, final), ``id: <its id>`` and
``data: <its JSON>``; the stream ends after ``final`` (the final record). A client that
reconnects with ``Last-Event-ID`` (or ``?after=``) gets the events after that one, as browsers'
EventSource do by themselves. A comment line every ``KEEPALIVE_S`` keeps proxies from closing an
idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.routes import JobId, Read, problems, producer_of
from producer.events import JobEvent

KEEPALIVE_S = 15.0
router = APIRouter(prefix="/v1")


def sse(event: JobEvent) -> bytes:
    data = event.model_dump_json(exclude={"type", "id"})
    return f"event: {event.type}\nid: {event.id}\ndata: {data}\n\n".encode()


@router.get(
    "/jobs/{job_id}/events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "events"},
        **problems(404),
    },
    response_class=StreamingResponse,
)
async def job_events(
    request: Request,
    job_id: JobId,
    _: Read,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^\d+(-\d+)?$")] = None,
) -> Any:
    """The job's events (history first, then live), ending with its final record."""
    producer = producer_of(request)
    start = request.headers.get("last-event-id") or after or "0"
    events = producer.stream(job_id, after=start)
    first = await anext(events, None)  # an unknown job fails here, as a 404

    async def body() -> AsyncIterator[bytes]:
        if first is None:
            return
        yield sse(first)
        pending = asyncio.ensure_future(anext(events))
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    yield b": keepalive\n\n"
                    continue
                try:
                    event = pending.result()
                except StopAsyncIteration:
                    return
                yield sse(event)
                pending = asyncio.ensure_future(anext(events))
        finally:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
            await events.aclose()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
