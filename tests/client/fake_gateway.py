"""A small WebSocket server that speaks the chat protocol, with faults on demand.

It stands in for API Gateway in the client's unit tests: the token in the query string, ``ping``
→ ``system/pong``, ``chat_message`` → queued once per clientMessageId (the FIFO dedup id) and
answered with ``system/accepted``. Tests make it drop sockets (close codes or a bare TCP reset),
refuse tokens, go down and come back on the same port, swallow messages or answer with errors,
or stall: stop reading, like the far end of a silently dead network path.
The local gateway (``local/``) is the real target of the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from client import ChatClient, ClientConfig
from client.events import ConnectionEvent, ConnectionEventKind
from client.subscriptions import Subscription
from runtime.messages import (
    ErrorCode,
    ErrorFrame,
    SystemEvent,
    chat_response,
    error_frame,
    system_frame,
    typing_indicator,
)

T = TypeVar("T")


class FakeGateway:
    """Start with ``async with FakeGateway() as gateway``; connect to ``gateway.url``."""

    def __init__(self, *, accept_token: Callable[[str], bool] | None = None) -> None:
        self.accept_token = accept_token or (lambda token: token.startswith("good"))
        self.port = 0
        self._server: Server | None = None
        self.connections: list[ServerConnection] = []  # open, oldest first
        self.handshakes: list[float] = []  # monotonic time of every handshake attempt
        self.tokens_seen: list[str] = []
        self.instance_ids_seen: list[str | None] = []  # ?instanceId= of every handshake
        self.rejected = 0
        self.reject_status: int | None = None  # refuse every handshake with this status
        self.answer_pings = True
        self.drop_on_open = False  # reset every new connection right after the handshake
        self.pings = 0
        self.received: list[dict[str, Any]] = []  # every chat_message, re-sends included
        self.message_received = asyncio.Event()  # set at every chat_message
        self.queue: list[dict[str, Any]] = []  # what would reach SQS: one per clientMessageId
        self._dedup_ids: set[str] = set()
        self.swallow = 0  # the next N chat messages get no answer at all (not queued either)
        self.queue_then_abort = 0  # the next N are queued, then the socket dies unanswered
        # Answers to the next chat messages, first: frames, or wire dicts (for codes from the
        # future); the gateway fills in the clientMessageId.
        self.errors: deque[ErrorFrame | dict[str, Any]] = deque()
        self.auto_answer = False  # after accepting, stream "echo: <content>" like a responder
        self.opened = 0  # connections served so far
        self.connected = asyncio.Event()  # set at every new connection

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/dev"

    async def __aenter__(self) -> FakeGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            self.port,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Go away like a crashed server: every socket reset, no close frame (1006)."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        self.abort_all()
        await self._server.wait_closed()
        self._server = None

    async def restart(self, downtime: float = 0.0) -> None:
        """Crash and come back on the same port after ``downtime`` seconds."""
        await self.stop()
        await asyncio.sleep(downtime)
        await self.start()

    def abort_all(self) -> None:
        for connection in list(self.connections):
            connection.transport.abort()

    def stall(self) -> None:
        """Stop reading the open connections: the client's sends fill the socket buffers and
        block, and nothing it sends is answered (new connections are served normally)."""
        for connection in self.connections:
            connection.transport.pause_reading()

    def resume(self) -> None:
        for connection in self.connections:
            connection.transport.resume_reading()

    async def close_all(self, code: int, reason: str = "") -> None:
        for connection in list(self.connections):
            await connection.close(code, reason)

    async def send_to_all(self, *frames: str) -> None:
        for connection in list(self.connections):
            for frame in frames:
                await connection.send(frame)

    async def wait_connections(self, count: int) -> None:
        """Until ``count`` connections have been opened in total (and are being served)."""
        while self.opened < count:
            self.connected.clear()
            await self.connected.wait()

    async def wait_received(self, count: int) -> None:
        """Until ``count`` chat messages have been received in total (re-sends included)."""
        while len(self.received) < count:
            self.message_received.clear()
            await self.message_received.wait()

    def queued_ids(self) -> list[str]:
        return [message["clientMessageId"] for message in self.queue]

    # --- Server side ----------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path)
        if path.path == "/_local/token":  # local mode's dev tokens, for the CLI's --local
            user = parse_qs(path.query).get("user", [""])[0]
            body = json.dumps({"token": f"good-{user}"}).encode()
            return Response(200, "OK", Headers({"Content-Type": "application/json"}), body)
        self.handshakes.append(time.monotonic())
        query = parse_qs(path.query)
        token = query.get("token", [""])[0]
        self.tokens_seen.append(token)
        self.instance_ids_seen.append(query.get("instanceId", [None])[0])
        status = self.reject_status
        if status is None and not self.accept_token(token):
            status = 401
        if status is None:
            return None
        self.rejected += 1
        body = json.dumps({"message": "Unauthorized" if status == 401 else "Forbidden"})
        return Response(
            status,
            "Unauthorized" if status == 401 else "Forbidden",
            Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))]),
            body.encode(),
        )

    async def _handle(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        self.opened += 1
        self.connected.set()
        if self.drop_on_open:
            connection.transport.abort()
        try:
            async for raw in connection:
                await self._on_message(connection, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            self.connections.remove(connection)

    async def _on_message(self, connection: ServerConnection, body: dict[str, Any]) -> None:
        if body.get("action") == "ping":
            self.pings += 1
            if self.answer_pings:
                await connection.send(system_frame(SystemEvent.PONG).to_json())
            return
        self.received.append(body)
        self.message_received.set()
        client_message_id = body["clientMessageId"]
        if self.errors:
            frame = self.errors.popleft()
            wire = frame if isinstance(frame, dict) else json.loads(frame.to_json())
            await connection.send(json.dumps({**wire, "clientMessageId": client_message_id}))
            return
        if self.swallow:
            self.swallow -= 1
            return
        if client_message_id not in self._dedup_ids:
            self._dedup_ids.add(client_message_id)
            self.queue.append(body)
        if self.queue_then_abort:
            self.queue_then_abort -= 1
            connection.transport.abort()
            return
        accepted = system_frame(
            SystemEvent.ACCEPTED,
            data={
                "clientMessageId": client_message_id,
                "conversationId": body["conversationId"],
                "messageId": f"m-{len(self.received)}",
            },
        )
        await connection.send(accepted.to_json())
        if self.auto_answer:
            await self._echo(connection, body)

    async def _echo(self, connection: ServerConnection, body: dict[str, Any]) -> None:
        for frame in answer(body, "echo: " + body["content"]):
            await connection.send(frame)


def answer(question: dict[str, Any], content: str) -> list[str]:
    """What a responder streams for ``question`` (a received chat_message): typing on, the
    content in two chunks, done, typing off; every frame ``inReplyTo`` the question."""
    conversation_id = question["conversationId"]
    question_id = question["clientMessageId"]
    message_id = f"answer-{question_id}"
    middle = len(content) // 2
    return [
        typing_indicator(conversation_id, True, in_reply_to=question_id).to_json(),
        chunk(conversation_id, message_id, 0, content[:middle], in_reply_to=question_id),
        chunk(conversation_id, message_id, 1, content[middle:], in_reply_to=question_id),
        done(conversation_id, message_id, 2, in_reply_to=question_id),
        typing_indicator(conversation_id, False, in_reply_to=question_id).to_json(),
    ]


def chunk(
    conversation_id: str,
    message_id: str,
    sequence: int,
    content: str,
    *,
    in_reply_to: str | None = None,
) -> str:
    return chat_response(
        conversation_id, content, message_id=message_id, sequence=sequence, in_reply_to=in_reply_to
    ).to_json()


def done(
    conversation_id: str, message_id: str, sequence: int, *, in_reply_to: str | None = None
) -> str:
    return chat_response(
        conversation_id,
        "",
        message_id=message_id,
        sequence=sequence,
        done=True,
        in_reply_to=in_reply_to,
    ).to_json()


async def at_once(call: Coroutine[Any, Any, T]) -> T:
    """Await ``call``, failing if it waited for anything (it must complete on its first step)."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0)
    assert task.done(), "the call waited instead of returning at once"
    return task.result()


