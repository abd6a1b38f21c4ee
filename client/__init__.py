"""Reconnecting Python client of the rag-websocket chat channel, and the ``python -m client`` CLI.

Reconnects within seconds of any drop, keeps the connection alive with the ``ping`` action,
and never loses a chat message: each one is re-sent with the same ``clientMessageId`` until the
server accepts it (the server queues each id once).
"""

from __future__ import annotations

import logging

from client.answers import Answer, AnswerAssembler, ChunkOutcome
from client.backoff import Backoff
from client.chat_client import ChatClient
from client.config import ClientConfig
from client.delivery import Accepted
from client.errors import (
    AuthenticationError,
    ChatClientError,
    ChatMessageTooLargeError,
    ClientClosedError,
    ClientUsageError,
    ConnectError,
    InvalidArgumentError,
    MessageNotAcceptedError,
    MessageRejectedError,
    SubscriptionOverflowError,
    UnknownMessageError,
)
from client.events import ConnectionEvent, ConnectionEventKind
from client.handshake import TokenProvider
from client.subscriptions import Subscription

# A library leaves log output to its application (and keeps Python's last-resort handler quiet).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Accepted",
    "Answer",
    "AnswerAssembler",
    "AuthenticationError",
    "Backoff",
    "ChatClient",
    "ChatClientError",
    "ChatMessageTooLargeError",
    "ChunkOutcome",
    "ClientClosedError",
    "ClientConfig",
    "ClientUsageError",
    "ConnectError",
    "ConnectionEvent",
    "ConnectionEventKind",
    "InvalidArgumentError",
    "MessageNotAcceptedError",
    "MessageRejectedError",
    "Subscription",
    "SubscriptionOverflowError",
    "TokenProvider",
    "UnknownMessageError",
]
