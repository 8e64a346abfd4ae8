"""Copying a succeeded prediction's files into the output store, before the job is marked
succeeded, so that its results outlive Replicate's one-hour deletion.

Every string of the output that is a file (an ``http(s)://`` URL, or a ``data:`` URI as sync mode
returns) is streamed into the store: downloaded in chunks (without the Replicate token: file hosts
need none) and uploaded as they arrive, through obstore's atomic multipart put, so memory stays
bounded whatever the size, and a copy that fails leaves nothing behind. Each file's size is capped
(``PREDQ_OUTPUT_MAX_BYTES``), and its sha256, size and content type are recorded. The output keeps
its shape, each file replaced by its durable url.

A copy that fails for a passing reason (a network error, a 5xx or 429 from the file host, the
store unreachable) is tried again a few times right here; ``StorageFailed`` says whether what is
left is worth another attempt (which resumes the same prediction: never a second one).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import mimetypes
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import obstore
import structlog

from producer import clock, keys
from producer.models import OutputFile
from producer.outputs import OutputStore
from worker.retry import backoff_s

log = structlog.get_logger(__name__)

FILE_PREFIXES = ("https://", "http://", "data:")
#: Copies in flight at once per worker process (each holds at most two upload chunks).
COPY_CONCURRENCY = 4
UPLOAD_CHUNK_BYTES = 5 * 1024 * 1024  # S3's smallest multipart part
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
COPY_TRIES = 4
_GONE = frozenset({401, 403, 404, 410})


class StorageFailed(Exception):
    """Copying the outputs failed; ``transient``: another attempt may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class _TooLarge(Exception):
    pass


def find_files(output: Any) -> list[str]:
    """The file outputs in ``output`` (any depth of lists and dicts), in order, once each."""
    found: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if value.startswith(FILE_PREFIXES) and not any(c.isspace() for c in value[:4096]):
                found[value] = None
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(output)
    return list(found)


def replace_files(output: Any, urls: dict[str, str]) -> Any:
    """``output`` with every file in ``urls`` replaced by its durable url."""
    if isinstance(output, str):
        return urls.get(output, output)
    if isinstance(output, list):
        return [replace_files(item, urls) for item in output]
    if isinstance(output, dict):
        return {key: replace_files(item, urls) for key, item in output.items()}
    return output


@dataclass
class _Source:
    shown: str
    content_type: str
    chunks: AsyncIterator[bytes]


class Copier:
    """Copies outputs into ``store``; one per worker process (it owns a download client)."""

    def __init__(
        self, store: OutputStore, *, max_bytes: int, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self.store = store
        self._max_bytes = max_bytes
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(60.0, connect=10.0),
            follow_redirects=True,
        )
        self._slots = asyncio.Semaphore(COPY_CONCURRENCY)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def copy_all(self, job_id: str, output: Any) -> tuple[Any, list[OutputFile]]:
        """``output`` with its files replaced by their copies, and the copies; raises
        StorageFailed (having removed the copies it made) when a file could not be copied."""
        sources = find_files(output)
        if not sources or not self.store.enabled:
            return output, []
        copied: list[OutputFile] = []
        try:
            for n, source in enumerate(sources):
                copied.append(await self._copy_with_retries(job_id, n, source))
        except BaseException:
            await self.discard(copied)
            raise
        urls = {source: file.url for source, file in zip(sources, copied, strict=True)}
        return replace_files(output, urls), copied

    async def discard(self, files: list[OutputFile]) -> None:
        """Remove copies no record will point at (best effort)."""
        if not files:
            return
        try:
            keys = [self.store.location.key(f.url) for f in files]
            await obstore.delete_async(self.store.obstore(), keys)
        except Exception as exc:
            log.warning("outputs.discard_failed", error=f"{type(exc).__name__}: {exc}")

    async def _copy_with_retries(self, job_id: str, n: int, source: str) -> OutputFile:
        for attempt in range(1, COPY_TRIES + 1):
            try:
                return await self._copy(job_id, n, source)
            except StorageFailed as exc:
                if not exc.transient or attempt == COPY_TRIES:
                    raise
                log.info("outputs.copy_retried", job_id=job_id, file=n, error=str(exc))
            await asyncio.sleep(backoff_s(attempt, base_s=0.5, max_s=8.0))
        raise AssertionError("unreachable")

    async def _copy(self, job_id: str, n: int, source: str) -> OutputFile:
        async with self._slots:
            if source.startswith("data:"):
                return await self._store(job_id, n, _data_uri(source))
            try:
                async with self._http.stream("GET", source) as response:
                    _check(response, source)
                    content_type = response.headers.get("content-type", "").split(";")[0]
                    chunks = response.aiter_bytes(DOWNLOAD_CHUNK_BYTES)
                    guessed = content_type or _guess_type(source)
                    return await self._store(job_id, n, _Source(source, guessed, chunks))
            except httpx.HTTPError as exc:
                raise StorageFailed(
                    f"downloading {source}: {type(exc).__name__}: {exc}", transient=True
                ) from exc

    async def _store(self, job_id: str, n: int, source: _Source) -> OutputFile:
        key = f"{job_id}/{n}{_extension(source.content_type, source.shown)}"
        digest = hashlib.sha256()
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in source.chunks:
                size += len(chunk)
                if size > self._max_bytes:
                    raise _TooLarge
                digest.update(chunk)
                yield chunk

        attributes = (
            {"Content-Type": source.content_type} if self.store.location.kind == "s3" else None
        )
        try:
            await obstore.put_async(
                self.store.obstore(),
                key,
                counted(),
                attributes=attributes,
                chunk_size=UPLOAD_CHUNK_BYTES,
                max_concurrency=1,
            )
        except _TooLarge:
            raise StorageFailed(
                f"{source.shown} is larger than PREDQ_OUTPUT_MAX_BYTES ({self._max_bytes:,} bytes)",
                transient=False,
            ) from None
        except (httpx.HTTPError, StorageFailed):
            raise
        except Exception as exc:  # obstore's errors: the store refused or could not be reached
            permanent = type(exc).__name__ in ("PermissionDeniedError", "UnauthenticatedError")
            raise StorageFailed(
                f"writing {key} to the output store: {type(exc).__name__}: {str(exc)[:300]}",
                transient=not permanent,
            ) from exc
        return OutputFile(
            url=self.store.location.url(key),
            source_url=source.shown,
            content_type=source.content_type,
            size_bytes=size,
            sha256=digest.hexdigest(),
        )


