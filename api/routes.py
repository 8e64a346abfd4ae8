"""The ``/v1`` routes: each translates HTTP to one Producer call (errors: api/problems.py).

POST /v1/jobs                  one job, or {"jobs": [...]} (full access)
GET  /v1/jobs                  a page: ?state=&model=&changed_after=&changed_before=&cursor=
                               &limit=, or a lookup: ?idempotency_key= / ?prediction_id=
GET  /v1/jobs/{id}             its record; ?wait=S holds until it is final (or S passed)
POST /v1/jobs/{id}/cancel      (full access)
POST /v1/jobs/{id}/retry       a failed job, re-driven (full access)
GET  /v1/jobs/{id}/files/{n}   an output file: its bytes (local store) or a redirect (S3)
GET  /v1/workers, /v1/stats    the workers, and the queue's numbers
GET  /v1/history?minutes=      the per-minute counts, for charts
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse

from api.auth import Role, actor, reader
from api.problems import PROBLEM_JSON, Problem, ProblemBody
from api.schemas import BatchRequest, EnqueueRequest, JobList
from producer.client import Producer
from producer.errors import WaitTimeout
from producer.listing import MAX_PAGE, JobPage
from producer.models import JobRecord, JobState
from producer.stats import MinuteCounts, Stats, WorkerInfo


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route may answer."""
    return {
        status: {"model": ProblemBody, "content": {PROBLEM_JSON: {}}}
        for status in sorted({400, 401, 422, 503, *statuses})
    }


Timestamp = Annotated[
    str | None,
    Query(max_length=64, json_schema_extra={"format": "date-time"}, description="ISO-8601"),
]
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Read = Annotated[Role, Depends(reader)]
Act = Annotated[Role, Depends(actor)]
router = APIRouter(prefix="/v1")


def _instant(name: str, value: str | None) -> datetime | None:
    """An ISO-8601 date-time (naive ones are UTC); a 422 problem otherwise."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Problem(422, "Unprocessable Content", f"{name} is not ISO-8601: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def producer_of(request: Request) -> Producer:
    found: Producer = request.app.state.producer
    return found


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobRecord | JobList,
    responses=problems(403, 413),
    summary="Enqueue a job, or a batch of jobs",
)
async def enqueue(request: Request, body: EnqueueRequest | BatchRequest, _: Act) -> Any:
    producer = producer_of(request)
    if isinstance(body, BatchRequest):
        queued = await producer.enqueue_many([job.arguments() for job in body.jobs])
        return JobList(jobs=queued)
    arguments = body.arguments()
    return await producer.enqueue(arguments.pop("model"), arguments.pop("input"), **arguments)


@router.get("/jobs", response_model=JobPage, responses=problems(), summary="List or find jobs")
async def list_jobs(
    request: Request,
    _: Read,
    state: Annotated[list[JobState] | None, Query(description="any of these states")] = None,
    model: Annotated[str | None, Query(max_length=300)] = None,
    changed_after: Timestamp = None,
    changed_before: Timestamp = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    idempotency_key: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    prediction_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> JobPage:
    producer = producer_of(request)
    after = _instant("changed_after", changed_after)  # checked even when a lookup ignores them
    before = _instant("changed_before", changed_before)
    if idempotency_key is not None or prediction_id is not None:
        if idempotency_key is not None and prediction_id is not None:
            raise Problem(422, "Unprocessable Content", "look up by one key at a time")
        found = await producer.find(idempotency_key=idempotency_key, prediction_id=prediction_id)
        return JobPage(jobs=[found] if found is not None else [])
    return await producer.list_jobs(
        state or None,
        model=model,
        changed_after=after,
        changed_before=before,
        cursor=cursor,
        limit=limit,
    )


@router.get("/jobs/{job_id}", response_model=JobRecord, responses=problems(404))
async def get_job(
    request: Request,
    job_id: JobId,
    _: Read,
    wait: Annotated[float, Query(ge=0, description="hold up to this many seconds")] = 0,
) -> JobRecord:
    """The job's record; with ``wait``, as soon as it is final, or as it is after ``wait`` s."""
    producer = producer_of(request)
    limit_s: float = request.app.state.config.max_wait_s
    if wait > 0:
        try:
            return await producer.wait(job_id, timeout_s=min(wait, limit_s))
        except WaitTimeout:
            pass
    record = await producer.get(job_id)
    if record is None:
        raise Problem(404, "Not Found", f"job {job_id!r} not found")
    return record


@router.post("/jobs/{job_id}/cancel", response_model=JobRecord, responses=problems(403, 404))
async def cancel_job(request: Request, job_id: JobId, _: Act) -> JobRecord:
    """Cancel a job that has not finished (a final one is returned as it is)."""
    return await producer_of(request).cancel(job_id)


@router.post("/jobs/{job_id}/retry", response_model=JobRecord, responses=problems(403, 404, 409))
async def retry_job(request: Request, job_id: JobId, _: Act) -> JobRecord:
    """Re-drive a failed job: the same id, a fresh budget of attempts."""
    return await producer_of(request).retry(job_id)


@router.get(
    "/jobs/{job_id}/files/{n}",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file"},
        307: {"description": "S3: a presigned URL"},
        **problems(404),
    },
    response_class=StreamingResponse,
)
async def get_file(
    request: Request, job_id: JobId, n: Annotated[int, Path(ge=0, le=10_000)], _: Read
) -> Any:
    """Output file ``n`` of a job, from the output store."""
    producer = producer_of(request)
    record = await producer.get(job_id)
    if record is None:
        raise Problem(404, "Not Found", f"job {job_id!r} not found")
    if n >= len(record.files):
        raise Problem(404, "Not Found", f"job {job_id!r} has {len(record.files)} output files")
    file = record.files[n]
    if file.url.startswith("s3://"):
        return RedirectResponse(await producer.file_url(job_id, n, expires_s=300), 307)
    chunks = producer.open_file(job_id, n)
    first = await anext(chunks, b"")  # a missing file fails here, as a 404
    headers = {"Content-Length": str(file.size_bytes), "ETag": f'"{file.sha256}"',
               "Cache-Control": "private, max-age=3600"}  # fmt: skip

    async def body() -> Any:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(body(), media_type=file.content_type, headers=headers)


@router.get("/workers", response_model=list[WorkerInfo], responses=problems())
async def list_workers(request: Request, _: Read) -> list[WorkerInfo]:
    """Every registered worker process, alive or dead (a dead one stopped heartbeating)."""
    return await producer_of(request).workers()


@router.get("/history", response_model=list[MinuteCounts], responses=problems())
async def history(
    request: Request, _: Read, minutes: Annotated[int, Query(ge=1, le=7 * 1440)] = 60
) -> list[MinuteCounts]:
    """What workers counted, minute by minute, oldest first (jobs succeeded, failed and
    canceled, also per model as ``outcome:owner/name``; ``started``, ``retried``, ``creates``,
    ``throttled``, ``duration_ms``, ``rate_wait_ms``)."""
    return await producer_of(request).history(minutes)


@router.get("/stats", response_model=Stats, responses=problems())
async def stats(request: Request, _: Read) -> Stats:
    """Jobs by state, the oldest queued job's age, callbacks pending, workers, and what was
    done in the last hour and day."""
    return await producer_of(request).stats()
