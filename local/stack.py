"""``LocalStack``: the whole stack in-process — embedded AWS, the gateway serving this
project's handlers, dev tokens and the demo responder — for ``python -m local``, the e2e tests,
the benchmarks and the client's tests::

    async with LocalStack(port=0) as stack:
        stack.ws_url, stack.management_endpoint, stack.token_for("alice")

    with background_stack(port=0) as stack:  # the same, on its own thread, for sync code
        ...

The handlers read their configuration from ``os.environ``; the stack sets it (AWS endpoint,
fake credentials, table, queue, management endpoint, issuer, JWKS URL) while it runs and
restores the previous values when it stops. One stack per process at a time: moto's state and
``os.environ`` are process-wide.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from local.aws import AwsResources, EmbeddedAws
from local.background import Background
from local.devpages import dev_pages
from local.gateway.access_log import AccessLogSink, LogFormat, StreamAccessLog
from local.gateway.models import GatewaySettings, RouteTable
from local.gateway.server import Gateway
from local.gateway.urls import JWKS_PATH
from local.project import (
    FUNCTION_MEMORY_MB,
    FUNCTION_TIMEOUT_SECONDS,
    PROJECT_ROUTES,
    handler_environment,
)
from local.responder import ChatQueueConsumer, Responder, demo_responder
from local.tokens import DEFAULT_STATE_DIR, DevTokens
from runtime import aws as runtime_aws
from runtime import schema
from runtime.config import StoreConfig, is_loopback
from runtime.connections import ConnectionStore
from runtime.sender import MessageSender

# Handlers in 2 worker processes (local.gateway.workers), each running many invocations at once
# on its own threads: their botocore work (1-1.5 ms of CPU a post or UpdateItem) leaves the
# gateway's interpreter for another core. Measured on 2 vCPUs, side by side with threads
# (docs/performance.md): 10-30% more CPU per echo in all, but the gateway's own share falls from
# ~1.9 ms to ~0.5, so both cores serve and the peer echo ran 1.4-2.2x the messages per second
# of threads in most pairs (a ping's gateway share: ~2 ms to ~0.4). Until the workers have
# loaded, the gateway's threads answer, so starting costs no wait. 0: the gateway's threads.
DEFAULT_HANDLER_PROCESSES = 2


@dataclass(frozen=True)
class LocalStackSettings:
    """``python -m local``'s options; every default is API Gateway's or docs/local-mode.md's."""

    host: str = "127.0.0.1"
    port: int = 8080  # 0 picks a free port
    stage: str = "dev"
    idle_timeout_seconds: float = schema.IDLE_TIMEOUT_SECONDS
    max_duration_seconds: float = schema.MAX_CONNECTION_SECONDS
    integration_timeout_seconds: float = schema.INTEGRATION_TIMEOUT_SECONDS
    function_timeout_seconds: float = FUNCTION_TIMEOUT_SECONDS  # Pulumi.yaml's defaults
    function_memory_mb: int = FUNCTION_MEMORY_MB
    new_connections_per_second: int = schema.NEW_CONNECTIONS_PER_SECOND
    handler_processes: int = DEFAULT_HANDLER_PROCESSES  # 0: handlers on threads in this process
    routes: RouteTable | Mapping[str, Any] | None = None  # None: this project's handlers
    responder: Responder | None = demo_responder  # None: nothing consumes the chat queue
    state_dir: Path | str = DEFAULT_STATE_DIR
    log_format: LogFormat = "text"
    access_log: AccessLogSink | None = None  # None: one line per event on stdout
    aws_port: int = 0