# Loopback's socket buffers hold about 4 MB: this many 100 KB chat messages fill them.
STALLING_MESSAGES = 60


def big_message(n: int) -> str:
    return f"{n}:" + "x" * 100_000


def retryable_error(code: ErrorCode, retry_after_ms: int | None) -> ErrorFrame:
    return error_frame(code, "try again", retryable=True, retry_after_ms=retry_after_ms)


TEST_DEADLINE_SECONDS = 30.0


def run(scenario: Coroutine[Any, Any, T], deadline: float = TEST_DEADLINE_SECONDS) -> T:
    """Run one async test scenario in a fresh loop, bounded so a hang fails instead of stalling."""

    async def bounded() -> T:
        async with asyncio.timeout(deadline):
            return await scenario

    return asyncio.run(bounded())


async def next_event(
    events: Subscription[ConnectionEvent], kind: ConnectionEventKind
) -> ConnectionEvent:
    """The next event of ``kind`` (earlier events of other kinds are skipped)."""
    async for event in events:
        if event.kind is kind:
            return event
    raise AssertionError(f"the event stream ended before a {kind.value} event")


CONFIG = ClientConfig(proxy=None)  # loopback: never a proxy from the environment


def new_client(config: ClientConfig = CONFIG, **options: Any) -> ChatClient:
    """A client whose backoff jitter is the same on every run (a seeded random generator)."""
    return ChatClient(config, rng=random.Random(7), **options)
