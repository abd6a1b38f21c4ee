"""The gateway's state: its settings, its route table and the connections it holds.

A connection is CONNECTING while its authorizer and ``$connect`` run (the management API then
answers 410, as AWS does), OPEN once the handshake is done, CLOSED afterwards.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiohttp import web

from local.events import ConnectionFacts, new_connection_id, now_ms
from local.gateway.access_log import AccessLogSink
from local.gateway.exceptions import GoneException, TooManyRequestsException
from local.gateway.invoker import HandlerRef
from runtime import schema

LOCAL_API_ID = "local00dev"  # 10 characters [a-z0-9], like a real apiId
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account
DEFAULT_MAX_CONCURRENT_INVOCATIONS = 64
LAMBDA_DEFAULT_MEMORY_MB = 128  # Lambda's, for a function created without a memory size
RESERVED_ROUTES = (schema.ROUTE_CONNECT, schema.ROUTE_DISCONNECT, schema.ROUTE_DEFAULT)
_STAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway listens and which limits it applies (API Gateway's by default)."""

    host: str = "127.0.0.1"
    port: int = 8080
    stage: str = "dev"
    api_id: str = LOCAL_API_ID
    region: str = LOCAL_REGION
    account_id: str = LOCAL_ACCOUNT_ID
    idle_timeout_seconds: float = schema.IDLE_TIMEOUT_SECONDS
    max_duration_seconds: float = schema.MAX_CONNECTION_SECONDS
    max_message_bytes: int = schema.MAX_MESSAGE_BYTES
    max_url_characters: int = schema.MAX_URL_CHARACTERS
    max_authorizer_result_bytes: int = schema.MAX_AUTHORIZER_RESULT_BYTES
    integration_timeout_seconds: float = schema.INTEGRATION_TIMEOUT_SECONDS
    # By default as long as the integration's: a stack passes its functions' own (LocalStack).
    function_timeout_seconds: float = schema.INTEGRATION_TIMEOUT_SECONDS
    function_memory_mb: int = LAMBDA_DEFAULT_MEMORY_MB
    new_connections_per_second: int = schema.NEW_CONNECTIONS_PER_SECOND  # 0: no limit
    max_concurrent_invocations: int = DEFAULT_MAX_CONCURRENT_INVOCATIONS
    handler_processes: int = 0  # > 0: "module:function" handlers run in worker processes
    jwks: Mapping[str, Any] | None = None  # served at /.well-known/jwks.json when set
    access_log: AccessLogSink | None = None
    connection_id_factory: Callable[[], str] = new_connection_id

    def __post_init__(self) -> None:
        if not _STAGE_NAME.fullmatch(self.stage):
            raise ValueError(
                f"stage {self.stage!r} must be 1-128 letters, digits, '-' or '_' (e.g. 'dev')"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} must be 0-65535 (0 picks a free port)")
        for name in (
            "idle_timeout_seconds",
            "max_duration_seconds",
            "integration_timeout_seconds",
            "function_timeout_seconds",
            "function_memory_mb",
            "max_message_bytes",
            "max_concurrent_invocations",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        if self.handler_processes < 0:
            raise ValueError(f"handler_processes={self.handler_processes} must be >= 0")
        if self.new_connections_per_second < 0:
            raise ValueError("new_connections_per_second must be >= 0 (0 means no limit)")


@dataclass(frozen=True)
class RouteTable:
    """Route key → Lambda handler, plus the optional REQUEST authorizer of ``$connect``.

    Handlers are callables ``handler(event, context)`` or ``"package.module:function"``
    strings, loaded when the gateway starts. Route keys are the values of the body's
    ``action`` (the route selection expression ``$request.body.action``), or ``$connect``,
    ``$disconnect``, ``$default``.
    """

    routes: Mapping[str, HandlerRef]
    authorizer: HandlerRef | None = None

    def __post_init__(self) -> None:
        for key in self.routes:
            if not isinstance(key, str) or not key:
                raise ValueError(f"route key {key!r} must be a non-empty string")
            if key.startswith("$") and key not in RESERVED_ROUTES:
                raise ValueError(
                    f"route key {key!r}: the only '$' routes are {', '.join(RESERVED_ROUTES)}"
                )

    @classmethod
    def coerce(cls, value: object) -> RouteTable:
        """A RouteTable, or a plain mapping of routes (no authorizer)."""
        if isinstance(value, RouteTable):
            return value
        if isinstance(value, Mapping):
            return cls(routes=dict(value))
        raise TypeError(
            f"expected a RouteTable or a mapping of route key to handler, got "
            f"{type(value).__name__}"
        )


class ConnectionState(Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class CloseCause:
    """Why a socket closed: the ``disconnectStatusCode`` / ``disconnectReason`` pair."""

    code: int
    reason: str


@dataclass
class ClientSocket:
    """One client's WebSocket as the gateway holds it.

    The connections table's row of it is another thing: ``runtime.connections.Connection``.
    """

    facts: ConnectionFacts
    state: ConnectionState = ConnectionState.CONNECTING
    authorizer: dict[str, Any] | None = None  # requestContext.authorizer of every event
    websocket: web.WebSocketResponse | None = None
    last_active_ms: int = field(default_factory=now_ms)
    last_active_monotonic: float = field(default_factory=time.monotonic)
    connected_monotonic: float = field(default_factory=time.monotonic)
    close_cause: CloseCause | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # $disconnect has run

    @property
    def connection_id(self) -> str:
        return self.facts.connection_id

    def touch(self) -> None:
        """Activity either way, a client's message or a frame posted to it: resets the idle
        timer and moves ``lastActiveAt``. API Gateway's idle timer counts messages in both
        directions: a socket that only receives a server's message every 9.5 minutes stays open
        until the 2-hour limit (a captured ``wscat`` session,
        https://hotsock.io/docs/connections/keep-alive)."""
        self.last_active_ms = now_ms()
        self.last_active_monotonic = time.monotonic()

    def deadline(self, settings: GatewaySettings) -> float:
        """The monotonic time the idle timeout or the maximum duration closes this connection."""
        return min(
            self.last_active_monotonic + settings.idle_timeout_seconds,
            self.connected_monotonic + settings.max_duration_seconds,
        )

    async def send(self, data: bytes) -> None:
        """Deliver a frame (text when it is UTF-8, as API Gateway does); 410 if not open."""
        websocket = self.websocket
        if self.state is not ConnectionState.OPEN or websocket is None or websocket.closed:
            raise GoneException()
        try:
            await websocket.send_str(data.decode("utf-8"))
        except UnicodeDecodeError:
            await websocket.send_bytes(data)
        except (ConnectionError, RuntimeError):
            raise GoneException() from None

    async def close(self, code: int, reason: str) -> None:
        """Close from the server side, recording why for ``$disconnect``."""
        websocket = self.websocket
        if self.state is not ConnectionState.OPEN or websocket is None:
            raise GoneException()
        if self.close_cause is None:
            self.close_cause = CloseCause(code, reason)
        await websocket.close(code=code, message=reason.encode("utf-8"))


class ConnectRateLimiter:
    """A token bucket of ``rate`` new connections per second (burst ``rate``); 0 = no limit."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._tokens = float(rate)
        self._clock = clock
        self._updated = clock()

    def admit(self) -> None:
        if not self._rate:
            return
        now = self._clock()
        self._tokens = min(float(self._rate), self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1:
            raise TooManyRequestsException()
        self._tokens -= 1


class GatewayBackend:
    """Every connection the gateway holds, by id; only OPEN ones are reachable."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.connections: dict[str, ClientSocket] = {}
        self.stopping = False
        self._limiter = ConnectRateLimiter(settings.new_connections_per_second)

    def admit(self) -> None:
        self._limiter.admit()

    def new_connection_id(self) -> str:
        while True:
            connection_id = self.settings.connection_id_factory()
            if connection_id not in self.connections:
                return connection_id

    def register(self, facts: ConnectionFacts) -> ClientSocket:
        connection = ClientSocket(facts=facts)
        self.connections[facts.connection_id] = connection
        return connection

    def open(self, connection: ClientSocket, websocket: web.WebSocketResponse) -> None:
        connection.websocket = websocket
        connection.state = ConnectionState.OPEN
        connection.touch()

    def mark_closed(self, connection: ClientSocket) -> None:
        """From now on the management API answers 410 for this connection."""
        connection.state = ConnectionState.CLOSED

    def release(self, connection: ClientSocket) -> None:
        """The connection's life is over (its ``$disconnect``, if any, has run)."""
        connection.state = ConnectionState.CLOSED
        self.connections.pop(connection.connection_id, None)
        connection.finished.set()

    def get_open(self, connection_id: str) -> ClientSocket:
        """The OPEN connection with this id, else ``GoneException`` (410)."""
        connection = self.connections.get(connection_id)
        if connection is None or connection.state is not ConnectionState.OPEN:
            raise GoneException()
        return connection

    def open_connections(self) -> list[ClientSocket]:
        return [c for c in self.connections.values() if c.state is ConnectionState.OPEN]