def _check(response: httpx.Response, source: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status in _GONE:
        raise StorageFailed(
            f"{source} answered {status}: the file is gone (Replicate deletes outputs an hour "
            "after the prediction)",
            transient=False,
        )
    raise StorageFailed(f"{source} answered {status}", transient=status == 429 or status >= 500)


def _data_uri(uri: str) -> _Source:
    """A ``data:`` URI's bytes, decoded chunk by chunk."""
    head, sep, payload = uri.partition(",")
    if not sep:
        raise StorageFailed("a data: URI output without a comma", transient=False)
    params = head[len("data:") :].split(";")
    content_type = params[0] or "text/plain"
    is_base64 = "base64" in params[1:]

    async def chunks() -> AsyncIterator[bytes]:
        step = 4 * DOWNLOAD_CHUNK_BYTES // 3 // 4 * 4
        for start in range(0, len(payload), step):
            part = payload[start : start + step]
            try:
                yield (
                    base64.b64decode(part, validate=True)
                    if is_base64
                    else (urllib.parse.unquote_to_bytes(part))
                )
            except (binascii.Error, ValueError) as exc:
                raise StorageFailed(f"a bad data: URI output: {exc}", transient=False) from None

    return _Source(f"data:{content_type}", content_type, chunks())


def _guess_type(url: str) -> str:
    guessed, _ = mimetypes.guess_type(urllib.parse.urlsplit(url).path)
    return guessed or "application/octet-stream"


def _extension(content_type: str, source: str) -> str:
    suffix = mimetypes.guess_extension(content_type) if content_type else None
    if suffix and suffix != ".bin":
        return suffix
    path = urllib.parse.urlsplit(source).path
    dot = path.rfind(".")
    tail = path[dot:] if dot > path.rfind("/") else ""
    return tail if 1 < len(tail) <= 8 and tail[1:].isalnum() else ""


class Sweeper:
    """Deletes the output files of jobs whose records expired (``keys.OUTPUTS_EXPIRY``).

    Every worker sweeps; a job's entry is claimed with ZREM, so one worker deletes its files. A
    record that is live again (re-driven) keeps its files: its next final state re-adds them.
    """

    def __init__(self, redis: Any, store: OutputStore, *, every_s: float = 60.0) -> None:
        self._redis = redis
        self._store = store
        self._every_s = every_s

    async def keep_sweeping(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # Redis or the store unreachable: next time
                log.warning("outputs.sweep_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self._every_s)

    async def sweep(self, limit: int = 100) -> int:
        """Delete the files of up to ``limit`` expired jobs; returns how many files."""
        due = await self._redis.zrangebyscore(
            keys.OUTPUTS_EXPIRY, "-inf", clock.now_ms(), start=0, num=limit
        )
        deleted = 0
        for raw in due:
            job_id = raw.decode() if isinstance(raw, bytes) else raw
            if not await self._redis.zrem(keys.OUTPUTS_EXPIRY, job_id):
                continue  # another worker has it
            if await self._redis.exists(keys.job(job_id)):
                continue  # re-driven: live again
            deleted += await self._store.delete_job(job_id)
        if deleted:
            log.info("outputs.expired_deleted", files=deleted, jobs=len(due))
        return deleted
