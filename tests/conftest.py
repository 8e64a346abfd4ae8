"""Fixtures shared by every tier: a fake Redis for the unit tier, and a settings object."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest

from producer.config import Config
from producer.store import JobStore


@pytest.fixture
async def fake_redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    redis = fakeredis.FakeAsyncRedis()
    yield redis
    await redis.aclose()


@pytest.fixture
def config() -> Config:
    return Config(redis_url="redis://fake:6379/0")


@pytest.fixture
def store(fake_redis: fakeredis.FakeAsyncRedis, config: Config) -> JobStore:
    return JobStore(fake_redis, config)
