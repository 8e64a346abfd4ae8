"""producer/arq_wire.py pinned against arq itself: an arq upgrade that changes its wire format
fails here, not in a production queue."""

from __future__ import annotations

import json

import fakeredis
from arq.connections import ArqRedis
from arq.jobs import deserialize_job_raw
from arq.worker import Worker

from producer import arq_wire
from worker.main import build_settings, deserialize, serialize


def test_arq_reads_predqs_payload_as_a_call_of_the_job_function() -> None:
    raw = arq_wire.payload("job-1", 1_700_000_000_000).encode()
    function, args, kwargs, job_try, enqueue_ms = deserialize_job_raw(raw, deserializer=deserialize)
    assert (function, list(args), kwargs, job_try, enqueue_ms) == (
        arq_wire.FUNCTION,
        ["job-1"],
        {},
        None,
        1_700_000_000_000,
    )


async def test_predqs_payload_and_keys_are_what_arqs_own_enqueue_writes() -> None:
    redis = fakeredis.FakeAsyncRedis()
    pool = ArqRedis(pool_or_conn=redis.connection_pool, job_serializer=serialize)
    job = await pool.enqueue_job(
        arq_wire.FUNCTION, "job-2", _job_id="job-2", _queue_name="q", _defer_until=None
    )
    assert job is not None
    written = json.loads(await redis.get(arq_wire.job_key("job-2")))
    ours = json.loads(arq_wire.payload("job-2", written["et"]))
    assert ours == written
    score = await redis.zscore("q", "job-2")
    assert score == arq_wire.due_score(written["et"])
    await redis.aclose()


async def test_the_worker_registers_the_function_and_timeout_the_wire_names() -> None:
    settings = build_settings({})
    [function] = settings.functions
    assert function.name == arq_wire.FUNCTION
    assert function.timeout_s == arq_wire.JOB_TIMEOUT_S
    # arq's claim lasts the largest function timeout + 10 s (the lease shortens it).
    worker = Worker(functions=settings.functions, redis_pool=object(), handle_signals=False)  # type: ignore[arg-type]
    assert worker.in_progress_timeout_s == arq_wire.claim_ttl_s()


def test_key_prefixes_are_arqs() -> None:
    from arq import constants

    assert arq_wire.job_key("x") == constants.job_key_prefix + "x"
    assert arq_wire.in_progress_key("x") == constants.in_progress_key_prefix + "x"
    assert arq_wire.retry_key("x") == constants.retry_key_prefix + "x"
