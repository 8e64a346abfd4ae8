"""Listing jobs: pages over the state indexes (ties in one millisecond included), filters, and
lookups by idempotency key and prediction id."""

from __future__ import annotations

import fakeredis
import pytest

from producer.client import Producer
from producer.config import Config
from producer.errors import InvalidRequest
from producer.models import JobState


@pytest.fixture
def producer(fake_redis: fakeredis.FakeAsyncRedis, config: Config) -> Producer:
    return Producer(config=config, redis=fake_redis)


async def test_pages_cover_every_job_once_even_within_one_millisecond(producer: Producer) -> None:
    jobs = await producer.enqueue_many(  # one batch: most share their millisecond
        [{"model": "o/a" if n % 3 else "o/b:v1", "input": {"n": n}} for n in range(47)]
    )
    for job in jobs[:10]:
        await producer.cancel(job.id)
    seen: list[str] = []
    cursor = None
    while True:
        page = await producer.list_jobs(cursor=cursor, limit=7)
        seen += [job.id for job in page.jobs]
        assert len(page.jobs) <= 7
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(job.id for job in jobs)
    assert len(seen) == len(set(seen))
    canceled = await producer.list_jobs(JobState.CANCELED, limit=50)
    assert {j.id for j in canceled.jobs} == {job.id for job in jobs[:10]}
    by_b = await producer.list_jobs(model="o/b", limit=50)
    assert {j.model for j in by_b.jobs} == {"o/b:v1"}
    assert len(by_b.jobs) == 16
    queued_a = await producer.list_jobs([JobState.QUEUED], model="o/a", limit=50)
    assert all(j.state is JobState.QUEUED and j.model == "o/a" for j in queued_a.jobs)


async def test_lookups_by_idempotency_key_and_prediction_id(
    producer: Producer, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    job = await producer.enqueue("o/a", {}, idempotency_key="order-7")
    found = await producer.find(idempotency_key="order-7")
    assert found is not None
    assert found.id == job.id
    assert await producer.find(idempotency_key="order-8") is None
    await fake_redis.set("predq:prediction:p123", job.id)
    by_prediction = await producer.find(prediction_id="p123")
    assert by_prediction is not None
    assert by_prediction.id == job.id
    with pytest.raises(InvalidRequest):
        await producer.find()
    with pytest.raises(InvalidRequest, match="cursor"):
        await producer.list_jobs(cursor="not-a-cursor!")
