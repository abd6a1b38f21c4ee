"""``Gateway``: the emulator's lifecycle — load the functions, listen, and stop cleanly.

Stopping closes every socket with 1001 "Going away" and runs each ``$disconnect`` before the
port is released, so the state a handler keeps (the connections table) ends up clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from local.gateway.invoker import Function, HandlerRef, Invoker, function_for
from local.gateway.models import GatewayBackend, GatewaySettings, RouteTable
from local.gateway.responses import GatewayResponses
from local.gateway.session import GOING_AWAY, ConnectionRunner
from local.gateway.urls import (
    JWKS_PATH,
    MAX_REQUEST_LINE_BYTES,
    build_app,
    quiet_unparsable_requests,
)
from local.gateway.workers import WorkerProcesses

STOP_GRACE_SECONDS = 10.0


class Gateway:
    """An API Gateway WebSocket API serving ``routes`` at ``ws://{host}:{port}/{stage}``.

    ``await start()`` (or ``async with``) loads the route table's functions, then listens on
    ``settings.host:settings.port`` (0 picks a free port) or on an already bound ``sock``.
    """

    def __init__(
        self,
        routes: RouteTable | Mapping[str, Any],
        settings: GatewaySettings | None = None,
        *,
        pages: Sequence[web.RouteDef] = (),
    ) -> None:
        self.route_table = RouteTable.coerce(routes)
        self.pages = tuple(pages)  # more HTTP routes on the same port (local mode's pages)
        self.settings = settings or GatewaySettings()
        self.backend = GatewayBackend(self.settings)
        self._invoker: Invoker | None = None
        self._runner: ConnectionRunner | None = None
        self._app_runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The listening port; known before ``start()`` when the settings name one."""
        port = self._port or self.settings.port
        if not port:
            raise RuntimeError("the gateway picks its port when it starts: start it first")
        return port

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}/{self.settings.stage}"

    @property
    def management_endpoint(self) -> str:
        """What boto3's ``apigatewaymanagementapi`` client takes as ``endpoint_url``."""
        return f"{self.http_url}/{self.settings.stage}"

    @property
    def jwks_url(self) -> str:
        return f"{self.http_url}{JWKS_PATH}"

    def _functions(self) -> tuple[dict[str, Function], Function | None]:
        """Load every function once: routes naming the same handler share one "container"."""
        loaded: dict[str, Function] = {}

        def load(ref: HandlerRef) -> Function:
            if not isinstance(ref, str):
                return function_for(ref)
            if ref not in loaded:
                loaded[ref] = function_for(ref)
            return loaded[ref]

        routes = {key: load(ref) for key, ref in self.route_table.routes.items()}
        authorizer = self.route_table.authorizer
        return routes, None if authorizer is None else load(authorizer)

    async def start(
        self, sock: socket.socket | None = None, loopback: socket.socket | None = None
    ) -> None:
        """Serve on ``sock`` (else the settings' host and port), and on ``loopback`` too: a
        listener on 127.0.0.1 for a gateway bound elsewhere, where local mode's handlers
        fetch the dev JWKS (the authorizer takes http:// on loopback only)."""
        routes, authorizer = self._functions()
        settings = self.settings
        self._invoker = Invoker(
            max_workers=settings.max_concurrent_invocations,
            timeout_seconds=settings.integration_timeout_seconds,
            function_timeout_seconds=settings.function_timeout_seconds,
            function_memory_mb=settings.function_memory_mb,
            region=settings.region,
            account_id=settings.account_id,
            processes=(
                WorkerProcesses(settings.handler_processes, settings.max_concurrent_invocations)
                if settings.handler_processes > 0
                else None
            ),
        )
        self._invoker.warm(tuple({f.ref for f in (*routes.values(), authorizer) if f and f.ref}))
        self._runner = ConnectionRunner(self.backend, self._invoker, routes, authorizer)
        app = build_app(GatewayResponses(self.backend, self._runner), self.pages)
        quiet_unparsable_requests()
        self._app_runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            max_line_size=MAX_REQUEST_LINE_BYTES,
            max_field_size=MAX_REQUEST_LINE_BYTES,
        )
        await self._app_runner.setup()
        site: web.BaseSite
        if sock is None:
            site = web.TCPSite(self._app_runner, settings.host, settings.port, reuse_address=True)
        else:
            site = web.SockSite(self._app_runner, sock)
        await site.start()
        self._port = int(self._app_runner.addresses[0][1])
        if loopback is not None:
            await web.SockSite(self._app_runner, loopback).start()

    async def stop(self) -> None:
        """Close every connection (1001), run their ``$disconnect``, release the port."""
        self.backend.stopping = True
        closes = [
            connection.close(GOING_AWAY.code, GOING_AWAY.reason)
            for connection in self.backend.open_connections()
        ]
        await asyncio.gather(*closes, return_exceptions=True)
        waiting = [c.finished.wait() for c in list(self.backend.connections.values())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waiting), STOP_GRACE_SECONDS)
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner.drain(), STOP_GRACE_SECONDS)
        if self._app_runner is not None:
            await self._app_runner.cleanup()
            self._app_runner = None
        if self._invoker is not None:
            self._invoker.shutdown()
            self._invoker = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
