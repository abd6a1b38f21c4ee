"""MessageSender: frames to connected clients through the API Gateway management API.

The RAG stack and the local demo responder use it to answer: ``send_message`` to one connection,
``broadcast_to_user`` to all of a user's connections at once, ``stream`` for a chunked answer
(DESIGN §3). The AWS facts of DESIGN §4 are handled here and nowhere else:

- 410 ``GoneException`` (a ``ClientError`` subclass, so caught first): the TARGET connection's
  row is deleted and counted; the caller gets ``False``, never an exception.
- 429 ``LimitExceededException`` (also "the client's buffer is full"): bounded retry with
  exponential backoff and jitter, then ``False``.
- A frame over the 128 KB message limit: ``MessageTooLargeError`` before any network call.

Because a reconnecting client gets a new connection id, ``redirect_gone_to_user`` delivers a
frame whose target is gone to the same user's live connections instead, waiting up to a grace
period for one to appear; ``stream`` then replays the answer so far there and carries on. Clients
drop duplicates by (conversationId, messageId, sequence).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

from botocore.exceptions import BotoCoreError, ClientError

from runtime import aws, schema
from runtime.config import StoreConfig, management_endpoint_from_env
from runtime.connections import ConnectionStore
from runtime.messages import (
    ChatResponse,
    ErrorFrame,
    MessageTooLargeError,
    SystemFrame,
    TypingIndicator,
    chat_response,
    new_message_id,
    typing_indicator,
)
from runtime.observability import Metric, count, logger

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

Message: TypeAlias = (
    ChatResponse | TypingIndicator | ErrorFrame | SystemFrame | Mapping[str, Any] | str
)
"""A frame model, a JSON object as a mapping, or text that already is JSON."""

DEFAULT_MAX_WORKERS = 32
DEFAULT_MAX_RETRIES = 3
DEFAULT_BASE_BACKOFF_SECONDS = 0.05
DEFAULT_GRACE_SECONDS = 5.0
# How often a redirect looks for the user's new connection; a client reconnects within 3 s.
REDIRECT_POLL_SECONDS = 0.25
# The done frame's size is checked before streaming starts, with the widest sequence it can get.
_WIDEST_SEQUENCE = 2**63 - 1

_GONE_STATUS = 410
_THROTTLED_STATUS = 429
_THROTTLING_CODES = frozenset(
    {"LimitExceededException", "ThrottlingException", "TooManyRequestsException"}
)


class SendStatus(Enum):
    SENT = "sent"
    GONE = "gone"  # 410: the connection no longer exists (its row has been removed)
    FAILED = "failed"  # throttled past the retries, forbidden, 5xx, network: logged


@dataclass(frozen=True)
class BroadcastResult:
    """How one frame fared across a user's connections."""

    sent: int
    gone: int
    failed: int

    @property
    def total(self) -> int:
        return self.sent + self.gone + self.failed


@dataclass(frozen=True)
class StreamResult:
    """The outcome of ``stream``; truthy when the ``done`` frame reached a live connection.

    ``connection_ids`` are where the stream ended: after a redirect they are the user's new
    connection(s), not the one the stream started on.
    """

    message_id: str
    chunks: int
    completed: bool
    connection_ids: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.completed


@dataclass(frozen=True)
class _Delivery:
    connection_id: str
    status: SendStatus
    frames_sent: int


@dataclass
class _StreamState:
    targets: list[str]
    user_id: str | None
    redirect: bool
    grace_seconds: float
    excluded: set[str]
    history: list[bytes] = field(default_factory=list)


