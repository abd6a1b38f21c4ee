"""Every frame of the protocol (DESIGN §3), in both directions, as pydantic v2 models.

Inbound actions are discriminated on ``action``, outbound frames on ``type``. Field names are
snake_case in Python and camelCase on the wire. The protocol's names (``ErrorCode``,
``SystemEvent``) and the message handler's common path, which needs no pydantic, are in
``runtime.frames``; ``frames.parse_body`` reads an inbound frame.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal, Union
from uuid import uuid4

# pydantic reads every installed distribution's entry points for plugins the first time it builds
# a model: tens of milliseconds of a handler's cold start. This runtime uses no pydantic plugin.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
)
from pydantic.alias_generators import to_camel

from runtime.frames import ErrorCode as ErrorCode
from runtime.frames import MessageTooLargeError as MessageTooLargeError
from runtime.frames import SystemEvent as SystemEvent
from runtime.frames import checked_size, utc_timestamp
from runtime.schema import SQS_ID_PATTERN, SQS_UNQUEUEABLE_CHARACTERS


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="ignore",
        # Built on first use, not at import: a cold start pays only for the models its first
        # event needs.
        defer_build=True,
    )


# --- Inbound ------------------------------------------------------------------------------

SqsId = Annotated[str, Field(pattern=SQS_ID_PATTERN)]
_UNQUEUEABLE = re.compile(SQS_UNQUEUEABLE_CHARACTERS)


def _queueable(value: object) -> object:
    """Refuse text the chat queue cannot carry, naming where (before pydantic's own string
    check, which refuses a lone surrogate without saying where it is)."""
    bad = _UNQUEUEABLE.search(value) if isinstance(value, str) else None
    if bad is not None:
        raise ValueError(
            f"has the character U+{ord(bad.group()):04X} at index {bad.start()}, which the chat "
            "queue cannot carry (lone surrogates, U+FFFE and U+FFFF); remove or replace it"
        )
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is only whitespace; send the text of the question")
    return value


QueueableText = Annotated[
    str, Field(min_length=1), BeforeValidator(_queueable), AfterValidator(_not_blank)
]


class ChatMessageAction(_Model):
    action: Literal["chat_message"]
    conversation_id: SqsId
    content: QueueableText
    client_message_id: SqsId | None = None


class PingAction(_Model):
    action: Literal["ping"]


InboundAction = Annotated[Union[ChatMessageAction, PingAction], Field(discriminator="action")]
INBOUND_ADAPTER: TypeAdapter[ChatMessageAction | PingAction] = TypeAdapter(
    InboundAction,  # type: ignore[arg-type, unused-ignore]
    config=ConfigDict(defer_build=True),
)


class ChatQueueMessage(_Model):
    """The chat queue's message body: what the ``chat_message`` handler sends to SQS and a
    responder (the RAG stack, the local demo responder) receives."""

    connection_id: str
    user_id: str
    conversation_id: str
    content: str
    # The client's id, or API Gateway's messageId when the client sent none: the answer's
    # ``inReplyTo``.
    client_message_id: str
    message_id: str
    received_at: int = Field(description="epoch milliseconds")


# --- Outbound -----------------------------------------------------------------------------


class _Frame(_Model):
    timestamp: str = Field(default_factory=utc_timestamp)

    def to_json(self) -> str:
        """The wire form, checked against the 128 KB message limit before anything is sent."""
        return checked_size(self.model_dump_json(by_alias=True, exclude_none=True))


class ChatResponse(_Frame):
    type: Literal["chat_response"] = "chat_response"
    conversation_id: str
    message_id: str
    content: str
    done: bool = False
    sequence: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    in_reply_to: str | None = Field(default=None, alias="inReplyTo")


class TypingIndicator(_Frame):
    type: Literal["typing_indicator"] = "typing_indicator"
    conversation_id: str
    is_typing: bool
    in_reply_to: str | None = Field(default=None, alias="inReplyTo")


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    retryable: bool = False
    retry_after_ms: int | None = None
    request_id: str | None = None
    # Echoed so a client knows which of its chat messages was NOT queued and can re-send it.
    client_message_id: str | None = None


class SystemFrame(_Frame):
    type: Literal["system"] = "system"
    event: SystemEvent
    message: str | None = None
    data: dict[str, Any] | None = None


OutboundFrame = Annotated[
    Union[ChatResponse, TypingIndicator, ErrorFrame, SystemFrame], Field(discriminator="type")
]
OUTBOUND_ADAPTER: TypeAdapter[ChatResponse | TypingIndicator | ErrorFrame | SystemFrame] = (
    TypeAdapter(OutboundFrame, config=ConfigDict(defer_build=True))  # type: ignore[arg-type, unused-ignore]
)
Frame = Union[ChatResponse, TypingIndicator, ErrorFrame, SystemFrame]


def parse_frame(text: str | bytes) -> Frame:
    """Parse an outbound frame (what a client receives); raises pydantic's ValidationError."""
    return OUTBOUND_ADAPTER.validate_json(text)


# --- Helper constructors (the original design's createX helpers) --------------------------


def new_message_id() -> str:
    return uuid4().hex


def chat_response(
    conversation_id: str,
    content: str,
    *,
    message_id: str | None = None,
    done: bool = False,
    sequence: int = 0,
    metadata: dict[str, Any] | None = None,
    in_reply_to: str | None = None,
) -> ChatResponse:
    return ChatResponse(
        conversation_id=conversation_id,
        message_id=message_id or new_message_id(),
        content=content,
        done=done,
        sequence=sequence,
        metadata=metadata or {},
        in_reply_to=in_reply_to,
    )


def typing_indicator(
    conversation_id: str, is_typing: bool, *, in_reply_to: str | None = None
) -> TypingIndicator:
    return TypingIndicator(
        conversation_id=conversation_id, is_typing=is_typing, in_reply_to=in_reply_to
    )


def error_frame(
    code: ErrorCode,
    message: str,
    *,
    retryable: bool = False,
    retry_after_ms: int | None = None,
    request_id: str | None = None,
    client_message_id: str | None = None,
) -> ErrorFrame:
    return ErrorFrame(
        code=code,
        message=message,
        retryable=retryable,
        retry_after_ms=retry_after_ms,
        request_id=request_id,
        client_message_id=client_message_id,
    )


def system_frame(
    event: SystemEvent, message: str | None = None, data: dict[str, Any] | None = None
) -> SystemFrame:
    return SystemFrame(event=event, message=message, data=data)


def describe_validation_error(exc: Exception) -> str:
    """One line naming each bad field and what it must be, for an ``error`` frame."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for item in errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in item.get("loc", ())) or "body"
        parts.append(f"{location}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)
