from __future__ import annotations

import pytest

from runtime import schema
from runtime.config import (
    AuthConfig,
    ConfigError,
    StoreConfig,
    aws_read_timeout_from_env,
    log_level_from_env,
)


def test_store_config_defaults() -> None:
    config = StoreConfig.from_env({schema.ENV_CONNECTIONS_TABLE: "t"})
    assert config == StoreConfig("t", 600, 60, 10)


def test_missing_table_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CONNECTIONS_TABLE is not set"):
        StoreConfig.from_env({})


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        (schema.ENV_IDLE_TIMEOUT, "ten", "CONNECTION_IDLE_TIMEOUT_SECONDS='ten' is not an integer"),
        (schema.ENV_IDLE_TIMEOUT, "0", "CONNECTION_IDLE_TIMEOUT_SECONDS=0 must be >= 1"),
        (schema.ENV_MESSAGES_PER_MINUTE, "-1", "MESSAGES_PER_MINUTE=-1 must be >= 0"),
        (schema.ENV_MAX_CONNECTIONS_PER_USER, "1.5", "MAX_CONNECTIONS_PER_USER='1.5'"),
    ],
)
def test_malformed_numbers_name_the_variable(name: str, value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        StoreConfig.from_env({schema.ENV_CONNECTIONS_TABLE: "t", name: value})


def test_auth_config_defaults_jwks_to_the_issuer() -> None:
    config = AuthConfig.from_env(
        {schema.ENV_AUTH_ISSUER: "https://issuer.example/", schema.ENV_AUTH_AUDIENCE: "aud"}
    )
    assert config.jwks_url == "https://issuer.example/.well-known/jwks.json"
    assert config.token_use is None


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({schema.ENV_AUTH_AUDIENCE: "a"}, "AUTH_ISSUER is not set"),
        ({schema.ENV_AUTH_ISSUER: "https://i"}, "AUTH_AUDIENCE is not set"),
        (
            {
                schema.ENV_AUTH_ISSUER: "https://i",
                schema.ENV_AUTH_AUDIENCE: "a",
                schema.ENV_AUTH_TOKEN_USE: "refresh",
            },
            "AUTH_TOKEN_USE='refresh' must be 'id' or 'access'",
        ),
        (
            {
                schema.ENV_AUTH_ISSUER: "https://i",
                schema.ENV_AUTH_AUDIENCE: "a",
                schema.ENV_AUTH_JWKS_URL: "file:///etc/passwd",
            },
            "AUTH_JWKS_URL='file:///etc/passwd' is not a URL",
        ),
    ],
)
def test_auth_config_errors_name_the_variable(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AuthConfig.from_env(env)


def test_log_level() -> None:
    assert log_level_from_env({}) == "INFO"
    assert log_level_from_env({schema.ENV_LOG_LEVEL: "debug"}) == "DEBUG"
    with pytest.raises(ConfigError, match="LOG_LEVEL='LOUD'"):
        log_level_from_env({schema.ENV_LOG_LEVEL: "loud"})


def test_a_handler_fails_its_cold_start_naming_the_missing_variable() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != schema.ENV_CHAT_QUEUE_URL}
    result = subprocess.run(
        [sys.executable, "-c", "import runtime.handlers.message"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "CHAT_QUEUE_URL is not set" in result.stderr


def test_aws_calls_are_bounded_by_default_and_the_read_timeout_can_be_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runtime import aws

    assert aws_read_timeout_from_env({}) == 1
    assert aws_read_timeout_from_env({schema.ENV_AWS_READ_TIMEOUT: "5"}) == 5
    with pytest.raises(ConfigError, match="AWS_READ_TIMEOUT_SECONDS=0 must be >= 1"):
        aws_read_timeout_from_env({schema.ENV_AWS_READ_TIMEOUT: "0"})
    monkeypatch.delenv(schema.ENV_AWS_READ_TIMEOUT, raising=False)
    aws.reset_clients()
    try:
        for client in (aws.dynamodb(), aws.sqs()):
            config = client.meta.config
            assert (config.connect_timeout, config.read_timeout) == (1, 1)
            assert config.retries == {"mode": "standard", "total_max_attempts": 2}
        assert aws.call_worst_case_seconds() == 5
    finally:
        aws.reset_clients()
