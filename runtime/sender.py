"""MessageSender: frames to connected clients through the API Gateway management API.

The RAG stack and the local demo responder use it to answer: ``send_message`` to one connection,
``broadcast_to_user`` to all of a user's connections at once, ``stream`` for a chunked answer
(DESIGN §3). It is a façade over modules with one job each:

- ``runtime.posting``: one frame to one connection, the management API's answers mapped (410
  gone, 429 retried with backoff);
- ``runtime.delivery``: serializing, posting frames in order, the fan-out thread pool, removing
  a gone connection's row;
- ``runtime.redirect``: a gone target's frames to the same user's live connections;
- ``runtime.streaming``: the numbered frames of a streamed answer.

A frame over the 128 KB message limit raises ``MessageTooLargeError`` before any network call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from runtime import aws
from runtime.config import StoreConfig, management_endpoint_from_env
from runtime.connections import ConnectionStore
from runtime.delivery import DEFAULT_MAX_WORKERS, Dispatcher, Message, serialize, tally
from runtime.messages import new_message_id
from runtime.observability import logger
from runtime.posting import (
    DEFAULT_BASE_BACKOFF_SECONDS,
    DEFAULT_MAX_RETRIES,
    Boto3Transport,
    Poster,
    RetryPolicy,
    SendStatus,
    Transport,
    lean_transport,
)
from runtime.redirect import DEFAULT_GRACE_SECONDS, REDIRECT_POLL_SECONDS, Redirector
from runtime.streaming import (
    DEFAULT_COALESCE_SECONDS,
    DEFAULT_MAX_COALESCE_SECONDS,
    Coalescing,
    Streamer,
    StreamResult,
)

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

__all__ = [
    "DEFAULT_BASE_BACKOFF_SECONDS",
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_WORKERS",
    "REDIRECT_POLL_SECONDS",
    "BroadcastResult",
    "Message",
    "MessageSender",
    "SendStatus",
    "StreamResult",
    "serialize",
]


@dataclass(frozen=True)
class BroadcastResult:
    """How one frame fared across a user's connections."""

    sent: int
    gone: int
    failed: int

    @property
    def total(self) -> int:
        return self.sent + self.gone + self.failed


