"""Producer.enqueue_many: one round trip, per-job atomicity, idempotency, all-or-nothing validation."""

from __future__ import annotations

import fakeredis
import pytest

from producer import InvalidRequest, JobState, Producer
from producer.config import Config
from producer.errors import InvalidModelRef


async def test_a_batch_is_queued_in_order(
    fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    producer = Producer(config=config, redis=fake_redis)
    records = await producer.enqueue_many([{"model": "o/n", "input": {"n": n}} for n in range(100)])
    assert [r.input for r in records] == [{"n": n} for n in range(100)]
    assert {r.state for r in records} == {JobState.QUEUED}
    assert await fake_redis.zcard(config.queue_name) == 100
    stored = await producer.get(records[42].id)
    assert stored == records[42]


async def test_idempotency_keys_hold_within_and_across_batches(
    fake_redis: fakeredis.FakeAsyncRedis, config: Config
) -> None:
    producer = Producer(config=config, redis=fake_redis)
    first = await producer.enqueue("o/n", {"a": 1}, idempotency_key="k1")
    records = await producer.enqueue_many(
        [
            {"model": "o/n", "input": {}, "idempotency_key": "k1"},
            {"model": "o/n", "input": {}, "idempotency_key": "k2"},
            {"model": "o/n", "input": {}, "idempotency_key": "k2"},
        ]
    )
    assert records[0].id == first.id
    assert records[1].id == records[2].id != first.id
    assert await fake_redis.zcard(config.queue_name) == 2


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"model": "nope", "input": {}}, InvalidModelRef, "job 2: model must be"),
        ({"model": "o/n"}, InvalidRequest, "job 2: needs 'model' and 'input'"),
        ({"model": "o/n", "input": {}, "priority": 1}, InvalidRequest, "unknown fields"),
        ({"model": "o/n", "input": [1]}, InvalidRequest, "job 2: input must be a JSON object"),
    ],
)
async def test_one_bad_job_rejects_the_batch_and_writes_nothing(
    fake_redis: fakeredis.FakeAsyncRedis,
    config: Config,
    bad: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    producer = Producer(config=config, redis=fake_redis)
    jobs = [{"model": "o/n", "input": {}}, {"model": "o/n", "input": {}}, bad]
    with pytest.raises(error, match=message):
        await producer.enqueue_many(jobs)
    assert await fake_redis.dbsize() == 0
