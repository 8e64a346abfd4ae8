"""worker/lease.py's sweep on fakeredis: recovered jobs go first, stuck arq claims are released."""

from __future__ import annotations

import fakeredis

from producer import arq_wire, clock, keys
from producer.models import JobState
from worker.lease import Leases

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
    await fake_redis.set(arq_wire.in_progress_key("alive"), 1, px=10_000)

    touched = await leases(fake_redis).sweep()

    assert touched == ["orphan"]
    head = await fake_redis.zrange(QUEUE, 0, 0, withscores=True)
    assert head == [(b"orphan", float(arq_wire.FRONT_SCORE))]
    assert await fake_redis.zscore(QUEUE, "alive") == now_ms + 10_000


async def test_a_claim_never_shortened_is_released(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    now_ms = clock.to_ms(clock.now())
    await fake_redis.zadd(QUEUE, {"stuck": now_ms - 5000, "fresh": now_ms - 5000})
    # arq claimed both with its ~1-day TTL; "fresh" a moment ago, "stuck" a minute ago (its
    # worker died before shortening it to a lease).
    await fake_redis.set(arq_wire.in_progress_key("stuck"), 1, px=87_010_000 - 60_000)
    await fake_redis.set(arq_wire.in_progress_key("fresh"), 1, px=87_010_000 - 50)

    touched = await leases(fake_redis).sweep()

    assert touched == ["stuck"]
    assert not await fake_redis.exists(arq_wire.in_progress_key("stuck"))
    assert await fake_redis.exists(arq_wire.in_progress_key("fresh"))


async def test_holding_shortens_the_claim_and_moves_the_job_out_of_the_due_window(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    now_ms = clock.to_ms(clock.now())
    await fake_redis.zadd(QUEUE, {"job": now_ms - 1000})
    await fake_redis.set(arq_wire.in_progress_key("job"), 1, px=87_010_000)
    pool = leases(fake_redis)
    hold = await pool.hold("job")
    assert 0 < await fake_redis.pttl(arq_wire.in_progress_key("job")) <= 15_000
    assert await fake_redis.zscore(QUEUE, "job") > now_ms
    newer = await pool.hold("job")  # the same process claimed its job again
    hold.release()  # the older run ending must not end the newer run's lease
    assert newer.held and not hold.held
    newer.release()
    assert not newer.held


async def test_concurrent_holds_are_their_own(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    import asyncio

    pool = leases(fake_redis)
    holds = await asyncio.gather(*(pool.hold(f"job-{n}") for n in range(20)))
    assert all(hold.held for hold in holds)
    for hold in holds:
        hold.release()
    assert not any(hold.held for hold in holds)


async def test_a_renewal_that_finds_the_job_canceled_stops_its_hold(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    await fake_redis.hset(keys.job("job"), mapping={"state": "running"})
    pool = leases(fake_redis)
    hold = await pool.hold("job")
    canceled: list[str] = []
    hold.on_cancel(lambda: canceled.append("job"))
    await pool.renew()
    assert canceled == []
    await fake_redis.hset(keys.job("job"), "state", "canceled")
    await pool.renew()
    assert canceled == ["job"]
    assert not hold.held
