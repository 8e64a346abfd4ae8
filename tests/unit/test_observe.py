"""worker/observe.py: what the replicate client's HTTP traffic tells the attempt and the limiter."""

from __future__ import annotations

import fakeredis
import httpx

from producer import keys
from worker.config import Budget
from worker.observe import ObservingTransport, PredictionWatch, watching
from worker.ratelimit import RateLimiter


class Pauses(RateLimiter):
    """A limiter that records the pauses it is asked for."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis) -> None:
        super().__init__(redis, {"create": Budget(600)})
        self.asked: list[float] = []

    async def pause(self, kind: str, seconds: float) -> None:  # type: ignore[override]
        self.asked.append(seconds)
        await super().pause(kind, seconds)  # type: ignore[arg-type]


def throttled(retry_after: str | None) -> httpx.MockTransport:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.MockTransport(lambda _: httpx.Response(429, headers=headers, json={}))


async def created_with(transport: ObservingTransport) -> PredictionWatch:
    async def stored(_: str) -> None:
        pass

    watch = PredictionWatch(on_created=stored)
    async with httpx.AsyncClient(transport=transport, base_url="http://replicate") as client:
        with watching(watch):
            await client.post("/v1/models/o/n/predictions", json={"input": {}})
    return watch


async def test_retry_after_zero_means_now_not_the_default_pause(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    limiter = Pauses(fake_redis)
    transport = ObservingTransport(
        throttled("0"), create_timeout_s=5, limiter=limiter, throttle_pause_s=5.0
    )
    watch = await created_with(transport)
    assert watch.retry_after_s == 0.0
    assert limiter.asked == [0.0]
    assert not await fake_redis.exists(keys.rate_pause("create"))


async def test_a_429_without_retry_after_pauses_every_worker_for_the_default(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    limiter = Pauses(fake_redis)
    transport = ObservingTransport(
        throttled(None), create_timeout_s=5, limiter=limiter, throttle_pause_s=5.0
    )
    watch = await created_with(transport)
    assert watch.retry_after_s is None
    assert limiter.asked == [5.0]
    assert 0 < await fake_redis.pttl(keys.rate_pause("create")) <= 5000
