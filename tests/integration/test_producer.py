"""Producer behaviour against a real redis-server: idempotency under races, honest lookups,
bad input that writes nothing, the thread-safe SyncProducer, and a clear error when Redis is down."""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from devkit.launch import free_port
from devkit.local_redis import LocalRedis
from producer import JobNotFound, JobState, Producer, RedisUnavailable, SyncProducer, WaitTimeout
from producer.config import Config
from producer.errors import InputTooLarge, InvalidInput, InvalidModelRef, InvalidRequest

pytestmark = pytest.mark.integration


async def test_fifty_concurrent_enqueues_with_one_key_make_one_job(
    producer: Producer, redis_url: str
) -> None:
    records = await asyncio.gather(
        *(
            producer.enqueue("sandbox/echo", {"n": n}, idempotency_key="checkout-42")
            for n in range(50)
        )
    )
    assert len({r.id for r in records}) == 1
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.zcard(producer.config.queue_name) == 1
        assert len(client.keys("predq:job:*")) == 1
        assert len(client.keys("arq:job:*")) == 1
    finally:
        client.close()


async def test_an_idempotency_key_returns_its_job_whatever_its_state(producer: Producer) -> None:
    first = await producer.enqueue("sandbox/echo", {}, idempotency_key="k")
    await producer.cancel(first.id)
    again = await producer.enqueue("sandbox/echo", {}, idempotency_key="k")
    assert again.id == first.id
    assert again.state is JobState.CANCELED
    other = await producer.enqueue("sandbox/echo", {}, idempotency_key="other")
    assert other.id != first.id


async def test_an_unknown_id_is_not_found_never_queued(producer: Producer) -> None:
    assert await producer.get("0" * 32) is None
    with pytest.raises(JobNotFound, match="not found"):
        await producer.wait("0" * 32, timeout_s=1)
    with pytest.raises(JobNotFound):
        await producer.cancel("0" * 32)


@pytest.mark.parametrize(
    ("model", "data", "error"),
    [
        ("not-a-model", {}, InvalidModelRef),
        ("owner/name", ["a", "list"], InvalidInput),
        ("owner/name", {"x": float("inf")}, InvalidInput),
        ("owner/name", {"x": b"bytes"}, InvalidInput),
        ("owner/name", {"x": "y" * 300_000}, InputTooLarge),
    ],
)
async def test_bad_input_raises_its_error_and_writes_nothing(
    producer: Producer, redis_url: str, model: str, data: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await producer.enqueue(model, data)  # type: ignore[arg-type]
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
    finally:
        client.close()


async def test_wait_gives_up_with_wait_timeout(producer: Producer) -> None:
    job = await producer.enqueue("sandbox/echo", {})  # no worker runs
    with pytest.raises(WaitTimeout, match="still queued"):
        await producer.wait(job.id, timeout_s=0.3)
    with pytest.raises(InvalidRequest):
        await producer.wait(job.id, timeout_s=0)


def test_sync_producer_is_shared_between_threads(redis_url: str) -> None:
    with SyncProducer(redis_url) as producer:
        with ThreadPoolExecutor(max_workers=8) as pool:
            records = list(
                pool.map(lambda n: producer.enqueue("sandbox/echo", {"n": n}), range(40))
            )
        assert len({r.id for r in records}) == 40
        fetched = producer.get(records[7].id)
        assert fetched is not None
        assert fetched.input == {"n": 7}
        assert producer.cancel(records[0].id).state is JobState.CANCELED
        assert producer.get("missing") is None


async def test_unreachable_redis_is_a_clear_error_not_a_hang() -> None:
    url = f"redis://user:s3cret-pass@127.0.0.1:{free_port()}/0"
    config = Config(redis_url=url, redis_timeout_s=1)
    started = time.monotonic()
    async with Producer(config=config) as producer:
        with pytest.raises(RedisUnavailable) as raised:
            await producer.enqueue("sandbox/echo", {})
        with pytest.raises(RedisUnavailable):
            await producer.get("x")
    assert "s3cret-pass" not in str(raised.value)
    assert "***" in str(raised.value)
    assert "connection refused" in str(raised.value)
    assert time.monotonic() - started < 30  # a generous bound: the point is "it returns"


async def test_an_unknown_redis_host_says_so() -> None:
    config = Config(redis_url="redis://no-such-host.invalid:6379/0", redis_timeout_s=1)
    async with Producer(config=config) as producer:
        with pytest.raises(RedisUnavailable, match="unknown host"):
            await producer.get("x")


async def test_a_redis_that_never_answers_is_a_clear_error_not_a_hang() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections, never replies
    try:
        port = listener.getsockname()[1]
        config = Config(redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_s=0.3)
        async with Producer(config=config) as producer:
            with pytest.raises(RedisUnavailable, match="answer"):
                await producer.enqueue("sandbox/echo", {})
            with pytest.raises(RedisUnavailable, match="answer"):
                await producer.get("x")
    finally:
        listener.close()


async def test_a_full_redis_refuses_in_one_line_without_the_input(tmp_path: Path) -> None:
    with LocalRedis(
        data_dir=tmp_path / "redis",
        appendonly=False,
        extra_args=("--maxmemory", "3mb", "--maxmemory-policy", "noeviction"),
    ) as server:
        async with Producer(config=Config(redis_url=server.url)) as producer:
            secret_text = "user-private-prompt " * 5000  # ~100 KB per job

            async def fill() -> None:
                for _ in range(200):
                    await producer.enqueue("sandbox/echo", {"prompt": secret_text})

            with pytest.raises(
                RedisUnavailable, match=r"refused the command: .*maxmemory"
            ) as raised:
                await fill()
            with pytest.raises(RedisUnavailable, match="maxmemory") as batch:
                await producer.enqueue_many([{"model": "o/n", "input": {"p": secret_text}}] * 5)
    for error in (raised.value, batch.value):
        assert "user-private-prompt" not in str(error)
        assert len(str(error).splitlines()) == 1


async def test_a_cancellation_during_a_call_is_not_lost(producer: Producer) -> None:
    """redis-py 5 can finish a command whose task was cancelled meanwhile and carry on; the
    producer raises the cancellation instead (a Ctrl-C, a web request that went away)."""

    async def cancelled_mid_call() -> str:
        await producer.get("warm-up")  # a connection in the pool: the next call need not wait
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await producer.get("no-such-job")
        return "went on"

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_mid_call())
