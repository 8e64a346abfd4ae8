"""Settings come from an explicit mapping, fail with the variable's name, and never echo secrets."""

from __future__ import annotations

import pytest

from producer.config import Config, redact_url
from producer.errors import ConfigError
from worker.config import WorkerConfig


def test_defaults_without_environment() -> None:
    config = Config.from_env({})
    assert config.redis_url == "redis://localhost:6379/0"
    assert config.max_input_bytes == 256 * 1024
    assert config.idempotency_window_s == 24 * 3600


def test_environment_and_overrides() -> None:
    env = {"REDIS_URL": "redis://r:1/2", "PREDQ_MAX_INPUT_BYTES": "1000", "UNRELATED": "x"}
    config = Config.from_env(env, redis_url="redis://other:3/0")
    assert config.redis_url == "redis://other:3/0"
    assert config.max_input_bytes == 1000


def test_worker_settings_from_environment() -> None:
    env = {
        "PREDQ_CONCURRENCY": "7",
        "PREDQ_MAX_ATTEMPTS": "2",
        "PREDQ_ATTEMPT_TIMEOUT_S": "12.5",
        "REPLICATE_API_TOKEN": "r8_secret_value",
    }
    config = WorkerConfig.from_env(env)
    assert (config.concurrency, config.max_attempts, config.attempt_timeout_s) == (7, 2, 12.5)
    assert "r8_secret_value" not in repr(config)
    assert config.secrets() == ["r8_secret_value"]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PREDQ_CONCURRENCY": "many"}, "PREDQ_CONCURRENCY"),
        ({"PREDQ_CONCURRENCY": "0"}, "PREDQ_CONCURRENCY"),
        ({"PREDQ_MAX_ATTEMPTS": "1000"}, "PREDQ_MAX_ATTEMPTS"),
        ({"PREDQ_ATTEMPT_TIMEOUT_S": "-3"}, "PREDQ_ATTEMPT_TIMEOUT_S"),
        ({"PREDQ_LOG_FORMAT": "xml"}, "PREDQ_LOG_FORMAT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        WorkerConfig.from_env(env)


def test_redis_password_is_never_shown() -> None:
    config = Config.from_env({"REDIS_URL": "redis://user:hunter22@db:6379/0"})
    assert "hunter22" not in repr(config)
    assert config.redis_url_redacted == "redis://user:***@db:6379/0"
    assert redact_url("redis://:pw1234@h/0") == "redis://:***@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_query_string_passwords_are_masked_and_known_as_secrets() -> None:
    url = "redis://db:6379/0?password=q-secret-1&socket_timeout=5"
    assert "q-secret-1" not in redact_url(url)
    assert "socket_timeout=5" in redact_url(url)
    assert WorkerConfig.from_env({"REDIS_URL": url}).secrets() == ["q-secret-1"]
    encoded = WorkerConfig.from_env({"REDIS_URL": "redis://:p%40ss-word@db/0"})
    assert encoded.secrets() == ["p@ss-word"]
