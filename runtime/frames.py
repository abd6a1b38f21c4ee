"""The protocol's names, and the message handler's common path through it, without pydantic.

Importing pydantic costs about a third of what ``import boto3`` and a client cost, and a good
frame needs none of it: a ``chat_message`` whose fields are plainly valid, a ``ping``, their
``accepted``/``pong`` answer and the chat queue's body are read and written here. Anything a
plain check cannot vouch for is handed to the pydantic models of ``runtime.messages`` (the
contract ``protocol/rag-websocket.schema.json`` is generated from), imported only then, so every
refusal and every unusual value gets exactly their answer; ``tests/unit/test_frames.py`` checks
that both paths agree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard

from runtime.schema import (
    MAX_MESSAGE_BYTES,
    ROUTE_CHAT_MESSAGE,
    ROUTE_PING,
    SQS_ID_PATTERN,
    SQS_UNQUEUEABLE_CHARACTERS,
)

SUPPORTED_ACTIONS = (ROUTE_CHAT_MESSAGE, ROUTE_PING)
_ID = re.compile(SQS_ID_PATTERN)
_UNQUEUEABLE = re.compile(SQS_UNQUEUEABLE_CHARACTERS)
# runtime.messages.ChatQueueMessage's fields in order: (name, wire name, type).
_QUEUE_FIELDS: tuple[tuple[str, str, type], ...] = (
    ("connection_id", "connectionId", str),
    ("user_id", "userId", str),
    ("conversation_id", "conversationId", str),
    ("content", "content", str),
    ("client_message_id", "clientMessageId", str),
    ("message_id", "messageId", str),
    ("received_at", "receivedAt", int),
)


class ErrorCode(StrEnum):
    BAD_REQUEST = "BAD_REQUEST"
    UNKNOWN_ACTION = "UNKNOWN_ACTION"
    RATE_LIMITED = "RATE_LIMITED"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    UNKNOWN_CONNECTION = "UNKNOWN_CONNECTION"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class SystemEvent(StrEnum):
    ACCEPTED = "accepted"
    PONG = "pong"
    CONNECTED = "connected"
    NOTICE = "notice"


class MessageTooLargeError(ValueError):
    """A frame whose JSON is over API Gateway's 128 KB message limit; nothing was sent."""

    def __init__(self, size: int, limit: int = MAX_MESSAGE_BYTES) -> None:
        super().__init__(
            f"frame is {size} bytes, over API Gateway's {limit}-byte message limit; "
            "split the content into chunks (MessageSender.stream does this)"
        )
        self.size = size
        self.limit = limit


