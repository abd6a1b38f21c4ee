"""The gateway's HTTP surface: the WebSocket upgrade, the management API and the JWKS.

The management API answers what boto3's ``apigatewaymanagementapi`` client expects:
``POST``/``GET``/``DELETE /{stage}/@connections/{connectionId}``, the path URL-decoded as AWS
decodes it (its docs write ``%40connections``, clients encode the id's ``=`` as ``%3D``),
errors as ``x-amzn-ErrorType`` + ``{"message"}`` so boto3 raises the typed exception
(``GoneException``, ``PayloadTooLargeException``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import unquote

from aiohttp import hdrs, web

from local.gateway.exceptions import (
    BadRequestException,
    ConnectRejected,
    ForbiddenException,
    GatewayError,
    NotFoundException,
    PayloadTooLargeException,
    UriTooLongException,
)
from local.gateway.models import CloseCause, GatewayBackend
from local.gateway.session import ConnectionRunner
from runtime import schema

CONNECTIONS_SEGMENT = "@connections"
# What API Gateway's $disconnect carries after a DeleteConnection (its execution log, quoted in
# https://github.com/boto/boto3/issues/3789 and aws/chalice#2060); the client's close is 1000.
DELETE_CAUSE = CloseCause(1000, "Connection Closed Normally")
# Well under the runtime's management API read timeout: $connect DELETEs a client's previous
# connection, and AWS answers without waiting for $disconnect at all.
DELETE_WAITS_FOR_DISCONNECT_SECONDS = schema.DEFAULT_AWS_READ_TIMEOUT_SECONDS / 2
ERROR_TYPE_HEADER = "x-amzn-ErrorType"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: GatewayError) -> web.Response:
    if isinstance(error, ConnectRejected):
        return web.Response(status=error.status, text=error.body)
    return web.json_response(
        {"message": error.message},
        status=error.status,
        headers={ERROR_TYPE_HEADER: error.code},
    )


def typed_errors(handler: Handler) -> Handler:
    """``handler`` answering a ``GatewayError`` it raises as API Gateway does (typed error).

    Wrapped once per route: an aiohttp middleware would build its call chain on every request
    (the management API's posts are the hot path)."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as error:
            return error_response(error)

    return answer


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GatewayResponses:
    def __init__(self, backend: GatewayBackend, runner: ConnectionRunner) -> None:
        self.backend = backend
        self.runner = runner

    def _check_stage(self, request: web.Request) -> None:
        if request.match_info.get("stage") != self.backend.settings.stage:
            raise ForbiddenException()

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        scheme = "wss" if request.secure else "ws"  # the URL as the client wrote it
        url = f"{scheme}://{request.host}{request.raw_path}"
        if len(url) > self.backend.settings.max_url_characters:
            raise UriTooLongException()
        self._check_stage(request)
        if request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
            return web.json_response({"message": "Upgrade Required"}, status=426)
        return await self.runner.run(request)

    def _connection_id(self, request: web.Request) -> str:
        """The id from the raw path, each segment URL-decoded (``%40connections``, ``%3D``)."""
        path = request.raw_path.split("?", 1)[0]
        _, _, segment, raw_id = [*path.split("/", 3), "", ""][:4]
        connection_id = unquote(raw_id)
        if unquote(segment) != CONNECTIONS_SEGMENT or not connection_id:
            raise BadRequestException("missing connection id")
        return connection_id

    async def connections(self, request: web.Request) -> web.StreamResponse:
        self._check_stage(request)
        connection_id = self._connection_id(request)
        if request.method == hdrs.METH_POST:
            return await self._post(request, connection_id)
        if request.method == hdrs.METH_GET:
            return self._get(connection_id)
        if request.method == hdrs.METH_DELETE:
            return await self._delete(connection_id)
        raise ForbiddenException()

    async def _post(self, request: web.Request, connection_id: str) -> web.StreamResponse:
        limit = self.backend.settings.max_message_bytes
        if (request.content_length or 0) > limit:
            raise PayloadTooLargeException()
        data = await request.read()
        if len(data) > limit:
            raise PayloadTooLargeException()
        connection = self.backend.get_open(connection_id)
        await connection.send(data)
        connection.touch()
        return web.Response(status=200)

    def _get(self, connection_id: str) -> web.StreamResponse:
        connection = self.backend.get_open(connection_id)
        facts = connection.facts
        identity = {"sourceIp": facts.source_ip}
        if facts.user_agent is not None:
            identity["userAgent"] = facts.user_agent
        return web.json_response(
            {
                "connectedAt": _iso(facts.connected_at_ms),
                "identity": identity,
                "lastActiveAt": _iso(connection.last_active_ms),
            }
        )

    async def _delete(self, connection_id: str) -> web.StreamResponse:
        """Close the socket, let ``$disconnect`` run, then 204.

        The wait is bounded: AWS answers without waiting for ``$disconnect``, and a caller's
        read timeout must not depend on how slow that handler is.
        """
        connection = self.backend.get_open(connection_id)
        connection.close_cause = connection.close_cause or DELETE_CAUSE
        await connection.close(DELETE_CAUSE.code, "")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.finished.wait(), DELETE_WAITS_FOR_DISCONNECT_SECONDS)
        return web.Response(status=204)

    async def jwks(self, request: web.Request) -> web.StreamResponse:
        keys = self.backend.settings.jwks
        if keys is None:
            raise NotFoundException()
        return web.Response(
            text=json.dumps(keys),
            content_type="application/json",
            headers={hdrs.CACHE_CONTROL: "max-age=300"},
        )

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        raise ForbiddenException()
