"""The HTTP API against its own OpenAPI document: schemathesis generates requests for every
operation (both key roles), and each answer must be what the document says (status codes,
content types, bodies), never a 500."""

from __future__ import annotations

import fakeredis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from api.app import create_app
from api.config import ApiConfig
from producer.client import Producer

FULL = "full-access-key-0123456789"
READ = "read-only-key-0123456789"


def make_app() -> object:
    config = ApiConfig.from_env(
        {
            "PREDQ_API_KEYS": FULL,
            "PREDQ_API_READ_KEYS": READ,
            "PREDQ_API_MAX_WAIT_S": "0.1",
            "REDIS_URL": "redis://fake:6379/0",
        }
    )
    redis = fakeredis.FakeAsyncRedis()
    return create_app(config, producer=Producer(config=config, redis=redis))


schema = schemathesis.openapi.from_asgi("/openapi.json", make_app())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.parametrize("key", [FULL, READ], ids=["full", "read"])
def test_every_operation_answers_as_documented(case: schemathesis.Case, key: str) -> None:
    # Left out: "a schema-valid request is accepted". What only the producer can judge (an
    # input's size in bytes, where a callback URL resolves) is refused with a documented 413 or
    # 422, by design.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {key}"},
        excluded_checks=[positive_data_acceptance],
    )
