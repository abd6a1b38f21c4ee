"""What a ``ChatClient`` caller can catch: one base class, one subclass per thing to act on."""

from __future__ import annotations

from runtime.messages import MessageTooLargeError
from runtime.schema import MAX_MESSAGE_BYTES

AUTH_REJECTED_STATUSES = frozenset({401, 403})


class ChatClientError(Exception):
    """Base class of every error the client raises on purpose."""


class InvalidArgumentError(ChatClientError, ValueError):
    """An argument the client cannot use (a chat message's fields, the URL); nothing was sent."""


class ClientUsageError(ChatClientError, RuntimeError):
    """A call out of order: ``connect()`` twice, or sending before ``connect()``."""


class AuthenticationError(ChatClientError):
    """The server refused the token on the WebSocket handshake (HTTP 401 or 403).

    Never retried: a new connection with the same token provider would be refused again. Get a
    valid token and connect again.
    """

    def __init__(self, status_code: int, body: str = "") -> None:
        detail = f": {body.strip()}" if body.strip() else ""
        super().__init__(
            f"the server rejected the token (HTTP {status_code}{detail}); "
            "check that it is valid, unexpired and issued for this API"
        )
        self.status_code = status_code
        self.body = body


class ConnectError(ChatClientError):
    """The first connection could not be opened (network, timeout, non-auth HTTP status)."""


class ClientClosedError(ChatClientError):
    """The client was closed (or stopped on an authentication error) before this completed."""


class SubscriptionOverflowError(ChatClientError):
    """A ``frames()``/``events()`` consumer fell too far behind; its subscription was ended."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this subscription fell {limit} items behind and was ended; read it faster, or "
            "raise ClientConfig.subscription_limit, and subscribe again to carry on"
        )
        self.limit = limit


class UnknownMessageError(ChatClientError, KeyError):
    """``wait_accepted`` was given a ``clientMessageId`` this client does not know (any more)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MessageNotAcceptedError(ChatClientError):
    """A chat message got no ``system/accepted`` within the client's ``accept_timeout``.

    It may or may not have been queued: re-sending it with the same ``client_message_id`` is
    safe within SQS's deduplication window.
    """

    def __init__(self, client_message_id: str, timeout: float, last_error: str | None) -> None:
        reason = f"; last error: {last_error}" if last_error else ""
        super().__init__(
            f"chat message {client_message_id} was not accepted within {timeout:g} s{reason}"
        )
        self.client_message_id = client_message_id
        self.timeout = timeout
        self.last_error = last_error


class MessageRejectedError(ChatClientError):
    """The server answered a chat message with a non-retryable ``error`` frame."""

    def __init__(self, client_message_id: str, code: str, message: str) -> None:
        super().__init__(f"chat message {client_message_id} was rejected: {code}: {message}")
        self.client_message_id = client_message_id
        self.code = code
        self.server_message = message


class ChatMessageTooLargeError(MessageTooLargeError, ChatClientError):
    """A chat message over API Gateway's 128 KB message limit; nothing was sent."""

    def __init__(self, size: int) -> None:
        ValueError.__init__(
            self,
            f"the chat message is {size} bytes as JSON, over API Gateway's "
            f"{MAX_MESSAGE_BYTES}-byte message limit; send less content",
        )
        self.size = size
        self.limit = MAX_MESSAGE_BYTES
