"""One WebSocket connection's life, as API Gateway runs it.

``$connect``: connection throttle → REQUEST authorizer (401 without the identity source, without
invoking it) → ``$connect`` function (a non-2xx answer fails the handshake) → 101. Then each
text message is routed by ``$request.body.action`` (``$default`` as fallback) and invoked
concurrently, its route response sent back; a binary frame closes 1003, an oversized message
1009, the idle timeout and maximum duration 1001. However the socket closes, ``$disconnect``
runs with ``disconnectStatusCode`` and ``disconnectReason``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from local import events
from local.gateway.access_log import AccessRecord
from local.gateway.exceptions import (
    AuthorizerConfigurationException,
    ConnectRejected,
    FunctionError,
    GatewayError,
    IntegrationTimeout,
    UnauthorizedException,
)
from local.gateway.invoker import UNAUTHORIZED, Function, Invoker
from local.gateway.models import ClientSocket, CloseCause, GatewayBackend
from local.gateway.policy import evaluate
from runtime import schema

GOING_AWAY = CloseCause(schema.CLOSE_GOING_AWAY, "Going away")
UNSUPPORTED_DATA = CloseCause(schema.CLOSE_UNSUPPORTED_DATA, "Binary frames are not supported")
MESSAGE_TOO_BIG = CloseCause(schema.CLOSE_MESSAGE_TOO_BIG, "Message too big")
ABNORMAL = CloseCause(1006, "Connection was closed abnormally")
NO_STATUS = CloseCause(1005, "Client-side close frame status not set")
CLOSE_HANDSHAKE_SECONDS = 5.0
_log = logging.getLogger("local.gateway")


def _client_error_frame(message: str, connection_id: str, request_id: str) -> str:
    """The frame API Gateway itself sends a client when a route cannot answer, byte for byte:
    ``{"message": "Forbidden", "connectionId":"BFaT_fALIAMCKug=", "requestId":"BFaVtH2HoAMFZEQ="}``
    (a space after the first colon and comma only, as API Gateway writes it)."""
    return (
        f'{{"message": {json.dumps(message)}, "connectionId":{json.dumps(connection_id)}, '
        f'"requestId":{json.dumps(request_id)}}}'
    )


def select_route(body: str, routes: Mapping[str, Function]) -> str | None:
    """``$request.body.action`` → route key; ``$default`` (or None) when nothing matches."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    action = data.get("action") if isinstance(data, dict) else None
    if isinstance(action, str) and action in routes and not action.startswith("$"):
        return action
    return schema.ROUTE_DEFAULT if schema.ROUTE_DEFAULT in routes else None


def _status_of(result: Any) -> int:
    """A Lambda proxy answer's statusCode; an answer without one counts as 200."""
    if isinstance(result, dict) and isinstance(result.get("statusCode"), int):
        return int(result["statusCode"])
    return 200


