"""A Producer's access to output files in the output store (links and bytes). A mixin of
Producer (producer/client.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from producer.config import Config
from producer.errors import FileUnavailable, JobNotFound
from producer.models import JobRecord, OutputFile
from producer.outputs import OutputStore


class Files:
    """Output files, by job id and index (Producer's)."""

    config: Config
    _store_of_outputs: OutputStore | None

    async def get(self, job_id: str) -> JobRecord | None:
        raise NotImplementedError

    async def file_url(self, job_id: str, n: int = 0, *, expires_s: int = 3600) -> str:
        """A URL a browser can fetch output file ``n`` of the job from: presigned for
        ``expires_s`` seconds in S3; for a local store, ``predq serve``'s
        ``/v1/jobs/{id}/files/{n}`` (under ``PREDQ_API_URL`` if set).

        Raises JobNotFound, or FileUnavailable when the job has no file ``n``."""
        file = await self._file(job_id, n)
        if self._outputs.location.kind == "s3":
            return await self._outputs.signed_url(file.url, expires_s)
        base = (self.config.api_url or "").rstrip("/")
        return f"{base}/v1/jobs/{job_id}/files/{n}"

    async def open_file(self, job_id: str, n: int = 0) -> AsyncIterator[bytes]:
        """Output file ``n`` of the job, streamed in chunks from the output store.

        Raises JobNotFound, or FileUnavailable when the job has no file ``n`` or it is gone."""
        file = await self._file(job_id, n)
        async for chunk in self._outputs.chunks(file.url):
            yield chunk

    async def read_file(self, job_id: str, n: int = 0) -> bytes:
        """Output file ``n`` of the job, whole (``open_file`` streams it)."""
        return b"".join([chunk async for chunk in self.open_file(job_id, n)])

    async def _file(self, job_id: str, n: int) -> OutputFile:
        record = await self.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        if not 0 <= n < len(record.files):
            raise FileUnavailable(
                f"job {job_id!r} has {len(record.files)} output files, not {n + 1}"
            )
        return record.files[n]

    @property
    def _outputs(self) -> OutputStore:
        if self._store_of_outputs is None:
            self._store_of_outputs = self.config.outputs()
        return self._store_of_outputs