class BadRequest(Exception):
    """An inbound frame the handler refuses; ``code`` and the message go into the error frame."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def utc_timestamp() -> str:
    """ISO 8601 UTC with milliseconds, the ``timestamp`` of every outbound frame."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def checked_size(text: str) -> str:
    """``text``, unless its UTF-8 is over the 128 KB message limit (``MessageTooLargeError``)."""
    size = len(text.encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(size)
    return text


# --- Inbound ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatMessage:
    """A valid ``chat_message`` (``runtime.messages.ChatMessageAction``'s fields)."""

    conversation_id: str
    content: str
    client_message_id: str | None = None


@dataclass(frozen=True)
class Ping:
    """A valid ``ping``."""


def parse_body(body: object) -> ChatMessage | Ping:
    """The inbound action, or BadRequest naming what is wrong and how to fix it."""
    if not isinstance(body, str) or not body.strip():
        raise BadRequest(
            ErrorCode.BAD_REQUEST,
            'the message body is empty; send a JSON object such as {"action":"ping"}',
        )
    if len(body.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise BadRequest(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"the message is over {MAX_MESSAGE_BYTES} bytes; send less content",
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(
            ErrorCode.BAD_REQUEST,
            'the message is not valid JSON; send a JSON object such as {"action":"ping"}',
        ) from None
    if not isinstance(data, dict):
        raise BadRequest(
            ErrorCode.BAD_REQUEST,
            'the message must be a JSON object with an "action" field',
        )
    action = data.get("action")
    if action not in SUPPORTED_ACTIONS:
        shown = action if isinstance(action, str) and len(action) <= 64 else type(action).__name__
        raise BadRequest(
            ErrorCode.UNKNOWN_ACTION,
            f"unknown action {shown!r}; the supported actions are " + ", ".join(SUPPORTED_ACTIONS),
        )
    if action == ROUTE_PING:
        return Ping()  # PingAction ignores every other field
    return _plainly_valid_chat(data) or _validated(data, action)


def _is_id(value: object) -> TypeGuard[str]:
    return type(value) is str and _ID.fullmatch(value) is not None


def _plainly_valid_chat(data: dict[str, Any]) -> ChatMessage | None:
    """The chat message when each field is an exact ``str`` that passes ChatMessageAction's
    checks as they stand; ``None`` leaves the decision to pydantic (also when the Python field
    names are used, which the model accepts as well)."""
    if "conversation_id" in data or "client_message_id" in data:
        return None
    conversation_id = data.get("conversationId")
    content = data.get("content")
    client_message_id = data.get("clientMessageId")
    if not (
        _is_id(conversation_id)
        and type(content) is str
        and content.strip()
        and _UNQUEUEABLE.search(content) is None
        and (client_message_id is None or _is_id(client_message_id))
    ):
        return None
    return ChatMessage(conversation_id, content, client_message_id)


def _validated(data: dict[str, Any], action: str) -> ChatMessage | Ping:
    from pydantic import ValidationError

    from runtime.messages import INBOUND_ADAPTER, ChatMessageAction, describe_validation_error

    try:
        model = INBOUND_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise BadRequest(
            ErrorCode.BAD_REQUEST,
            f"invalid {action}: {describe_validation_error(exc)} "
            "(conversationId and clientMessageId: 1-128 printable ASCII characters; "
            "content: a string that is not only whitespace)",
        ) from None
    if isinstance(model, ChatMessageAction):
        return ChatMessage(model.conversation_id, model.content, model.client_message_id)
    return Ping()


# --- Outbound -----------------------------------------------------------------------------


def _plain_json(value: dict[str, Any]) -> str | None:
    """The compact JSON pydantic writes for ``value``, when it is a dict of ``str`` keys whose
    values are ``str``, ``int`` or such dicts and the text is valid UTF-8 (no lone surrogate);
    else ``None``."""
    if not _plain(value):
        return None
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def _plain(value: object) -> bool:
    if type(value) is dict:
        return all(type(key) is str and _plain(item) for key, item in value.items())
    return type(value) is str or type(value) is int


@dataclass(frozen=True)
class SystemAnswer:
    """A ``system`` frame without a ``message`` (``accepted``, ``pong``), written exactly as
    ``runtime.messages.SystemFrame`` writes it."""

    event: SystemEvent
    data: dict[str, Any] | None = None
    timestamp: str = field(default_factory=utc_timestamp)

    def to_json(self) -> str:
        """The wire form, checked against the 128 KB message limit."""
        frame: dict[str, Any] = {
            "timestamp": self.timestamp,
            "type": "system",
            "event": self.event.value,
        }
        if self.data is not None:
            frame["data"] = self.data
        text = _plain_json(frame)
        if text is None:
            from runtime.messages import SystemFrame

            model = SystemFrame(timestamp=self.timestamp, event=self.event, data=self.data)
            return model.to_json()
        return checked_size(text)


@dataclass(frozen=True)
class ChatQueueBody:
    """The chat queue's message body (``runtime.messages.ChatQueueMessage``), written without
    pydantic when every field has exactly its declared type."""

    fields: dict[str, Any]

    @classmethod
    def of(cls, **fields: Any) -> ChatQueueBody:
        """Raises where ``ChatQueueMessage(**fields)`` raises: a field of another type is
        validated (and perhaps refused) by the model."""
        if not _typed_as_declared(fields):
            from runtime.messages import ChatQueueMessage

            ChatQueueMessage(**fields)
        return cls(fields)

    def to_json(self) -> str:
        """``ChatQueueMessage(**fields).model_dump_json(by_alias=True)``, raising as it does."""
        if _typed_as_declared(self.fields):
            text = _plain_json({wire: self.fields[name] for name, wire, _ in _QUEUE_FIELDS})
            if text is not None:
                return text
        from runtime.messages import ChatQueueMessage

        return ChatQueueMessage(**self.fields).model_dump_json(by_alias=True)


def _typed_as_declared(fields: dict[str, Any]) -> bool:
    return len(fields) == len(_QUEUE_FIELDS) and all(
        type(fields.get(name)) is kind for name, _, kind in _QUEUE_FIELDS
    )