class MessageSender:
    """Sends frames to WebSocket connections; one per container, shared by invocations.

    ``endpoint_url`` is the management endpoint ``https://{apiId}.execute-api.{region}
    .amazonaws.com/{stage}``, else ``WEBSOCKET_MANAGEMENT_ENDPOINT``. ``posting`` chooses how a
    frame is posted: ``"lean"`` (the default) signs each request with botocore's SigV4 signer
    and sends it on a kept-alive pool, trusting botocore's CA bundle (through the boto3 client
    where a proxy applies: ``runtime.posting.lean_transport``, and ``posting`` then reads
    ``"boto3"``); ``"boto3"`` goes through the boto3 client, the container-wide one from
    ``runtime.aws`` unless ``client`` is given (which implies ``"boto3"``). Both map the
    answers the same way. ``stream`` gathers later chunks into one frame for
    ``coalesce_seconds``, doubling per frame up to ``max_coalesce_seconds`` (0 sends each chunk
    as it comes). ``sleep`` and ``monotonic`` are injectable so tests control
    backoff and grace periods.
    """

    def __init__(
        self,
        store: ConnectionStore,
        endpoint_url: str | None = None,
        *,
        client: ApiGatewayManagementApiClient | None = None,
        posting: Literal["lean", "boto3"] | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        base_backoff_seconds: float = DEFAULT_BASE_BACKOFF_SECONDS,
        redirect_gone_to_user: bool = False,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        coalesce_seconds: float = DEFAULT_COALESCE_SECONDS,
        max_coalesce_seconds: float = DEFAULT_MAX_COALESCE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers={max_workers} must be >= 1")
        policy = RetryPolicy(max_retries, base_backoff_seconds)
        coalescing = Coalescing(coalesce_seconds, max(coalesce_seconds, max_coalesce_seconds))
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds={grace_seconds} must be >= 0")
        if posting not in (None, "lean", "boto3"):
            raise ValueError(f"posting={posting!r} must be 'lean' or 'boto3'")
        if client is not None and posting == "lean":
            raise ValueError("posting='lean' takes no client: drop client or pass posting='boto3'")
        self.posting = posting or ("lean" if client is None else "boto3")
        if client is None:
            endpoint_url = endpoint_url or management_endpoint_from_env()
        transport: Transport
        if self.posting == "boto3":
            client = client or aws.management_api(str(endpoint_url))
            transport = Boto3Transport(client)
        else:
            transport = lean_transport(str(endpoint_url))
            if isinstance(transport, Boto3Transport):
                # A proxy applies: lean_transport chose the boto3 client, so say so.
                self.posting = "boto3"
                client = transport.client
        self.store = store
        self.endpoint_url = endpoint_url
        self.max_retries = max_retries
        self.base_backoff_seconds = base_backoff_seconds
        self.client = client
        """The boto3 client on the ``"boto3"`` path; None on the lean path."""
        self.redirect_gone_to_user = redirect_gone_to_user
        self.grace_seconds = grace_seconds
        self._closed = threading.Event()
        self.poster = Poster(transport, policy, sleep, self._closed)
        self._dispatcher = Dispatcher(store, self.poster, max_workers)
        self._redirector = Redirector(self._dispatcher, sleep, monotonic, self._closed)
        self._streamer = Streamer(self._dispatcher, self._redirector, coalescing)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> MessageSender:
        """A sender configured from ``CONNECTIONS_TABLE`` and ``WEBSOCKET_MANAGEMENT_ENDPOINT``."""
        store = ConnectionStore(StoreConfig.from_env(env))
        return cls(store, management_endpoint_from_env(env), **options)

    def close(self) -> None:
        """Stop the worker threads (tests and local mode; a Lambda container never needs it)."""
        self._closed.set()
        self._dispatcher.close()
        self.poster.transport.close()

    def __enter__(self) -> MessageSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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
        delivery = self._dispatcher.deliver(connection_id, [data], remove_gone=False)
        if delivery.status is not SendStatus.GONE:
            tally([delivery])
            return delivery.status is SendStatus.SENT
        if redirect and user_id is None:
            user_id = self._redirector.owner(connection_id)
        tally([replace(delivery, gone_row=self._dispatcher.forget(connection_id))])
        if not redirect:
            return False
        return bool(
            self._redirector.redirect(user_id, [data], {connection_id}, grace, [connection_id])
        )

    def broadcast_to_user(self, user_id: str, message: Message) -> BroadcastResult:
        """Send one frame to every live connection of a user, concurrently.

        The frame is serialized once. Each connection is independent: a gone one is removed
        and counted, a failing one is logged and counted, and neither affects the others.
        Raises only if the connections table cannot be read.
        """
        data = serialize(message)
        targets = self.store.connection_ids_for_user(user_id)
        deliveries = self._dispatcher.fan_out_counted(targets, [data])
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

        Every chunk frame carries ``message_id`` and ``sequence`` 0, 1, 2, ...; the first chunk
        goes out at once, later ones are coalesced into frames (``coalesce_seconds``); a chunk
        too big for one message is split into several, so a whole answer may be passed as one
        chunk. Empty chunks are skipped. The last ``chat_response`` has ``done: true``, empty
        ``content``, ``metadata`` and ``sequence`` equal to the number of content chunks
        before it, so a client knows when it holds them all. Typing off is best effort.

        The result is falsy when the stream stopped early (the connection is gone and no
        redirect found a live one, or a send failed). If ``chunks`` raises, typing off is sent
        and the exception propagates.
        """
        return self._streamer.stream(
            connection_id,
            conversation_id,
            chunks,
            message_id=message_id or new_message_id(),
            metadata=metadata or {},
            user_id=user_id,
            redirect=self._redirect_option(redirect_gone_to_user),
            grace_seconds=self._grace_option(grace_seconds),
            in_reply_to=in_reply_to,
        )

    def _redirect_option(self, value: bool | None) -> bool:
        return self.redirect_gone_to_user if value is None else value

    def _grace_option(self, value: float | None) -> float:
        if value is None:
            return self.grace_seconds
        if value < 0:
            raise ValueError(f"grace_seconds={value} must be >= 0")
        return value
