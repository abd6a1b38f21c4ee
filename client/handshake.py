"""Opening one WebSocket connection: a fresh token in the query string, errors sorted.

API Gateway takes the token from the ``token`` query parameter (browsers cannot set headers on
the upgrade request), and a 401/403 on the handshake means the token was refused.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from client.config import ClientConfig
from client.errors import AUTH_REJECTED_STATUSES, AuthenticationError, InvalidArgumentError
from runtime.schema import MAX_MESSAGE_BYTES, TOKEN_QUERY_PARAMETER

TokenProvider: TypeAlias = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""A token, or a function (sync or async) called for a fresh one on every (re)connect."""

_MAX_ERROR_BODY_CHARS = 200


async def fetch_token(provider: TokenProvider) -> str:
    token: object = provider
    if callable(provider):
        token = provider()
        if inspect.isawaitable(token):
            token = await token
    if not isinstance(token, str) or not token:
        raise ValueError(
            f"the token provider returned {type(token).__name__!s}, not a non-empty string"
        )
    return token


def url_with(url: str, parameters: Mapping[str, str]) -> str:
    """``url`` with these query parameters set (each replaced if present, others kept)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise InvalidArgumentError(f"the URL must start with ws:// or wss://, got {url!r}")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in parameters]
    query.extend(parameters.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def url_with_token(url: str, token: str) -> str:
    """``url`` with its ``token`` query parameter set (replaced if present, others kept)."""
    return url_with(url, {TOKEN_QUERY_PARAMETER: token})


async def open_connection(
    url: str, provider: TokenProvider, config: ClientConfig
) -> ClientConnection:
    """One connection attempt; ``AuthenticationError`` on 401/403, else the transport's error.

    Fetching the token and the handshake together get ``open_timeout``: a token provider that
    hangs (an identity provider that does not answer) fails the attempt like a network error,
    and the next attempt asks it again. (A synchronous provider that blocks cannot be stopped:
    make a slow one ``async``.)
    """
    try:
        async with asyncio.timeout(config.open_timeout):
            return await _open(url, provider, config)
    except TimeoutError:
        raise TimeoutError(
            f"fetching a token and opening the connection took over {config.open_timeout:g} s "
            "(ClientConfig.open_timeout)"
        ) from None


async def _open(url: str, provider: TokenProvider, config: ClientConfig) -> ClientConnection:
    token = await fetch_token(provider)
    try:
        return await connect(
            url_with_token(url, token),
            open_timeout=None,  # open_connection's timeout covers the token and the handshake
            close_timeout=config.close_timeout,
            proxy=config.proxy,
            # Keep-alive is the protocol's own ``ping`` action (the idle timeout counts messages);
            # API Gateway does not negotiate compression.
            ping_interval=None,
            ping_timeout=None,
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in AUTH_REJECTED_STATUSES:
            body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
            raise AuthenticationError(status, body[:_MAX_ERROR_BODY_CHARS]) from None
        raise
