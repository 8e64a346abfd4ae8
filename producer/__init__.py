"""predq's producer side: what a web app imports to enqueue Replicate predictions and poll them.

It never imports arq, replicate or the worker package.
"""

from producer.client import Producer
from producer.config import Config
from producer.errors import (
    InvalidRequest,
    JobNotFound,
    JobNotRetryable,
    PredqError,
    RedisUnavailable,
    WaitTimeout,
)
from producer.models import ErrorInfo, JobRecord, JobState
from producer.sync import SyncProducer

__all__ = [
    "Config",
    "ErrorInfo",
    "InvalidRequest",
    "JobNotFound",
    "JobNotRetryable",
    "JobRecord",
    "JobState",
    "PredqError",
    "Producer",
    "RedisUnavailable",
    "SyncProducer",
    "WaitTimeout",
]
