"""The one owner of arq's protocol, as predq speaks it (arq 0.28, pinned and maintenance-only).

predq writes arq's queue entries itself, inside the same Lua call that creates or re-queues a job
record (a record never exists without its queue entry), so the producer needs arq's wire format
without arq installed. Everything predq knows about that format is here; the Lua scripts receive
the payload, the scores and the keys from this module and only store them.
``tests/unit/test_arq_wire.py`` pins it against arq's own (de)serializer on the worker side, so an
arq upgrade that changes the format fails a test instead of a production queue.

The payload (``arq:job:{id}``), JSON as ``worker.main`` deserializes it:
``{"t": null, "f": FUNCTION, "a": [job_id], "k": {}, "et": enqueue_ms}``; only the job id travels.

Queue scores (the arq queue is a sorted set of job ids scored in epoch ms): a job is due once its
score is at most now (``due_score``). A running job's score is kept in the future, at the end of
its lease, so it stays out of every worker's read window. A job recovered from a dead worker is
put at ``FRONT_SCORE``, ahead of everything queued (it has waited longest).

The claim: arq marks a job taken with ``arq:in-progress:{id}`` for its largest function timeout
plus 10 s (``claim_ttl_s``); predq's worker shortens that to a lease right away (worker/lease.py).

The end: when a job's run ends, arq deletes its payload, claim and try counter (``retry_key``) and
its queue entry. When the run's own attempt makes the job final, predq's transition does that in
the same Lua call, and the worker skips arq's own finish for it (worker/arq_patches.py).
"""

from __future__ import annotations

import json

from producer.models import ATTEMPT_TIMEOUT_LIMIT_S

#: The arq function every job runs as.
FUNCTION = "run_prediction"
#: arq's fixed key prefixes (arq/constants.py).
JOB_PREFIX = "arq:job:"
IN_PROGRESS_PREFIX = "arq:in-progress:"
RETRY_PREFIX = "arq:retry:"
#: The function timeout predq registers with arq: the longest per-job deadline plus room to
#: record the outcome, so that arq's own timeout never preempts predq's.
JOB_TIMEOUT_S = int(ATTEMPT_TIMEOUT_LIMIT_S) + 600
#: The queue score that puts a recovered job at the head of the queue.
FRONT_SCORE = 1


def payload(job_id: str, enqueue_ms: int) -> str:
    """arq's job payload for ``job_id``."""
    return json.dumps({"t": None, "f": FUNCTION, "a": [job_id], "k": {}, "et": enqueue_ms})


def job_key(job_id: str) -> str:
    """Where arq keeps a job's payload (no TTL: arq deletes it when the job ends)."""
    return f"{JOB_PREFIX}{job_id}"


def in_progress_key(job_id: str) -> str:
    """arq's claim on a running job."""
    return f"{IN_PROGRESS_PREFIX}{job_id}"


def retry_key(job_id: str) -> str:
    """arq's count of a job's runs (arq deletes it when the job ends)."""
    return f"{RETRY_PREFIX}{job_id}"


def due_score(due_ms: int) -> int:
    """The queue score of a job due at ``due_ms`` (epoch ms): arq runs it once the score <= now."""
    return due_ms


def claim_ttl_s(job_timeout_s: float = JOB_TIMEOUT_S) -> float:
    """How long arq's claim on a job lasts: the largest function timeout + 10 s."""
    return job_timeout_s + 10
