"""Redis restarts under running workers: nothing lost, no worker exits, producers get a clear error.

These run on a redis-server of their own, configured by ops/redis.conf (AOF, fsync always), so
they can stop, SIGKILL and restart it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.local_redis import LocalRedis
from devkit.wait import eventually
from producer import RedisUnavailable
from producer.client import Producer
from producer.config import Config
from producer.models import JobState
from tests.integration.conftest import Sandbox, Workers

pytestmark = pytest.mark.integration
REDIS_CONF = Path(__file__).resolve().parents[2] / "ops" / "redis.conf"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    with LocalRedis(data_dir=tmp_path / "redis", config_file=REDIS_CONF) as server:
        yield server


@pytest.mark.parametrize("crash", [False, True], ids=["restart", "sigkill"])
async def test_jobs_survive_a_redis_restart(
    own_redis: LocalRedis, sandbox: Sandbox, tmp_path: Path, crash: bool
) -> None:
    sandbox.faults(latency_s=1.0)
    pool = Workers(own_redis.url, sandbox, tmp_path)
    config = Config(redis_url=own_redis.url, redis_timeout_s=1)
    try:
        processes = pool.start(2)
        async with Producer(config=config) as producer:
            jobs = [await producer.enqueue("sandbox/echo", {"n": n}) for n in range(30)]

            # The outage hits jobs in flight: some have started (their predictions run).
            async def started() -> bool:
                return (await producer.counts())[JobState.RUNNING] > 0

            await eventually(started, timeout_s=20, what="some jobs to start")
            own_redis.kill() if crash else own_redis.stop()
            with pytest.raises(RedisUnavailable, match="unavailable"):
                await producer.enqueue("sandbox/echo", {"during": "outage"})
            await asyncio.sleep(1.0)
            own_redis.start()
            late = await producer.enqueue("sandbox/echo", {"after": "restart"})
            done = [await producer.wait(job.id, timeout_s=90) for job in [*jobs, late]]
        assert [r.state for r in done] == [JobState.SUCCEEDED] * len(done)
        assert all(p.poll() is None for p in processes), "a worker exited"
        assert sandbox.stats()["duplicate_inputs"] == 0
    except BaseException:
        print(pool.log_text())
        raise
    finally:
        pool.stop_all()
