from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from runtime import schema
from runtime.messages import (
    INBOUND_ADAPTER,
    ChatMessageAction,
    ChatResponse,
    ErrorCode,
    ErrorFrame,
    MessageTooLargeError,
    PingAction,
    SystemEvent,
    SystemFrame,
    TypingIndicator,
    chat_response,
    error_frame,
    parse_frame,
    system_frame,
    typing_indicator,
)


def test_inbound_actions_are_discriminated_on_action() -> None:
    chat = INBOUND_ADAPTER.validate_json(
        '{"action":"chat_message","conversationId":"c1","content":"hi","clientMessageId":"m1"}'
    )
    assert isinstance(chat, ChatMessageAction)
    assert (chat.conversation_id, chat.content, chat.client_message_id) == ("c1", "hi", "m1")
    assert isinstance(INBOUND_ADAPTER.validate_json('{"action":"ping"}'), PingAction)


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "chat_message", "conversationId": "", "content": "x"},
        {"action": "chat_message", "conversationId": "a" * 129, "content": "x"},
        {"action": "chat_message", "conversationId": "has space", "content": "x"},
        {"action": "chat_message", "conversationId": "ünïcode", "content": "x"},
        {"action": "chat_message", "conversationId": "c", "content": ""},
        {"action": "chat_message", "conversationId": "c", "content": " "},
        {"action": "chat_message", "conversationId": "c", "content": "\t\n\u3000\r"},
        {"action": "chat_message", "conversationId": "c", "content": "a\uffff"},
        {"action": "chat_message", "conversationId": "c", "content": "\udc00"},
        {"action": "chat_message", "conversationId": "c", "content": 5},
        {"action": "chat_message", "conversationId": "c", "content": "x", "clientMessageId": ""},
        {"action": "nope"},
    ],
)
def test_invalid_inbound_is_rejected(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        INBOUND_ADAPTER.validate_python(payload)


def test_conversation_id_accepts_every_sqs_group_id_character() -> None:
    allowed = "".join(chr(c) for c in range(0x21, 0x7F))[: schema.SQS_ID_MAX_LENGTH]
    chat = INBOUND_ADAPTER.validate_python(
        {"action": "chat_message", "conversationId": allowed, "content": "x"}
    )
    assert isinstance(chat, ChatMessageAction)
    assert chat.conversation_id == allowed


def test_helpers_build_camel_case_frames_with_timestamps() -> None:
    frame = json.loads(chat_response("c1", "hello", message_id="m1", sequence=3).to_json())
    assert frame["type"] == "chat_response"
    assert frame["conversationId"] == "c1"
    assert frame["messageId"] == "m1"
    assert frame["sequence"] == 3
    assert frame["done"] is False
    assert frame["metadata"] == {}
    assert frame["timestamp"].endswith("Z")

    typing = json.loads(typing_indicator("c1", True).to_json())
    assert typing == {
        "type": "typing_indicator",
        "conversationId": "c1",
        "isTyping": True,
        "timestamp": typing["timestamp"],
    }

    err = json.loads(
        error_frame(
            ErrorCode.RATE_LIMITED, "slow down", retryable=True, retry_after_ms=500
        ).to_json()
    )
    assert err["code"] == "RATE_LIMITED"
    assert err["retryable"] is True
    assert err["retryAfterMs"] == 500
    assert "requestId" not in err

    sys_frame = json.loads(
        system_frame(SystemEvent.ACCEPTED, data={"clientMessageId": "x"}).to_json()
    )
    assert sys_frame["event"] == "accepted"
    assert sys_frame["data"] == {"clientMessageId": "x"}


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (chat_response("c", "x"), ChatResponse),
        (typing_indicator("c", False), TypingIndicator),
        (error_frame(ErrorCode.BAD_REQUEST, "bad"), ErrorFrame),
        (system_frame(SystemEvent.PONG), SystemFrame),
    ],
)
def test_outbound_frames_round_trip(frame: object, kind: type) -> None:
    parsed = parse_frame(frame.to_json())  # type: ignore[attr-defined]
    assert isinstance(parsed, kind)
    assert parsed == frame


def test_oversized_frame_raises_a_typed_error_naming_the_limit() -> None:
    big = chat_response("c", "x" * schema.MAX_MESSAGE_BYTES)
    with pytest.raises(MessageTooLargeError) as caught:
        big.to_json()
    assert caught.value.size > schema.MAX_MESSAGE_BYTES
    assert str(schema.MAX_MESSAGE_BYTES) in str(caught.value)


def test_multibyte_content_is_measured_in_bytes() -> None:
    # 50,000 three-byte characters: under the limit in characters, over it in bytes.
    with pytest.raises(MessageTooLargeError):
        chat_response("c", "€" * 50_000).to_json()


# SendMessage's allowed characters (API_SendMessage, MessageBody):
# #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF
SQS_BODY = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


@given(content=st.text(min_size=1))
def test_content_that_validates_makes_a_queue_body_sqs_accepts(content: str) -> None:
    """https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html:
    a body with a character outside the set fails with InvalidMessageContents. Content is
    either refused here or, once JSON-encoded as the handler does, entirely inside the set."""
    try:
        chat = INBOUND_ADAPTER.validate_python(
            {"action": "chat_message", "conversationId": "c", "content": content}
        )
    except ValidationError:
        assert not content.strip() or re.search(schema.SQS_UNQUEUEABLE_CHARACTERS, content)
        return
    assert isinstance(chat, ChatMessageAction)
    body = json.dumps({"content": chat.content}, ensure_ascii=False)
    assert SQS_BODY.fullmatch(body)
    assert json.loads(body)["content"] == content


def test_unqueueable_content_is_refused_naming_the_character_and_where() -> None:
    with pytest.raises(ValidationError) as caught:
        INBOUND_ADAPTER.validate_python(
            {"action": "chat_message", "conversationId": "c", "content": "ok \ufffe"}
        )
    assert "U+FFFE at index 3" in str(caught.value)
