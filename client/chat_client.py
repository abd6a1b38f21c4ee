"""ChatClient: a WebSocket chat connection that comes back by itself and loses no message.

- Reconnect: any drop (network error, close 1001 on the idle timeout or the 2-hour limit, 1006,
  a server restart) starts reconnect attempts with full-jitter backoff, each with a fresh token
  from the provider. A 401/403 on the handshake stops the client with ``AuthenticationError``.
- Keep-alive: the ``ping`` action every ``ping_interval``; a ping not sent, or answered by no
  frame at all, within ``pong_timeout`` marks the connection dead, and it is replaced.
- Sending: one client-owned task writes each connection (``ConnectionWriter``); ``send_chat``
  returns at once and a caller's cancellation never interrupts a send.
- Delivery: each chat message carries a ``clientMessageId`` and stays pending until its
  ``system/accepted`` arrives. Pending messages are re-sent, with the same id, after a reconnect,
  after a retryable ``error`` frame, and when no answer came within ``resend_after``; the server
  queues each id once (it is the FIFO queue's deduplication id). A message still not accepted
  after ``accept_timeout`` fails with ``MessageNotAcceptedError``.
- Answers: ``chat_response`` chunks are deduplicated by (conversationId, messageId, sequence)
  before anyone sees them and assembled into whole answers (``receive_answer``); ``ask``
  returns the answer whose ``inReplyTo`` is its question's ``clientMessageId``.
- Memory: subscriptions, unfinished answers and remembered outcomes are bounded.
- Closing: ``close()`` ends the client for its callers before it awaits anything.

About 450 lines on purpose: what could stand alone already does (``delivery``, ``answers``,
``backoff``, ``writer``, ``subscriptions``); what is left is the connection's life (connect,
supervise, reconnect, keep-alive, stop), whose every step reads and changes the same state, so
split across modules it would be one class in several files.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any
from uuid import uuid4

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from client.answers import Answer, AnswerAssembler, AnswerInbox
from client.backoff import Backoff
from client.config import ClientConfig
from client.delivery import Accepted, Delivery, PendingMessage
from client.errors import (
    AuthenticationError,
    ChatClientError,
    ChatMessageTooLargeError,
    ClientClosedError,
    ClientUsageError,
    ConnectError,
    InvalidArgumentError,
)
from client.events import ConnectionEvent, ConnectionEventKind
from client.frames import parse_received
from client.handshake import TokenProvider, open_connection, url_with
from client.subscriptions import Fanout, Subscription
from client.writer import ConnectionWriter
from runtime.messages import (
    ChatMessageAction,
    ChatResponse,
    ErrorCode,
    ErrorFrame,
    Frame,
    SystemEvent,
    SystemFrame,
    describe_validation_error,
)
from runtime.schema import (
    INSTANCE_ID_PATTERN,
    INSTANCE_QUERY_PARAMETER,
    MAX_MESSAGE_BYTES,
    ROUTE_CHAT_MESSAGE,
)

logger = logging.getLogger(__name__)

_MAX_LOGGED_CHARS = 200

EventCallback = Callable[[ConnectionEvent], None]


class ChatClient:
    """One user's reconnecting chat connection. Use it in one asyncio event loop.

    Typical use::

        async with ChatClient() as client:
            await client.connect("wss://.../dev", token_provider)
            async with asyncio.timeout(60):
                answer = await client.ask("conversation-1", "What is RAG?")
            print(answer.content)
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        on_event: EventCallback | None = None,
        rng: random.Random | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        if instance_id is not None and not re.fullmatch(INSTANCE_ID_PATTERN, instance_id):
            raise InvalidArgumentError(
                f"instance_id={instance_id!r} must be 1 to 64 letters, digits, '-' or '_'; "
                "leave it out for a random one"
            )
        self.instance_id = instance_id or secrets.token_urlsafe(16)
        """Sent on every (re)connect (``?instanceId=``): the server then closes the connection
        this client opened before, which may still be open at API Gateway after this client gave
        up on it, so an answer streaming there moves to the new connection. One per client
        object: two clients of one user (two tabs) keep their own; two client objects given the
        same ``instance_id`` close each other's connections."""
        self._on_event = on_event
        self._backoff = Backoff(
            self.config.reconnect_initial_delay,
            self.config.reconnect_max_delay,
            rng or random.SystemRandom(),
        )
        # One series of delays across drops: only a connection that stayed up
        # ``backoff_reset_after`` starts it again, so a server that accepts and drops at once
        # is not hit at the first, shortest delay forever.
        self._delays = self._backoff.delays()
        self._url: str | None = None
        self._token_provider: TokenProvider | None = None
        self._current: ClientConnection | None = None  # the latest connection opened
        self._writer: ConnectionWriter | None = None  # its writer
        self._closing = False
        self._failure: ChatClientError | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._shutdown: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivery = Delivery(
            accept_timeout=self.config.accept_timeout,
            resend_after=self.config.resend_after,
            send_again=self._send_again,
        )
        self._drop_reason: str | None = None
        self._frames: Fanout[Frame] = Fanout(self.config.subscription_limit)
        self._events: Fanout[ConnectionEvent] = Fanout(self.config.subscription_limit)
        self._assembler = AnswerAssembler(max_unfinished_bytes=self.config.unfinished_answer_bytes)
        self._answers = AnswerInbox(self.config.answer_backlog)
        self.duplicate_chunks_dropped = 0

    async def connect(self, url: str, token_provider: TokenProvider) -> None:
        """Open the first connection, then keep one open until ``close()``.

        ``token_provider`` is a token or a (sync or async) function called for a fresh token on
        every (re)connect; fetching it and the handshake together get ``open_timeout``. Raises
        ``AuthenticationError`` on 401/403 and ``ConnectError`` otherwise (unreachable, timed
        out, the token provider failed); the client can then be connected again.
        """
        if self._supervisor is not None or self._closing:
            raise ClientUsageError("connect() can be called once per ChatClient")
        # A bad URL fails here, not in a reconnect.
        target = url_with(url, {INSTANCE_QUERY_PARAMETER: self.instance_id})
        try:
            ws = await open_connection(target, token_provider, self.config)
        except AuthenticationError:
            raise
        except Exception as exc:  # network, timeout, 429/5xx, a failing token provider
            reason = str(exc) or type(exc).__name__
            raise ConnectError(f"could not connect to {url}: {reason}") from exc
        if self._closing:  # closed while the connection was opening
            await ws.close()
            raise ClientClosedError("the client was closed while connecting")
        self._url = target
        self._token_provider = token_provider
        self._current = ws
        self._emit(ConnectionEventKind.CONNECTED)
        self._supervisor = asyncio.create_task(self._supervise(ws), name="chat-client")

    async def close(self) -> None:
        """Stop, and close the connection (1000); safe to call again and to cancel.

        The client is closed for its callers at once, before anything is awaited: pending
        messages and ``receive_answer``/``ask`` fail with ``ClientClosedError``, and
        ``frames()``/``events()`` end. The closing handshake (at most ``close_timeout``) runs in
        a client-owned task: a ``close()`` cancelled before it finished leaves it running, the
        cancellation reaches its caller, and the next ``close()`` waits for the end.
        """
        if self._shutdown is None:
            if self._failure is None:
                self._emit(ConnectionEventKind.CLOSED)
                self._stop(ClientClosedError("the client was closed"), clean=True)
            self._closing = True
            self._shutdown = asyncio.get_running_loop().create_task(
                self._shut_down(), name="chat-client-close"
            )
        await asyncio.shield(self._shutdown)

    async def _shut_down(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.wait([self._supervisor])
        if self._current is not None:
            await self._current.close()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._writer is not None

    @property
    def failure(self) -> ChatClientError | None:
        """Why the client stopped by itself (an ``AuthenticationError``, or a
        ``ClientClosedError`` caused by an unexpected error), else None."""
        return self._failure

    def frames(self) -> Subscription[Frame]:
        """Every frame received from now on, chunks deduplicated; ends at ``close()``.

        Raises ``AuthenticationError`` when a reconnect's token is refused, and
        ``SubscriptionOverflowError`` after the consumer fell ``subscription_limit`` frames
        behind. Use ``async with client.frames() as frames:`` (or ``aclose()``) to stop early.
        """
        return self._frames.subscribe()

    def events(self) -> Subscription[ConnectionEvent]:
        """Connection events from now on (drops, reconnect attempts, reconnects, the end).

        Bounded like ``frames()``.
        """
        return self._events.subscribe()

    async def send_chat(
        self, conversation_id: str, content: str, *, client_message_id: str | None = None
    ) -> str:
        """Hand a chat message to the client's writer; returns its ``clientMessageId`` at once.

        Never waits for the network. The message is kept, and re-sent as needed, until the
        server accepts it; await ``wait_accepted(id)`` to know. While disconnected it is sent
        after the reconnect.
        """
        self._check_usable()
        message_id = client_message_id or uuid4().hex
        try:
            action = ChatMessageAction(
                action=ROUTE_CHAT_MESSAGE,
                conversation_id=conversation_id,
                content=content,
                client_message_id=message_id,
            )
        except ValidationError as exc:
            raise InvalidArgumentError(
                f"invalid chat message: {describe_validation_error(exc)} (conversationId and "
                "clientMessageId: 1-128 printable ASCII characters; content: non-empty)"
            ) from None
        text = action.model_dump_json(by_alias=True, exclude_none=True)
        size = len(text.encode("utf-8"))
        if size > MAX_MESSAGE_BYTES:
            raise ChatMessageTooLargeError(size)
        pending = self._delivery.add(message_id, conversation_id, text)
        if self._writer is not None:
            self._writer.enqueue(pending)
        return message_id

    async def wait_accepted(self, client_message_id: str) -> Accepted:
        """Wait until the server accepts the message.

        Raises ``MessageNotAcceptedError`` after ``accept_timeout``, ``MessageRejectedError`` on
        a non-retryable error frame, ``ClientClosedError``/``AuthenticationError`` if the
        client stops first. Cancelling this wait does not cancel the message.
        """
        return await self._delivery.wait_accepted(client_message_id)

    def pending_ids(self) -> tuple[str, ...]:
        """The clientMessageIds sent but not yet accepted, oldest first."""
        return self._delivery.ids()

    async def receive_answer(self, conversation_id: str) -> Answer:
        """The next whole answer in this conversation (waits for its ``done`` chunk).

        Answers that finished before the call are kept and returned first, oldest first. Bound
        the wait with ``asyncio.timeout``.
        """
        return await self._answers.get(conversation_id)

    async def ask(self, conversation_id: str, content: str) -> Answer:
        """Send a question and return its answer: the one whose ``inReplyTo`` is its id.

        Concurrent ``ask`` calls, in one conversation or several, each get their own answer.
        An answer that arrives after its ``ask`` stopped waiting (cancelled, timed out) goes
        to ``frames()`` and ``receive_answer``, never to another ``ask``. Needs a responder
        that names the question (``MessageSender.stream(..., in_reply_to=clientMessageId)``);
        with one that does not, use ``send_chat`` and ``receive_answer``.
        """
        message_id = uuid4().hex
        reply = self._answers.expect(message_id)
        try:
            await self.send_chat(conversation_id, content, client_message_id=message_id)
            await self.wait_accepted(message_id)
            return await reply
        finally:
            self._answers.forget(message_id)

    async def _supervise(self, ws: ClientConnection) -> None:
        try:
            while True:
                opened_at = time.monotonic()
                close_code, reason = await self._session(ws)
                if self._closing:
                    return
                dropped_at = time.monotonic()
                if dropped_at - opened_at >= self.config.backoff_reset_after:
                    self._delays = self._backoff.delays()
                self._emit(
                    ConnectionEventKind.DISCONNECTED,
                    close_code=close_code,
                    reason=reason,
                    dropped_at=dropped_at,
                )
                ws = await self._reconnect(dropped_at)
        except AuthenticationError as exc:
            self._failure = exc
            self._emit(ConnectionEventKind.AUTH_FAILED, reason=str(exc))
            self._stop(exc, clean=False)
        except Exception as exc:
            logger.exception("the chat client stopped on an unexpected error")
            stopped = ClientClosedError(f"the client stopped on an unexpected error: {exc!r}")
            stopped.__cause__ = exc
            self._failure = stopped
            self._emit(ConnectionEventKind.CLOSED, reason=f"unexpected error: {exc!r}")
            self._stop(stopped, clean=False)

    async def _reconnect(self, dropped_at: float) -> ClientConnection:
        assert self._url is not None
        assert self._token_provider is not None
        attempt = 0
        for delay in self._delays:
            attempt += 1
            self._emit(
                ConnectionEventKind.RECONNECTING,
                attempt=attempt,
                delay=delay,
                dropped_at=dropped_at,
            )
            await asyncio.sleep(delay)
            try:
                ws = await open_connection(self._url, self._token_provider, self.config)
            except AuthenticationError:
                raise
            except Exception as exc:  # network, timeout, 429/5xx, a failing token provider
                self._emit(
                    ConnectionEventKind.RECONNECT_FAILED,
                    attempt=attempt,
                    reason=str(exc) or type(exc).__name__,
                    dropped_at=dropped_at,
                )
                continue
            self._current = ws  # from now on close() closes it
            self._emit(ConnectionEventKind.RECONNECTED, attempt=attempt, dropped_at=dropped_at)
            return ws
        raise AssertionError("Backoff.delays() never ends")

    async def _session(self, ws: ClientConnection) -> tuple[int | None, str]:
        """Serve one connection until it drops; returns its close code and reason."""
        self._drop_reason = None
        writer = ConnectionWriter(ws, self._delivery, lambda reason: self._drop(ws, reason))
        self._writer = writer
        tasks = [self._spawn(writer.run()), self._spawn(self._keepalive(ws, writer))]
        for task in tasks:
            task.add_done_callback(lambda done: self._on_task_done(ws, done))
        try:
            async for message in ws:
                writer.frame_received()
                self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            self._writer = None
        return ws.close_code, self._drop_reason or ws.close_reason or ""

    async def _keepalive(self, ws: ClientConnection, writer: ConnectionWriter) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval)
            try:
                async with asyncio.timeout(self.config.pong_timeout):
                    await writer.ping()
            except TimeoutError:
                self._drop(ws, f"no answer to ping within {self.config.pong_timeout:g} s")
                return

    def _on_task_done(self, ws: ClientConnection, task: asyncio.Task[None]) -> None:
        """A connection's writer or keep-alive must not die unnoticed: replace the connection."""
        if task.cancelled() or task.exception() is None:
            return
        logger.error("a connection task failed", exc_info=task.exception())
        self._drop(ws, f"internal error: {task.exception()!r}")

    def _drop(self, ws: ClientConnection, reason: str) -> None:
        """Abandon a connection now (no closing handshake: it may be dead); it is replaced."""
        logger.warning("dropping the connection: %s", reason)
        self._drop_reason = reason
        ws.transport.abort()

    def _on_message(self, message: str | bytes) -> None:
        frame = parse_received(message)
        if frame is None:
            logger.warning("ignored a frame outside the protocol: %.*r", _MAX_LOGGED_CHARS, message)
            return
        if isinstance(frame, ChatResponse):
            outcome = self._assembler.add(frame)
            if outcome.duplicate:
                self.duplicate_chunks_dropped += 1
                return
            self._frames.publish(frame)
            if outcome.answer is not None:
                self._answers.put(outcome.answer)
            return
        if isinstance(frame, SystemFrame) and frame.event is SystemEvent.ACCEPTED:
            self._delivery.on_accepted(frame)
        elif isinstance(frame, ErrorFrame):
            self._on_error(frame)
        self._frames.publish(frame)

    def _on_error(self, frame: ErrorFrame) -> None:
        ws = self._current
        if frame.code is ErrorCode.UNKNOWN_CONNECTION and ws is not None:
            # The server forgot this connection (expired row): only a new one will do.
            self._drop(ws, frame.message)
            return
        self._delivery.on_error(frame)

    def _send_again(self, pending: PendingMessage) -> None:
        if self._writer is not None:
            self._writer.enqueue(pending)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _emit(self, kind: ConnectionEventKind, **details: Any) -> None:
        event = ConnectionEvent(kind=kind, **details)
        if kind is not ConnectionEventKind.RECONNECTING:
            logger.info("%s", event.describe())
        self._events.publish(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("the on_event callback failed")

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise ClientClosedError("the client is closed")
        if self._supervisor is None:
            raise ClientUsageError("call connect() before sending")

    def _stop(self, error: BaseException, *, clean: bool) -> None:
        """Fail what is pending with ``error`` and end every subscription."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        self._delivery.fail_all(error)
        self._answers.fail(error)
        self._frames.close(None if clean else error)
        self._events.close()
