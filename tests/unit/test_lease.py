"""worker/lease.py's sweep on fakeredis: recovered jobs go first, stuck arq claims are released."""

from __future__ import annotations

import fakeredis

from producer import clock, keys
from producer.models import JobState
from worker.lease import FRONT_OF_QUEUE, Leases

QUEUE = "predq:queue"


def leases(redis: fakeredis.FakeAsyncRedis) -> Leases:
    return Leases(redis, queue_name=QUEUE, lease_s=15, arq_claim_s=87_010)


async def test_a_job_whose_lease_ran_out_goes_to_the_front(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    now_ms = clock.to_ms(clock.now())
    backlog = {f"queued-{n}": now_ms - 60_000 + n for n in range(5)}
    await fake_redis.zadd(QUEUE, backlog)
    await fake_redis.zadd(QUEUE, {"orphan": now_ms - 1000, "alive": now_ms + 10_000})
    await fake_redis.zadd(keys.state_index(JobState.RUNNING), {"orphan": 1, "alive": 1})
    await fake_redis.set(keys.arq_in_progress("alive"), 1, px=10_000)

    touched = await leases(fake_redis).sweep()

    assert touched == ["orphan"]
    head = await fake_redis.zrange(QUEUE, 0, 0, withscores=True)
    assert head == [(b"orphan", float(FRONT_OF_QUEUE))]
    assert await fake_redis.zscore(QUEUE, "alive") == now_ms + 10_000


async def test_a_claim_never_shortened_is_released(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    now_ms = clock.to_ms(clock.now())
    await fake_redis.zadd(QUEUE, {"stuck": now_ms - 5000, "fresh": now_ms - 5000})
    # arq claimed both with its ~1-day TTL; "fresh" a moment ago, "stuck" a minute ago (its
    # worker died before shortening it to a lease).
    await fake_redis.set(keys.arq_in_progress("stuck"), 1, px=87_010_000 - 60_000)
    await fake_redis.set(keys.arq_in_progress("fresh"), 1, px=87_010_000 - 50)

    touched = await leases(fake_redis).sweep()

    assert touched == ["stuck"]
    assert not await fake_redis.exists(keys.arq_in_progress("stuck"))
    assert await fake_redis.exists(keys.arq_in_progress("fresh"))


async def test_holding_shortens_the_claim_and_moves_the_job_out_of_the_due_window(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    now_ms = clock.to_ms(clock.now())
    await fake_redis.zadd(QUEUE, {"job": now_ms - 1000})
    await fake_redis.set(keys.arq_in_progress("job"), 1, px=87_010_000)
    pool = leases(fake_redis)
    hold = await pool.hold("job")
    assert 0 < await fake_redis.pttl(keys.arq_in_progress("job")) <= 15_000
    assert await fake_redis.zscore(QUEUE, "job") > now_ms
    newer = await pool.hold("job")  # the same process claimed its job again
    pool.drop("job", hold)  # the older run ending must not end the newer run's lease
    assert "job" in pool._held
    pool.drop("job", newer)
    assert "job" not in pool._held


async def test_concurrent_holds_get_their_own_tokens(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    import asyncio

    pool = leases(fake_redis)
    tokens = await asyncio.gather(*(pool.hold(f"job-{n}") for n in range(20)))
    for n, token in enumerate(tokens):
        pool.drop(f"job-{n}", token)
    assert pool._held == {}