def serialize(message: Message) -> bytes:
    """The UTF-8 wire form of a message; raises ``MessageTooLargeError`` over 128 KB."""
    if isinstance(message, str):
        text = message
    elif isinstance(message, Mapping):
        text = json.dumps(dict(message), separators=(",", ":"), ensure_ascii=False)
    else:
        text = message.to_json()
    data = text.encode("utf-8")
    if len(data) > schema.MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(len(data))
    return data


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class MessageSender:
    """Sends frames to WebSocket connections; one per container, shared by invocations.

    ``endpoint_url`` is the management endpoint ``https://{apiId}.execute-api.{region}
    .amazonaws.com/{stage}``, else ``WEBSOCKET_MANAGEMENT_ENDPOINT``. The boto3 client is the
    container-wide one from ``runtime.aws`` unless ``client`` is given. ``sleep`` and
    ``monotonic`` are injectable so tests control backoff and grace periods.
    """

    def __init__(
        self,
        store: ConnectionStore,
        endpoint_url: str | None = None,
        *,
        client: ApiGatewayManagementApiClient | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        base_backoff_seconds: float = DEFAULT_BASE_BACKOFF_SECONDS,
        redirect_gone_to_user: bool = False,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers={max_workers} must be >= 1")
        if max_retries < 0:
            raise ValueError(f"max_retries={max_retries} must be >= 0")
        if base_backoff_seconds < 0:
            raise ValueError(f"base_backoff_seconds={base_backoff_seconds} must be >= 0")
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds={grace_seconds} must be >= 0")
        if client is None:
            endpoint_url = endpoint_url or management_endpoint_from_env()
            client = aws.management_api(endpoint_url)
        self.store = store
        self.endpoint_url = endpoint_url
        self.client = client
        self.max_retries = max_retries
        self.base_backoff_seconds = base_backoff_seconds
        self.redirect_gone_to_user = redirect_gone_to_user
        self.grace_seconds = grace_seconds
        self._sleep = sleep
        self._monotonic = monotonic
        # Created once and reused: threads start lazily, and a broadcast never outgrows the pool.
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="message-sender"
        )
        self._closed = threading.Event()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> MessageSender:
        """A sender configured from ``CONNECTIONS_TABLE`` and ``WEBSOCKET_MANAGEMENT_ENDPOINT``."""
        store = ConnectionStore(StoreConfig.from_env(env))
        return cls(store, management_endpoint_from_env(env), **options)

    def close(self) -> None:
        """Stop the worker threads (tests and local mode; a Lambda container never needs it)."""
        self._closed.set()
        self._executor.shutdown(wait=True)

    def __enter__(self) -> MessageSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- public API -----------------------------------------------------------------------

    def send_message(
        self,
        connection_id: str,
        message: Message,
        *,
        user_id: str | None = None,
        redirect_gone_to_user: bool | None = None,
        grace_seconds: float | None = None,
    ) -> bool:
        """Send one frame; True when delivered, False when gone or failed (never raises for that).

        With redirect on, a gone target's frame goes to the user's live connections instead.
        Pass ``user_id`` (the queued chat message carries it): otherwise it is read from the
        gone connection's row before that row is removed, which ``$disconnect`` may have
        deleted already.
        """
        data = serialize(message)
        redirect = self._redirect_option(redirect_gone_to_user)
        grace = self._grace_option(grace_seconds)
        delivery = self._deliver(connection_id, [data], remove_gone=False)
        if delivery.status is not SendStatus.GONE:
            self._tally([delivery])
            return delivery.status is SendStatus.SENT
        if redirect and user_id is None:
            user_id = self._owner(connection_id)
        self._forget(connection_id)
        self._tally([delivery])
        if not redirect:
            return False
        return bool(self._redirect(user_id, [data], {connection_id}, grace))

    def broadcast_to_user(self, user_id: str, message: Message) -> BroadcastResult:
        """Send one frame to every live connection of a user, concurrently.

        The frame is serialized once. Each connection is independent: a gone one is removed
        and counted, a failing one is logged and counted, and neither affects the others.
        Raises only if the connections table cannot be read.
        """
        data = serialize(message)
        targets = self.store.connection_ids_for_user(user_id)
        deliveries = self._fan_out(targets, [data])
        self._tally(deliveries)
        result = BroadcastResult(
            sent=sum(d.status is SendStatus.SENT for d in deliveries),
            gone=sum(d.status is SendStatus.GONE for d in deliveries),
            failed=sum(d.status is SendStatus.FAILED for d in deliveries),
        )
        logger.debug(
            "broadcast to user",
            extra={"userId": user_id, "sent": result.sent, "gone": result.gone},
        )
        return result

    def stream(
        self,
        connection_id: str,
        conversation_id: str,
        chunks: Iterable[str],
        *,
        message_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        redirect_gone_to_user: bool | None = None,
        grace_seconds: float | None = None,
        in_reply_to: str | None = None,
    ) -> StreamResult:
        """Stream an answer: typing on, numbered ``chat_response`` chunks, done, typing off.

        ``in_reply_to`` (the queued message's ``clientMessageId``) goes into every frame as
        ``inReplyTo``, so that the client matches the answer to its question.

        Every chunk frame carries ``message_id`` and ``sequence`` 0, 1, 2, ...; a chunk too big
        for one message is split into several, so a whole answer may be passed as one chunk.
        Empty chunks are skipped. The last ``chat_response`` has ``done: true``, empty
        ``content``, ``metadata`` and ``sequence`` equal to the number of content chunks
        before it, so a client knows when it holds them all. Typing off is best effort.

        The result is falsy when the stream stopped early (the connection is gone and no
        redirect found a live one, or a send failed). If ``chunks`` raises, typing off is sent
        and the exception propagates.
        """
        message_id = message_id or new_message_id()
        done_metadata = dict(metadata or {})
        redirect = self._redirect_option(redirect_gone_to_user)
        # Fail on oversized metadata now, not after the answer has been sent.
        chat_response(
            conversation_id,
            "",
            message_id=message_id,
            done=True,
            sequence=_WIDEST_SEQUENCE,
            metadata=done_metadata,
        ).to_json()
        if redirect and user_id is None:
            # Read now, while the row still exists: after a drop, $disconnect deletes it.
            user_id = self._owner(connection_id)
        state = _StreamState(
            targets=[connection_id],
            user_id=user_id,
            redirect=redirect,
            grace_seconds=self._grace_option(grace_seconds),
            excluded={connection_id},
        )

        def result(chunks_sent: int, completed: bool) -> StreamResult:
            return StreamResult(message_id, chunks_sent, completed, tuple(state.targets))

        typing_on = typing_indicator(conversation_id, True, in_reply_to=in_reply_to)
        if not self._stream_frame(state, serialize(typing_on)):
            return result(0, False)
        sequence = 0
        try:
            for chunk in chunks:
                for frame in _chunk_frames(
                    conversation_id, message_id, chunk, sequence, in_reply_to
                ):
                    if not self._stream_frame(state, frame):
                        return result(sequence, False)
                    sequence += 1
        except Exception:
            self._typing_off(state, conversation_id, in_reply_to)
            raise
        done = chat_response(
            conversation_id,
            "",
            message_id=message_id,
            done=True,
            sequence=sequence,
            metadata=done_metadata,
            in_reply_to=in_reply_to,
        )
        completed = self._stream_frame(state, serialize(done))
        if completed:
            self._typing_off(state, conversation_id, in_reply_to)
        return result(sequence, completed)

    # --- delivery -------------------------------------------------------------------------

    def _redirect_option(self, value: bool | None) -> bool:
        return self.redirect_gone_to_user if value is None else value

    def _grace_option(self, value: float | None) -> float:
        if value is None:
            return self.grace_seconds
        if value < 0:
            raise ValueError(f"grace_seconds={value} must be >= 0")
        return value

    def _post(self, connection_id: str, data: bytes) -> SendStatus:
        """One frame to one connection with the bounded 429 retry; no metrics (caller tallies)."""
        exceptions = self.client.exceptions
        attempt = 0
        while True:
            try:
                self.client.post_to_connection(ConnectionId=connection_id, Data=data)
                return SendStatus.SENT
            except exceptions.GoneException:
                return SendStatus.GONE
            except ClientError as exc:
                code, status = _error_code(exc), _http_status(exc)
                if status == _GONE_STATUS:
                    # A 410 without the x-amzn-ErrorType header is not mapped to GoneException.
                    return SendStatus.GONE
                throttled = code in _THROTTLING_CODES or status == _THROTTLED_STATUS
                if throttled and attempt < self.max_retries and not self._closed.is_set():
                    self._sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                logger.warning(
                    "post_to_connection failed",
                    extra={
                        "connectionId": connection_id,
                        "errorCode": code,
                        "httpStatus": status,
                        "attempts": attempt + 1,
                    },
                )
                return SendStatus.FAILED
            except BotoCoreError as exc:
                logger.warning(
                    "post_to_connection failed",
                    extra={"connectionId": connection_id, "error": type(exc).__name__},
                )
                return SendStatus.FAILED

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = self.base_backoff_seconds * 2.0**attempt
        # Jitter only spreads retries out; it needs no cryptographic randomness.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311

    def _deliver(
        self, connection_id: str, frames: Sequence[bytes], *, remove_gone: bool = True
    ) -> _Delivery:
        """Frames to one connection in order, stopping at the first that is not sent."""
        for index, data in enumerate(frames):
            status = self._post(connection_id, data)
            if status is not SendStatus.SENT:
                if status is SendStatus.GONE and remove_gone:
                    self._forget(connection_id)
                return _Delivery(connection_id, status, index)
        return _Delivery(connection_id, SendStatus.SENT, len(frames))

    def _deliver_guarded(self, connection_id: str, frames: Sequence[bytes]) -> _Delivery:
        # In a worker thread: one connection's unexpected error must not sink the others.
        try:
            return self._deliver(connection_id, frames)
        except Exception:
            logger.exception(
                "sending to a connection failed", extra={"connectionId": connection_id}
            )
            return _Delivery(connection_id, SendStatus.FAILED, 0)

    def _fan_out(self, connection_ids: Sequence[str], frames: Sequence[bytes]) -> list[_Delivery]:
        """The same frames to several connections concurrently, each in order."""
        if len(connection_ids) == 1:
            return [self._deliver_guarded(connection_ids[0], frames)]
        return list(
            self._executor.map(lambda cid: self._deliver_guarded(cid, frames), connection_ids)
        )

    def _tally(self, deliveries: Iterable[_Delivery]) -> None:
        # Metrics are counted here, in the caller's thread: Powertools' metric set is not
        # thread-safe.
        sent = gone = 0
        for delivery in deliveries:
            sent += delivery.frames_sent
            gone += delivery.status is SendStatus.GONE
        count(Metric.MESSAGES_SENT, sent)
        count(Metric.STALE_CONNECTIONS_REMOVED, gone)

    def _forget(self, connection_id: str) -> None:
        """Remove a gone connection's row unless it is still connecting (``remove_gone``); a
        failure is logged, the TTL will expire it."""
        logger.info("connection gone, removing it", extra={"connectionId": connection_id})
        try:
            self.store.remove_gone(connection_id)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "removing a gone connection failed",
                extra={"connectionId": connection_id, "error": type(exc).__name__},
            )

    def _owner(self, connection_id: str) -> str | None:
        try:
            connection = self.store.get(connection_id)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "looking up a connection's user failed",
                extra={"connectionId": connection_id, "error": type(exc).__name__},
            )
            return None
        return None if connection is None else connection.user_id

    def _live_connections(self, user_id: str) -> list[str]:
        try:
            return self.store.connection_ids_for_user(user_id)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "listing a user's connections failed",
                extra={"userId": user_id, "error": type(exc).__name__},
            )
            return []

    def _redirect(
        self,
        user_id: str | None,
        frames: Sequence[bytes],
        excluded: set[str],
        grace_seconds: float,
    ) -> list[str]:
        """Deliver ``frames`` to the user's live connections, waiting up to the grace period.

        Returns the connections that received every frame (empty if none appeared in time).
        Connections that fail or are gone are added to ``excluded`` and not tried again.
        """
        if user_id is None:
            logger.warning("cannot redirect: the gone connection's user is unknown")
            return []
        deadline = self._monotonic() + grace_seconds
        while True:
            candidates = [c for c in self._live_connections(user_id) if c not in excluded]
            if candidates:
                deliveries = self._fan_out(candidates, frames)
                self._tally(deliveries)
                delivered = [d.connection_id for d in deliveries if d.status is SendStatus.SENT]
                # A gone connection still in $connect keeps its row and is tried again on the
                # next poll; one whose row was removed is not listed again.
                excluded.update(
                    d.connection_id for d in deliveries if d.status is SendStatus.FAILED
                )
                if delivered:
                    logger.info(
                        "redirected to the user's live connection",
                        extra={"userId": user_id, "connectionIds": delivered},
                    )
                    return delivered
            remaining = deadline - self._monotonic()
            if remaining <= 0 or self._closed.is_set():
                logger.info("no live connection to redirect to", extra={"userId": user_id})
                return []
            self._sleep(min(REDIRECT_POLL_SECONDS, remaining))

    def _stream_frame(self, state: _StreamState, data: bytes) -> bool:
        """One stream frame to the stream's current targets; False when none is left."""
        if state.redirect:
            state.history.append(data)
        deliveries = self._fan_out(state.targets, [data])
        self._tally(deliveries)
        state.targets = [d.connection_id for d in deliveries if d.status is SendStatus.SENT]
        if state.targets:
            return True
        if not state.redirect or not any(d.status is SendStatus.GONE for d in deliveries):
            return False
        state.excluded.update(d.connection_id for d in deliveries)
        # The new connection missed everything so far: replay it (clients drop duplicates).
        state.targets = self._redirect(
            state.user_id, state.history, state.excluded, state.grace_seconds
        )
        return bool(state.targets)

    def _typing_off(
        self, state: _StreamState, conversation_id: str, in_reply_to: str | None
    ) -> None:
        if state.targets:
            data = serialize(typing_indicator(conversation_id, False, in_reply_to=in_reply_to))
            self._tally(self._fan_out(state.targets, [data]))


def _chunk_frames(
    conversation_id: str, message_id: str, text: str, first_sequence: int, in_reply_to: str | None
) -> list[bytes]:
    """A chunk's ``chat_response`` frames, halving the text until each fits in 128 KB."""
    frames: list[bytes] = []
    pending = [text] if text else []
    while pending:
        piece = pending.pop()
        frame = chat_response(
            conversation_id,
            piece,
            message_id=message_id,
            sequence=first_sequence + len(frames),
            in_reply_to=in_reply_to,
        )
        try:
            frames.append(serialize(frame))
        except MessageTooLargeError:
            if len(piece) < 2:
                raise  # the ids alone fill the message: no split can help
            middle = len(piece) // 2
            pending.extend((piece[middle:], piece[:middle]))
    return frames
