"""The state machine in producer/store.py, on fakeredis (its Lua runs the same scripts)."""

from __future__ import annotations

import json

import fakeredis
import pytest

from producer import arq_wire, clock, keys
from producer.config import Config
from producer.models import ErrorInfo, ErrorKind, JobRequest, JobState
from producer.store import JobStore


def request(**overrides: object) -> JobRequest:
    args: dict[str, object] = {"model": "sandbox/echo", "input": {"x": 1}, "max_input_bytes": 1024}
    args.update(overrides)
    return JobRequest.build(**args)  # type: ignore[arg-type]


def error(kind: ErrorKind = ErrorKind.TRANSIENT, retry_in_s: float | None = 1.0) -> ErrorInfo:
    return ErrorInfo(kind=kind, message="boom", attempt=1, at=clock.now(), retry_in_s=retry_in_s)


async def test_create_writes_record_index_and_arq_entry(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    record, created = await store.create(request())
    assert created
    assert record.state is JobState.QUEUED
    assert await store.get(record.id) == record
    assert await ids_in(fake_redis, JobState.QUEUED) == [record.id]
    assert await fake_redis.zscore(config.queue_name, record.id) is not None
    payload = json.loads(await fake_redis.get(arq_wire.job_key(record.id)))
    assert payload["f"] == "run_prediction"
    assert payload["a"] == [record.id]
    assert await fake_redis.ttl(keys.job(record.id)) == -1  # live records never expire


async def test_unknown_id_is_none(store: JobStore) -> None:
    assert await store.get("no-such-job") is None
    transition = await store.cancel("no-such-job")
    assert transition.status == "missing"


async def test_idempotency_key_returns_the_first_job_and_writes_nothing(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    first, created = await store.create(request(idempotency_key="order-1"))
    size = await fake_redis.dbsize()
    again, created_again = await store.create(request(idempotency_key="order-1", input={"y": 2}))
    assert created
    assert not created_again
    assert again.id == first.id
    assert again.input == {"x": 1}
    assert await fake_redis.dbsize() == size


async def test_attempt_lifecycle_to_success(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    record, _ = await store.create(request())
    claim, run = await store.start(record.id)
    assert claim.ok
    assert claim.previous is JobState.QUEUED
    assert claim.record is not None
    assert claim.record.attempts == 1
    assert claim.record.started_at is not None
    assert await store.set_prediction_id(record.id, run, "p1") == "ok"
    done = await store.succeed(record.id, run, json.dumps({"out": [1, {}]}), prediction_id="p1")
    assert done.ok
    final = await store.get(record.id)
    assert final is not None
    assert final.state is JobState.SUCCEEDED
    assert final.output == {"out": [1, {}]}
    assert final.prediction_id == "p1"
    assert final.finished_at is not None
    assert await ids_in(fake_redis, JobState.RUNNING) == []
    assert await ids_in(fake_redis, JobState.SUCCEEDED) == [record.id]


async def test_final_records_expire_after_retention(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    record, _ = await store.create(request())
    _, run = await store.start(record.id)
    await store.succeed(record.id, run, "null", prediction_id=None)
    ttl = await fake_redis.ttl(keys.job(record.id))
    assert 0 < ttl <= config.retention_s


async def test_retry_keeps_every_error_and_reschedules(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    record, _ = await store.create(request())
    for attempt in (1, 2):
        claim, run = await store.start(record.id)
        assert claim.record is not None
        assert claim.record.attempts == attempt
        before_ms = clock.to_ms(clock.now())
        assert (
            await store.retry_later(record.id, run, error(retry_in_s=30), prediction_id=None)
        ).ok
        score = await fake_redis.zscore(config.queue_name, record.id)
        assert score >= before_ms + 30_000
    current = await store.get(record.id)
    assert current is not None
    assert current.state is JobState.RETRYING
    assert len(current.errors) == 2
    assert current.error == current.errors[-1]


async def test_illegal_moves_are_refused(store: JobStore) -> None:
    record, _ = await store.create(request())
    assert (await store.succeed(record.id, "no-run", "1", prediction_id=None)).status == "illegal"
    _, run = await store.start(record.id)
    assert (await store.succeed(record.id, run, "1", prediction_id=None)).ok
    for transition in (
        await store.cancel(record.id),
        (await store.start(record.id))[0],
        await store.fail(record.id, run, error()),
    ):
        assert transition.status == "illegal"
        assert transition.previous is JobState.SUCCEEDED
    final = await store.get(record.id)
    assert final is not None
    assert final.state is JobState.SUCCEEDED


async def test_cancel_wins_over_a_later_success(store: JobStore) -> None:
    record, _ = await store.create(request())
    _, run = await store.start(record.id)
    assert (await store.cancel(record.id)).ok
    late = await store.succeed(record.id, run, "1", prediction_id=None)
    assert late.status == "illegal"
    final = await store.get(record.id)
    assert final is not None
    assert final.state is JobState.CANCELED
    assert final.output is None


async def test_recovered_job_fences_out_the_old_run(store: JobStore) -> None:
    record, _ = await store.create(request())
    _, old_run = await store.start(record.id)
    claim, new_run = await store.start(record.id)  # another worker takes over a running job
    assert claim.ok
    assert claim.previous is JobState.RUNNING
    assert claim.record is not None
    assert claim.record.attempts == 1
    assert claim.record.recoveries == 1
    assert await store.set_prediction_id(record.id, old_run, "p-old") == "stale"
    assert (await store.succeed(record.id, new_run, "2", prediction_id=None)).ok


async def test_a_prediction_belongs_to_one_job(store: JobStore) -> None:
    first, _ = await store.create(request())
    second, _ = await store.create(request())
    _, run1 = await store.start(first.id)
    _, run2 = await store.start(second.id)
    assert await store.set_prediction_id(first.id, run1, "p1") == "ok"
    assert await store.set_prediction_id(second.id, run2, "p1") == "claimed"
    assert await store.set_prediction_id(first.id, run1, "p1") == "ok"  # idempotent


async def test_hand_over_resumes_the_same_attempt(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    record, _ = await store.create(request())
    _, run = await store.start(record.id)
    await store.set_prediction_id(record.id, run, "p1")
    assert (await store.hand_over(record.id, run, "p1")).ok
    queued = await store.get(record.id)
    assert queued is not None
    assert queued.state is JobState.QUEUED and queued.prediction_id == "p1"
    assert await fake_redis.zscore(config.queue_name, record.id) <= clock.to_ms(clock.now())
    claim, _ = await store.start(record.id)
    assert claim.record is not None
    assert (claim.record.attempts, claim.record.recoveries) == (1, 0)
    assert claim.record.prediction_id == "p1"


async def test_requeue_redrives_a_failed_job_with_fresh_attempts(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    record, _ = await store.create(request())
    assert (await store.requeue(record.id)).status == "illegal"  # only failed jobs
    _, run = await store.start(record.id)
    await store.fail(record.id, run, error(ErrorKind.MODEL, None), prediction_id="p1")
    await fake_redis.zrem(config.queue_name, record.id)  # as arq does when the job ends
    assert (await store.requeue(record.id)).ok
    again = await store.get(record.id)
    assert again is not None
    assert again.state is JobState.QUEUED and again.redrives == 1
    assert again.prediction_id is None and again.finished_at is None
    assert len(again.errors) == 1
    assert again.attempts_this_drive == 0
    assert await fake_redis.zscore(config.queue_name, record.id) is not None
    assert await fake_redis.ttl(keys.job(record.id)) == -1
    assert (await store.requeue("missing")).status == "missing"


async def test_a_replayed_transition_is_applied_once(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py resends a script whose reply was lost: the same call must not count twice."""
    import uuid

    record, _ = await store.create(request())
    fixed = uuid.UUID(int=7)
    monkeypatch.setattr("producer.store.uuid.uuid4", lambda: fixed)
    first, _ = await store.start(record.id)
    replay, _ = await store.start(record.id)  # the identical call, as a resend would be
    assert first.ok and replay.ok
    assert replay.record is not None
    assert (replay.record.attempts, replay.record.recoveries) == (1, 0)


async def ids_in(redis: fakeredis.FakeAsyncRedis, state: JobState) -> list[str]:
    """The state index, newest first."""
    return [i.decode() for i in await redis.zrevrange(keys.state_index(state), 0, -1)]


async def test_a_start_with_a_lease_shortens_arqs_claim_in_the_same_call(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    record, _ = await store.create(request())
    queue = Config.from_env({}).queue_name
    claim_key = arq_wire.in_progress_key(record.id)
    await fake_redis.set(claim_key, 1, px=int(arq_wire.claim_ttl_s() * 1000))  # arq's claim
    before_ms = clock.now_ms()
    claim, _ = await store.start(record.id, lease_ms=15_000)
    assert claim.ok
    assert 0 < await fake_redis.pttl(claim_key) <= 15_000
    due = await fake_redis.zscore(queue, record.id)
    assert due is not None and before_ms + 15_000 <= due <= clock.now_ms() + 15_000
    unleased, _ = await store.create(request(idempotency_key="other"))
    await fake_redis.set(arq_wire.in_progress_key(unleased.id), 1, px=87_010_000)
    await store.start(unleased.id)  # without a lease: arq's claim is left alone
    assert await fake_redis.pttl(arq_wire.in_progress_key(unleased.id)) > 15_000


async def _arq_entries(redis: fakeredis.FakeAsyncRedis, queue: str, job_id: str) -> list[str]:
    """Which of arq's entries for the job exist."""
    found = []
    if await redis.zscore(queue, job_id) is not None:
        found.append("queue entry")
    for name, key in (("payload", arq_wire.job_key(job_id)), ("claim", arq_wire.in_progress_key(job_id)),
                      ("try count", arq_wire.retry_key(job_id))):  # fmt: skip
        if await redis.exists(key):
            found.append(name)
    return found


@pytest.mark.parametrize("end", ["succeed", "fail", "cancel"])
async def test_an_attempts_own_final_move_ends_arqs_entries_with_it(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis, config: Config, end: str
) -> None:
    record, _ = await store.create(request())
    _, run = await store.start(record.id, worker="w1")
    await fake_redis.set(arq_wire.in_progress_key(record.id), "w1")  # the claim and try count
    await fake_redis.set(arq_wire.retry_key(record.id), 1)
    everything = ["queue entry", "payload", "claim", "try count"]
    assert await _arq_entries(fake_redis, config.queue_name, record.id) == everything
    if end == "succeed":
        moved = await store.succeed(record.id, run, "{}", prediction_id="p1")
    elif end == "fail":
        moved = await store.fail(record.id, run, error(ErrorKind.MODEL, None))
    else:
        moved = await store.cancel(record.id, run=run, error=error(ErrorKind.CANCELED, None))
    assert moved.ok
    assert await _arq_entries(fake_redis, config.queue_name, record.id) == []
    assert (await store.requeue(record.id)).status in ("ok", "illegal")  # never "busy"


async def test_a_claim_another_worker_took_since_is_left_to_it(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    """w1's lease lapsed and w2 claimed the job, but w1 ends it before w2 starts it: w2's claim
    stays (its arq run ends the job), so a re-drive waits for it instead of being finished away."""
    record, _ = await store.create(request())
    _, run = await store.start(record.id, worker="w1")
    await fake_redis.set(arq_wire.in_progress_key(record.id), "w2")
    assert (await store.fail(record.id, run, error(ErrorKind.MODEL, None))).ok
    assert await _arq_entries(fake_redis, config.queue_name, record.id) == ["claim"]
    assert (await store.requeue(record.id)).status == "busy"


async def test_a_producers_cancel_leaves_arqs_entries_for_the_worker(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    """A canceled job is still delivered once: the worker that takes it cancels its prediction."""
    record, _ = await store.create(request())
    _, run = await store.start(record.id)
    await fake_redis.set(arq_wire.in_progress_key(record.id), 1)
    assert (await store.cancel(record.id)).ok
    assert await _arq_entries(fake_redis, config.queue_name, record.id) == [
        "queue entry", "payload", "claim"
    ]  # fmt: skip
    assert not (
        await store.succeed(record.id, run, "{}", prediction_id="p1")
    ).ok  # and a stale end removes nothing
    assert len(await _arq_entries(fake_redis, config.queue_name, record.id)) == 3


async def test_the_scripts_can_be_loaded_ahead_of_the_first_calls(
    store: JobStore, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    """A worker loads them at start-up: its first jobs, started at once, then do not each find
    a script missing, load it and call again."""
    import hashlib
    from importlib import resources

    lua = resources.files("producer").joinpath("lua")
    shas = [
        hashlib.sha1(f.read_bytes()).hexdigest() for f in lua.iterdir() if f.name.endswith(".lua")
    ]
    assert not any(await fake_redis.script_exists(*shas))
    await store.load_scripts()
    assert all(await fake_redis.script_exists(*shas))
