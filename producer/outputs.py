"""The output store: where a job's output files live once copied, and how they are read back.

``PREDQ_OUTPUT_STORE`` says where (read once into ``Config.output_store``):

- a directory (``.predq/outputs`` by default, relative to the working directory, or
  ``file:///abs/path``): works with nothing configured, for one machine or a shared volume;
- ``s3://bucket/prefix``: S3 or any S3-compatible store (endpoint, region and credentials from
  ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_SESSION_TOKEN``);
- ``none``: nothing is copied; records keep Replicate's URLs, which die after about an hour.

A job's files are ``{job_id}/{n}{ext}`` under the store's root, and a record names each by its
durable url (``file:///.../{job_id}/0.png`` or ``s3://bucket/prefix/{job_id}/0.png``). Objects
are written through obstore (the Rust ``object_store`` crate: one async API for local disks and
S3, streaming multipart uploads that are atomic, presigned URLs), which the worker installs; a web
app reads local files without it and needs the ``outputs`` extra only for S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from producer.errors import ConfigError, FileUnavailable

READ_CHUNK_BYTES = 1024 * 1024
DEFAULT_STORE = ".predq/outputs"


@dataclass(frozen=True)
class StoreLocation:
    """Where outputs go: ``kind`` and, for ``local``, ``root`` (an absolute directory), for
    ``s3``, ``bucket`` and ``prefix``."""

    kind: Literal["local", "s3", "none"]
    root: str = ""
    bucket: str = ""
    prefix: str = ""

    @classmethod
    def parse(cls, value: str) -> StoreLocation:
        """Raises ConfigError for a URL of another scheme or an ``s3://`` URL without a bucket."""
        text = value.strip()
        if text.lower() == "none":
            return cls("none")
        if text.startswith("s3://"):
            parts = urllib.parse.urlsplit(text)
            if not parts.netloc:
                raise ConfigError(f"PREDQ_OUTPUT_STORE: no bucket in {text!r}")
            return cls("s3", bucket=parts.netloc, prefix=parts.path.strip("/"))
        if text.startswith("file://"):
            text = urllib.parse.urlsplit(text).path
        elif "://" in text:
            raise ConfigError(
                f"PREDQ_OUTPUT_STORE: {text!r} is not a directory, s3://bucket/prefix or none"
            )
        return cls("local", root=str(Path(text).expanduser().absolute()))

    def url(self, key: str) -> str:
        """The durable url of the object ``key``."""
        if self.kind == "s3":
            return f"s3://{self.bucket}/{'/'.join(p for p in (self.prefix, key) if p)}"
        return Path(self.root, key).as_uri()

    def key(self, url: str) -> str:
        """The object key of a durable ``url`` of this store; raises FileUnavailable if it is
        not one."""
        base = self.url("")
        if not url.startswith(base):
            raise FileUnavailable(f"{url!r} is not in the output store {base!r}")
        return urllib.parse.unquote(url[len(base) :].lstrip("/"))


def s3_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """obstore's S3 settings from the usual AWS variables (only those that are set)."""
    names = {
        "AWS_ENDPOINT_URL": "endpoint",
        "AWS_REGION": "region",
        "AWS_DEFAULT_REGION": "region",
        "AWS_ACCESS_KEY_ID": "access_key_id",
        "AWS_SECRET_ACCESS_KEY": "secret_access_key",
        "AWS_SESSION_TOKEN": "session_token",
    }
    config: dict[str, Any] = {}
    for variable, name in names.items():
        if environ.get(variable) and name not in config:
            config[name] = environ[variable]
    if "endpoint" in config:
        config["virtual_hosted_style_request"] = False  # S3-compatible servers: path style
    return config


class OutputStore:
    """The configured store: links to and reads of output files by their durable url."""

    def __init__(self, location: StoreLocation, aws: Mapping[str, Any]) -> None:
        self.location = location
        self._aws = dict(aws)
        self._s3: Any = None

    @property
    def enabled(self) -> bool:
        return self.location.kind != "none"

    def obstore(self) -> Any:
        """The obstore ``ObjectStore`` for this location (the worker writes through it)."""
        try:
            from obstore.store import LocalStore, S3Store
        except ImportError as exc:
            raise FileUnavailable(
                "output files in S3 need obstore: pip install 'predq[outputs]'"
            ) from exc
        if self.location.kind == "local":
            return LocalStore(self.location.root, mkdir=True)
        if self._s3 is None:
            endpoint = str(self._aws.get("endpoint", ""))
            client = {"allow_http": True} if endpoint.startswith("http://") else None
            self._s3 = S3Store(
                self.location.bucket,
                prefix=self.location.prefix or None,
                config=self._aws,  # type: ignore[arg-type]
                client_options=client,  # type: ignore[arg-type]
            )
        return self._s3

    async def signed_url(self, url: str, expires_s: int) -> str:
        """A URL a browser can GET for ``expires_s`` seconds (S3: presigned)."""
        if self.location.kind != "s3":
            raise FileUnavailable("only S3 files have presigned URLs")
        import obstore

        key = self.location.key(url)
        expires = datetime.timedelta(seconds=expires_s)
        signed: str = await obstore.sign_async(self.obstore(), "GET", key, expires)
        return signed

    async def chunks(self, url: str) -> AsyncIterator[bytes]:
        """The file's bytes, streamed in chunks; raises FileUnavailable if it is gone."""
        key = self.location.key(url)
        if self.location.kind == "local":
            async for chunk in _local_chunks(Path(self.location.root, key)):
                yield chunk
            return
        import obstore

        try:
            result = await obstore.get_async(self.obstore(), key)
            async for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
                yield bytes(chunk)
        except FileNotFoundError:
            raise FileUnavailable(f"{url} is no longer in the output store") from None

    async def delete_job(self, job_id: str) -> int:
        """Delete every file of ``job_id``; returns how many there were."""
        import obstore

        store = self.obstore()
        listed = await obstore.list(store, prefix=f"{job_id}/").collect_async()
        paths = [item["path"] for item in listed]
        if paths:
            await obstore.delete_async(store, paths)
        if self.location.kind == "local":
            _remove_empty_dir(Path(self.location.root, job_id))
        return len(paths)


async def _local_chunks(path: Path) -> AsyncIterator[bytes]:
    try:
        handle = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError:
        raise FileUnavailable(f"{path.as_uri()} is no longer in the output store") from None
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


def _remove_empty_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)
