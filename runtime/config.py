"""The Lambda functions' configuration, read from environment variables once per container.

A missing or malformed variable fails the cold start with a ``ConfigError`` that names the
variable and says what it must hold, instead of failing later on the first request.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from runtime import schema


class ConfigError(RuntimeError):
    """A required environment variable is missing or malformed."""


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is not set; set it to {_HINTS[name]}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not an integer; set it to {_HINTS[name]}"
        ) from None
    if value < minimum:
        raise ConfigError(f"environment variable {name}={value} must be >= {minimum}")
    return value


_HINTS = {
    schema.ENV_CONNECTIONS_TABLE: "the connections table's name",
    schema.ENV_CHAT_QUEUE_URL: "the chat FIFO queue's URL",
    schema.ENV_MANAGEMENT_ENDPOINT: "https://<apiId>.execute-api.<region>.amazonaws.com/<stage>",
    schema.ENV_IDLE_TIMEOUT: "a number of seconds (default 600)",
    schema.ENV_MESSAGES_PER_MINUTE: "messages per connection per minute (default 60, 0 = off)",
    schema.ENV_MAX_CONNECTIONS_PER_USER: "connections per user (default 10, 0 = unlimited)",
    schema.ENV_AUTH_ISSUER: "the token issuer, e.g. https://cognito-idp.<region>.amazonaws.com/<poolId>",
    schema.ENV_AUTH_AUDIENCE: "the expected audience (or Cognito app client id)",
    schema.ENV_AWS_READ_TIMEOUT: "a whole number of seconds (default 1)",
}


@dataclass(frozen=True)
class StoreConfig:
    """What ConnectionStore needs: the table and the TTL / rate-limit policy."""

    table_name: str
    idle_timeout_seconds: int = schema.IDLE_TIMEOUT_SECONDS
    messages_per_minute: int = schema.DEFAULT_MESSAGES_PER_MINUTE
    max_connections_per_user: int = schema.DEFAULT_MAX_CONNECTIONS_PER_USER

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig:
        env = os.environ if env is None else env
        return cls(
            table_name=_required(env, schema.ENV_CONNECTIONS_TABLE),
            idle_timeout_seconds=_int(
                env, schema.ENV_IDLE_TIMEOUT, schema.IDLE_TIMEOUT_SECONDS, minimum=1
            ),
            messages_per_minute=_int(
                env, schema.ENV_MESSAGES_PER_MINUTE, schema.DEFAULT_MESSAGES_PER_MINUTE
            ),
            max_connections_per_user=_int(
                env, schema.ENV_MAX_CONNECTIONS_PER_USER, schema.DEFAULT_MAX_CONNECTIONS_PER_USER
            ),
        )


def queue_url_from_env(env: Mapping[str, str] | None = None) -> str:
    return _required(os.environ if env is None else env, schema.ENV_CHAT_QUEUE_URL)


def management_endpoint_from_env(env: Mapping[str, str] | None = None) -> str:
    return _required(os.environ if env is None else env, schema.ENV_MANAGEMENT_ENDPOINT)


@dataclass(frozen=True)
class AuthConfig:
    """What TokenVerifier needs. The issuer is kept exactly as configured (it is compared with
    ``iss`` as is); the JWKS URL defaults to ``schema.default_jwks_url(issuer)``."""

    issuer: str
    audience: str
    jwks_url: str
    token_use: schema.TokenUse | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthConfig:
        env = os.environ if env is None else env
        issuer = _required(env, schema.ENV_AUTH_ISSUER)
        audience = _required(env, schema.ENV_AUTH_AUDIENCE)
        configured_jwks_url = env.get(schema.ENV_AUTH_JWKS_URL, "").strip()
        jwks_url = configured_jwks_url or schema.default_jwks_url(issuer)
        _check_jwks_url(
            jwks_url,
            f"{schema.ENV_AUTH_JWKS_URL}={jwks_url!r}"
            if configured_jwks_url
            else f"{schema.ENV_AUTH_ISSUER}={issuer!r} (the default JWKS URL {jwks_url!r})",
        )
        raw_use = env.get(schema.ENV_AUTH_TOKEN_USE, "").strip()
        if raw_use and raw_use not in schema.TOKEN_USES:
            raise ConfigError(
                f"environment variable {schema.ENV_AUTH_TOKEN_USE}={raw_use!r} must be 'id' or "
                "'access' (Cognito token types), or unset for a non-Cognito issuer"
            )
        token_use = cast("schema.TokenUse", raw_use) if raw_use else None
        return cls(issuer=issuer, audience=audience, jwks_url=jwks_url, token_use=token_use)


def _check_jwks_url(url: str, variable: str) -> None:
    """Signing keys only over TLS: a key set fetched in clear text could be swapped in transit.
    Plain ``http://`` is accepted on loopback only (local mode serves its dev JWKS there)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    if parts.scheme in ("http", "https") and parts.hostname:
        raise ConfigError(
            f"environment variable {variable} is not https://; the signing keys must come over "
            f"TLS: set {schema.ENV_AUTH_JWKS_URL} to the https:// address of the issuer's JWKS "
            "(http:// is accepted on loopback only)"
        )
    raise ConfigError(
        f"environment variable {variable} is not a URL; set {schema.ENV_AUTH_JWKS_URL} to the "
        "https:// address of the issuer's JWKS"
    )


def is_loopback(host: str | None) -> bool:
    """A loopback address: traffic to it never leaves this machine (local mode hands its
    handlers a loopback JWKS URL whatever interface its gateway listens on, and serves dev
    tokens to loopback clients only)."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback


def aws_read_timeout_from_env(env: Mapping[str, str] | None = None) -> int:
    """Seconds a DynamoDB or SQS call may wait for its answer."""
    return _int(
        os.environ if env is None else env,
        schema.ENV_AWS_READ_TIMEOUT,
        schema.DEFAULT_AWS_READ_TIMEOUT_SECONDS,
        minimum=1,
    )


def log_level_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    level = env.get(schema.ENV_LOG_LEVEL, "INFO").strip().upper() or "INFO"
    if level not in schema.LOG_LEVELS:
        raise ConfigError(
            f"environment variable {schema.ENV_LOG_LEVEL}={level!r} must be one of "
            + ", ".join(schema.LOG_LEVELS)
        )
    return level