class EnvironmentPatch:
    """Sets (or, for ``None``, removes) variables of ``os.environ`` until ``restore()``."""

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self._saved = {name: os.environ.get(name) for name in values}
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalStack:
    """Starts and stops everything local mode runs; see the module docstring."""

    def __init__(self, settings: LocalStackSettings | None = None, **overrides: Any) -> None:
        self.settings = replace(settings or LocalStackSettings(), **overrides)
        self.startup_seconds = 0.0
        self._embedded_aws: EmbeddedAws | None = None
        self._aws: AwsResources | None = None
        self._tokens: DevTokens | None = None
        self._gateway: Gateway | None = None
        self._environment: EnvironmentPatch | None = None
        self._sender: MessageSender | None = None
        self._consumer: ChatQueueConsumer | None = None
        self._loopback_port: int | None = None

    # --- what callers use -------------------------------------------------------------------

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise RuntimeError("the stack is not started")
        return self._gateway

    async def restart_gateway(self) -> Gateway:
        """Stop the gateway (every socket closes with 1001 and runs ``$disconnect``) and start a
        new one on the same port with the same routes; AWS and the responder are untouched, like
        a redeploy of the API in front of the same state."""
        old = self.gateway
        await old.stop()
        self._gateway = Gateway(old.route_table, old.settings, pages=old.pages)
        loopback = None
        if self._loopback_port is not None:
            loopback = socket.create_server((LOOPBACK_HOST, self._loopback_port))
        await self._gateway.start(loopback=loopback)
        return self._gateway

    @property
    def aws(self) -> AwsResources:
        if self._aws is None:
            raise RuntimeError("the stack is not started")
        return self._aws

    @property
    def tokens(self) -> DevTokens:
        if self._tokens is None:
            raise RuntimeError("the stack is not started")
        return self._tokens

    @property
    def ws_url(self) -> str:
        return self.gateway.ws_url

    @property
    def management_endpoint(self) -> str:
        return self.gateway.management_endpoint

    @property
    def jwks_url(self) -> str:
        return self.gateway.jwks_url

    @property
    def page_url(self) -> str:
        """The chat page (``local/devpages.py``)."""
        return f"{self.gateway.http_url}/"

    def token_for(self, user_id: str, **claims: Any) -> str:
        """A dev token for ``user_id``; ``claims`` add or override claims (e.g. ``exp``)."""
        return self.tokens.issue(user_id, claims=claims or None)

    def connect_url(self, user_id: str) -> str:
        """The WebSocket URL with a fresh token for ``user_id`` in its query string."""
        return f"{self.ws_url}?{schema.TOKEN_QUERY_PARAMETER}={self.token_for(user_id)}"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        started = time.perf_counter()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started

    async def _start(self) -> None:
        settings = self.settings
        self._tokens = DevTokens.load_or_create(settings.state_dir)
        self._embedded_aws = EmbeddedAws(port=settings.aws_port)
        self._aws = await asyncio.to_thread(self._embedded_aws.start)
        # Bound first: the handlers' environment names the gateway's port before they load.
        sock = socket.create_server((settings.host, settings.port))
        # The handlers fetch the dev JWKS over loopback, the only place the authorizer takes
        # http:// (runtime.config): a gateway on another interface listens there too.
        loopback = None
        if not (is_loopback(settings.host) or _is_every_interface(settings.host)):
            loopback = socket.create_server((LOOPBACK_HOST, 0))
            self._loopback_port = int(loopback.getsockname()[1])
        self._gateway = Gateway(
            PROJECT_ROUTES if settings.routes is None else settings.routes,
            GatewaySettings(
                host=settings.host,
                port=int(sock.getsockname()[1]),
                stage=settings.stage,
                idle_timeout_seconds=settings.idle_timeout_seconds,
                max_duration_seconds=settings.max_duration_seconds,
                integration_timeout_seconds=settings.integration_timeout_seconds,
                function_timeout_seconds=settings.function_timeout_seconds,
                function_memory_mb=settings.function_memory_mb,
                new_connections_per_second=settings.new_connections_per_second,
                handler_processes=settings.handler_processes,
                jwks=self._tokens.jwks(),
                access_log=settings.access_log or StreamAccessLog(settings.log_format),
            ),
            pages=dev_pages(self._tokens.issue, settings.host, settings.stage),
        )
        self._environment = EnvironmentPatch(
            {
                **self._aws.environment(),
                **handler_environment(
                    self._aws,
                    management_endpoint=self._gateway.management_endpoint,
                    jwks_url=_handlers_jwks_url(settings.host, loopback or sock),
                    idle_timeout_seconds=settings.idle_timeout_seconds,
                ),
            }
        )
        runtime_aws.reset_clients()
        try:
            await self._gateway.start(sock, loopback)
        except BaseException:
            sock.close()
            if loopback is not None:
                loopback.close()
            raise
        if settings.responder is not None:
            self._start_responder(settings.responder)

    def _start_responder(self, responder: Responder) -> None:
        aws = self.aws
        endpoint = self.gateway.management_endpoint
        store = ConnectionStore(
            StoreConfig(
                table_name=aws.table_name,
                idle_timeout_seconds=max(1, math.ceil(self.settings.idle_timeout_seconds)),
            ),
            client=aws.dynamodb(),
        )
        # Redirect on, as docs/protocol.md tells the RAG stack: answers survive a reconnect.
        # The default (lean) posting path, as in production, signed with the fake credentials
        # of the handlers' environment (set above).
        self._sender = MessageSender(store, endpoint, redirect_gone_to_user=True)
        self._consumer = ChatQueueConsumer(aws.sqs(), aws.queue_url, responder, self._sender)
        self._consumer.start()

    async def stop(self) -> None:
        """Responder first (it talks to the gateway), then the gateway (its ``$disconnect``s
        need AWS), then AWS; the environment is restored last."""
        if self._consumer is not None:
            await asyncio.to_thread(self._consumer.stop)
            self._consumer = None
        if self._sender is not None:
            await asyncio.to_thread(self._sender.close)
            self._sender = None
        if self._gateway is not None:
            await self._gateway.stop()
        if self._embedded_aws is not None:
            await asyncio.to_thread(self._embedded_aws.stop)
            self._embedded_aws = None
        if self._environment is not None:
            self._environment.restore()
            self._environment = None
            runtime_aws.reset_clients()

    async def __aenter__(self) -> LocalStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


LOOPBACK_HOST = "127.0.0.1"


def _is_every_interface(host: str) -> bool:
    """0.0.0.0: the gateway is reachable on 127.0.0.1 as well."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _handlers_jwks_url(host: str, listener: socket.socket) -> str:
    """The dev JWKS on loopback, through ``listener``: the gateway's own, or its second one on
    127.0.0.1 when it is bound to another interface."""
    loopback_host = host if is_loopback(host) else LOOPBACK_HOST
    return f"http://{loopback_host}:{listener.getsockname()[1]}{JWKS_PATH}"


def background_stack(
    settings: LocalStackSettings | None = None, **overrides: Any
) -> Background[LocalStack]:
    """A ``LocalStack`` on its own event-loop thread: ``with background_stack(port=0) as s:``."""
    return Background(LocalStack(settings, **overrides))
