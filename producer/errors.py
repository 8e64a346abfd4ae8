"""predq's exceptions: one base class, a short tree, third-party errors translated at the boundary.

    PredqError
    ├── ConfigError          a setting (environment variable) is missing or malformed
    ├── InvalidRequest       (also ValueError) the caller's arguments were rejected; nothing was written
    │   ├── InvalidModelRef  not ``owner/name`` or ``owner/name:version``
    │   ├── InvalidInput     not a JSON object, or not JSON-serializable
    │   └── InputTooLarge    the input's JSON encoding is over the configured limit
    ├── JobNotFound          (also LookupError) no record with that id (never reported as "queued")
    ├── JobNotRetryable      re-drive was asked for a job that is not in the ``failed`` state
    ├── WaitTimeout          (also TimeoutError) ``wait`` gave up before the job reached a final state
    ├── FileUnavailable      an output file is not in the store (or cannot be, with this setup)
    └── RedisUnavailable     Redis could not be reached or did not answer in time

Every message is one line, names the offending value where that is safe, and never contains a
secret: Redis URLs are shown with their password masked.
"""

from __future__ import annotations


class PredqError(Exception):
    """Base class of every error predq raises on purpose."""


class ConfigError(PredqError):
    """A setting read from the environment is missing or malformed."""


class InvalidRequest(PredqError, ValueError):
    """The request was rejected before anything was written to Redis."""


class InvalidModelRef(InvalidRequest):
    """The model reference is not ``owner/name`` or ``owner/name:version``."""


class InvalidInput(InvalidRequest):
    """The input is not a JSON object, or cannot be encoded as JSON."""


class InputTooLarge(InvalidRequest):
    """The input's JSON encoding is larger than the configured limit."""


class JobNotFound(PredqError, LookupError):
    """No job record has this id (it never existed, or its retention period ran out)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class JobNotRetryable(PredqError):
    """Only a job in the ``failed`` state can be re-driven."""


class WaitTimeout(PredqError, TimeoutError):
    """``wait`` gave up before the job reached a final state; the job itself goes on."""


class FileUnavailable(PredqError):
    """An output file cannot be read or linked: the job has no such file, it is no longer in
    the output store, or the store needs what is not installed (obstore, for S3)."""


class RedisUnavailable(PredqError):
    """Redis could not be reached, or did not answer within the configured timeout."""