class ConnectionRunner:
    """Runs each connection of a gateway: handshake, message loop and ``$disconnect``."""

    def __init__(
        self,
        backend: GatewayBackend,
        invoker: Invoker,
        routes: Mapping[str, Function],
        authorizer: Function | None,
    ) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.invoker = invoker
        self.routes = routes
        self.authorizer = authorizer
        self._tasks: set[asyncio.Task[None]] = set()

    # --- access log -----------------------------------------------------------------------

    def _log_access(
        self,
        connection_id: str,
        event_type: str,
        route_key: str,
        status: int,
        started_ms: int,
    ) -> None:
        sink = self.settings.access_log
        if sink is not None:
            sink(
                AccessRecord(
                    time=events.clf_time(started_ms),
                    connectionId=connection_id,
                    eventType=event_type,
                    routeKey=route_key,
                    status=status,
                    latency=max(0, events.now_ms() - started_ms),
                )
            )

    # --- $connect -------------------------------------------------------------------------

    def _facts(self, request: web.Request, connection_id: str) -> events.ConnectionFacts:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        source_ip = str(peer[0]) if peer else "127.0.0.1"
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers
        ]
        names = {name.lower() for name, _ in headers}
        added = {
            "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}",
            "X-Forwarded-For": source_ip,
            "X-Forwarded-Port": str(sockname[1]) if sockname else "",
            "X-Forwarded-Proto": request.scheme,
        }
        headers.extend((k, v) for k, v in added.items() if k.lower() not in names)
        return events.ConnectionFacts(
            connection_id=connection_id,
            connected_at_ms=events.now_ms(),
            api_id=self.settings.api_id,
            stage=self.settings.stage,
            domain_name=request.host,
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent"),
            headers=tuple(headers),
            query=tuple(request.query.items()),
        )

    async def _authorize(self, connection: ClientSocket, started_ms: int) -> None:
        """Run the authorizer; sets ``connection.authorizer`` or raises the 401/403/500."""
        if self.authorizer is None:
            return
        facts = connection.facts
        token = dict(facts.query).get(schema.TOKEN_QUERY_PARAMETER, "")
        if not token:
            # The identity source is missing: API Gateway answers 401 without invoking.
            raise UnauthorizedException()
        arn = events.method_arn(
            self.settings.region,
            self.settings.account_id,
            self.settings.api_id,
            self.settings.stage,
            schema.ROUTE_CONNECT,
        )
        event = events.authorizer_event(facts, arn, events.new_request_id(), started_ms)
        invoked_ms = events.now_ms()
        try:
            answer = await self.invoker.invoke(self.authorizer, event)
        except FunctionError as exc:
            # The error's message decides, whatever its type: AWS's own authorizer example
            # answers 401 with Node's ``callback("Unauthorized")``, Python's is an ``Exception``.
            if exc.error_message == UNAUTHORIZED:
                raise UnauthorizedException() from None
            raise AuthorizerConfigurationException() from None
        except IntegrationTimeout:
            raise AuthorizerConfigurationException() from None
        size = len(json.dumps(answer, separators=(",", ":")).encode("utf-8"))
        if size > self.settings.max_authorizer_result_bytes:
            _log.error("authorizer answered %d bytes: over API Gateway's 8 KB limit", size)
            raise AuthorizerConfigurationException()
        authorization = evaluate(answer, arn)
        connection.authorizer = {
            **authorization.context,
            "principalId": authorization.principal_id,
            "integrationLatency": events.now_ms() - invoked_ms,
        }

    async def _connect(self, connection: ClientSocket, started_ms: int) -> tuple[str, ...]:
        """Run ``$connect``; the subprotocols it selected, or the handshake's error."""
        function = self.routes.get(schema.ROUTE_CONNECT)
        if function is None:
            return ()
        event = events.connect_event(
            connection.facts, connection.authorizer, events.new_request_id(), started_ms
        )
        result = await self.invoker.invoke(function, event)
        status = _status_of(result)
        if not 200 <= status < 300:
            body = result.get("body") if isinstance(result, dict) else None
            raise ConnectRejected(status, body if isinstance(body, str) else "")
        headers = result.get("headers") if isinstance(result, dict) else None
        protocol = None
        if isinstance(headers, dict):
            protocol = next(
                (v for k, v in headers.items() if k.lower() == "sec-websocket-protocol"), None
            )
        return (protocol,) if isinstance(protocol, str) and protocol else ()

    async def run(self, request: web.Request) -> web.StreamResponse:
        started_ms = events.now_ms()
        connection_id = self.backend.new_connection_id()
        try:
            self.backend.admit()
        except GatewayError as exc:
            self._log_access(
                connection_id, events.EVENT_CONNECT, "$connect", exc.status, started_ms
            )
            raise
        connection = self.backend.register(self._facts(request, connection_id))
        try:
            return await self._run(request, connection, started_ms)
        finally:
            self.backend.release(connection)

    async def _run(
        self, request: web.Request, connection: ClientSocket, started_ms: int
    ) -> web.StreamResponse:
        connection_id = connection.connection_id
        try:
            await self._authorize(connection, started_ms)
            protocols = await self._connect(connection, started_ms)
        except GatewayError as exc:
            self._log_access(
                connection_id, events.EVENT_CONNECT, "$connect", exc.status, started_ms
            )
            raise
        websocket = web.WebSocketResponse(
            protocols=protocols,
            compress=False,
            autoping=True,
            timeout=CLOSE_HANDSHAKE_SECONDS,
            # aiohttp refuses a message of max_msg_size bytes; API Gateway accepts 128 KB.
            max_msg_size=self.settings.max_message_bytes + 1,
        )
        self._log_access(connection_id, events.EVENT_CONNECT, "$connect", 200, started_ms)
        try:
            await websocket.prepare(request)
            self.backend.open(connection, websocket)
            if self.backend.stopping:
                await self._close(connection, GOING_AWAY)
            await self._receive(connection, websocket)
        finally:
            self.backend.mark_closed(connection)
            await self._disconnect(connection)
        return websocket

    # --- messages ------------------------------------------------------------------------

    async def _receive(self, connection: ClientSocket, websocket: web.WebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = connection.deadline(self.settings) - time.monotonic()
            if remaining <= 0:
                await self._close(connection, GOING_AWAY)
                return
            try:
                message = await websocket.receive(timeout=remaining)
            except TimeoutError:
                continue
            if message.type is WSMsgType.TEXT:
                connection.touch()
                task = loop.create_task(self._route(connection, message.data, events.now_ms()))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                continue
            if message.type is WSMsgType.BINARY:
                await self._close(connection, UNSUPPORTED_DATA)
                return
            if message.type is WSMsgType.CLOSE:
                code = int(message.data) if message.data else NO_STATUS.code
                reason = message.extra or (NO_STATUS.reason if code == NO_STATUS.code else "")
                connection.close_cause = connection.close_cause or CloseCause(code, reason)
                return
            # aiohttp has already answered an oversized message with a 1009 close frame.
            if getattr(message.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                connection.close_cause = connection.close_cause or MESSAGE_TOO_BIG
            connection.close_cause = connection.close_cause or ABNORMAL
            return

    async def _close(self, connection: ClientSocket, cause: CloseCause) -> None:
        connection.close_cause = connection.close_cause or cause
        with contextlib.suppress(Exception):
            await connection.close(cause.code, cause.reason)

    async def _route(self, connection: ClientSocket, body: str, started_ms: int) -> None:
        facts = connection.facts
        request_id = events.new_request_id()
        route_key = select_route(body, self.routes)
        if route_key is None:
            # No route and no $default: API Gateway answers the client itself.
            self._log_access(facts.connection_id, events.EVENT_MESSAGE, "-", 403, started_ms)
            await self._reply(
                connection, _client_error_frame("Forbidden", facts.connection_id, request_id)
            )
            return
        event = events.message_event(
            facts, route_key, body, connection.authorizer, request_id, started_ms
        )
        try:
            result = await self.invoker.invoke(self.routes[route_key], event)
        except GatewayError as exc:
            self._log_access(
                facts.connection_id, events.EVENT_MESSAGE, route_key, exc.status, started_ms
            )
            await self._reply(
                connection, _client_error_frame(exc.message, facts.connection_id, request_id)
            )
            return
        # Logged before the answer is sent: whoever reads the answer finds the record.
        self._log_access(
            facts.connection_id, events.EVENT_MESSAGE, route_key, _status_of(result), started_ms
        )
        body_out = result.get("body") if isinstance(result, dict) else None
        if isinstance(body_out, str) and body_out:
            await self._reply(connection, body_out)

    async def _reply(self, connection: ClientSocket, text: str) -> None:
        """A route response; dropped when the socket has closed meanwhile, as in AWS."""
        with contextlib.suppress(GatewayError):
            await connection.send(text.encode("utf-8"))

    # --- $disconnect ---------------------------------------------------------------------

    async def _disconnect(self, connection: ClientSocket) -> None:
        started_ms = events.now_ms()
        cause = connection.close_cause or ABNORMAL
        function = self.routes.get(schema.ROUTE_DISCONNECT)
        status = 200
        if function is not None:
            event = events.disconnect_event(
                connection.facts,
                connection.authorizer,
                cause.code,
                cause.reason,
                events.new_request_id(),
                started_ms,
            )
            try:
                status = _status_of(await self.invoker.invoke(function, event))
            except GatewayError as exc:
                status = exc.status
            except RuntimeError:
                # The invoker was shut down under a stopping gateway: nothing left to run it.
                _log.warning("$disconnect of %s not run: gateway stopped", connection.connection_id)
                status = 500
        self._log_access(
            connection.connection_id, events.EVENT_DISCONNECT, "$disconnect", status, started_ms
        )

    async def drain(self) -> None:
        """Wait for message invocations still running (gateway shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
