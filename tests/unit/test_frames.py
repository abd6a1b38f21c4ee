"""runtime.frames: the message handler's path without pydantic answers as the models do.

Each case is decided twice, by ``runtime.frames`` and by the pydantic models of
``runtime.messages`` (the contract ``protocol/rag-websocket.schema.json`` is generated from),
and the two must agree: same action read, same refusal, same bytes written.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from runtime import frames, schema
from runtime.frames import (
    BadRequest,
    ChatMessage,
    ChatQueueBody,
    ErrorCode,
    MessageTooLargeError,
    Ping,
    SystemAnswer,
    SystemEvent,
    parse_body,
)
from runtime.messages import (
    INBOUND_ADAPTER,
    ChatMessageAction,
    ChatQueueMessage,
    SystemFrame,
    describe_validation_error,
)

TIMESTAMP = "2026-12-02T00:00:00.000Z"


@pytest.mark.parametrize(
    ("body", "code", "hint"),
    [
        ("", ErrorCode.BAD_REQUEST, "empty"),
        ("{", ErrorCode.BAD_REQUEST, "not valid JSON"),
        ("[]", ErrorCode.BAD_REQUEST, "JSON object"),
        ('{"action":"dance"}', ErrorCode.UNKNOWN_ACTION, "chat_message, ping"),
        ('{"action":"chat_message"}', ErrorCode.BAD_REQUEST, "conversationId"),
    ],
)
def test_parse_body_names_what_is_wrong_with_an_inbound_frame(
    body: str, code: ErrorCode, hint: str
) -> None:
    with pytest.raises(BadRequest, match=hint) as raised:
        parse_body(body)
    assert raised.value.code is code


def test_parse_body_reads_the_action() -> None:
    assert parse_body('{"action":"ping"}') == Ping()
    assert parse_body(
        '{"action":"chat_message","conversationId":"c1","content":"hi","clientMessageId":"m1"}'
    ) == ChatMessage("c1", "hi", "m1")


# --- inbound: the same action or the same refusal -------------------------------------------

printable_ids = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=130
)
odd_ids = st.one_of(
    st.text(max_size=5),
    st.sampled_from(["", "a\n", "a b", "é", "x" * 128, "x" * 129]),
    st.none(),
    st.integers(),
    st.booleans(),
    st.lists(st.text(max_size=2), max_size=2),
)
odd_contents = st.one_of(
    st.sampled_from(["", " ", "\t\n\u3000\r", "ok \ufffe", "\ud800 x", "a\uffff", "\udc00"]),
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
)
# Mostly frames one field away from valid, so that each check is met and missed often.
chat_frames = st.fixed_dictionaries(
    {
        "action": st.just("chat_message"),
        "conversationId": printable_ids | printable_ids | odd_ids,
        "content": st.text() | st.text() | odd_contents,
    },
    optional={
        "clientMessageId": printable_ids | odd_ids,
        "conversation_id": printable_ids | odd_ids,
        "client_message_id": printable_ids | odd_ids,
        "extra": st.text(max_size=3),
    },
)


def _as_pydantic_reads_it(data: dict[str, Any]) -> ChatMessage | str:
    """What ChatMessageAction makes of ``data``: the action, or the refusal's description."""
    try:
        model = INBOUND_ADAPTER.validate_python(data)
    except ValidationError as exc:
        return describe_validation_error(exc)
    assert isinstance(model, ChatMessageAction)
    return ChatMessage(model.conversation_id, model.content, model.client_message_id)


def _chat(**fields: object) -> dict[str, object]:
    return {"action": "chat_message", "conversationId": "c", "content": "hi", **fields}


@settings(max_examples=500)
@given(data=chat_frames)
@example(data=_chat())
@example(data=_chat(clientMessageId="m-1"))
@example(data=_chat(clientMessageId=None))
@example(data=_chat(content=" \t\u3000"))
@example(data=_chat(content="ok \ufffe"))
@example(data=_chat(content="\ud800 x"))
@example(data=_chat(content=5))
@example(data=_chat(conversationId="a\n"))
@example(data=_chat(conversationId="x" * 129))
@example(data=_chat(clientMessageId=7))
@example(data=_chat(clientMessageId=""))
@example(data=_chat(conversation_id="d"))
@example(data=_chat(client_message_id="m-2"))
def test_a_chat_message_is_read_or_refused_as_the_model_does(data: dict[str, Any]) -> None:
    expected = _as_pydantic_reads_it(data)
    if isinstance(expected, ChatMessage):
        assert parse_body(json.dumps(data)) == expected
        return
    with pytest.raises(BadRequest) as refused:
        parse_body(json.dumps(data))
    assert refused.value.code is ErrorCode.BAD_REQUEST
    assert f"invalid chat_message: {expected} (" in str(refused.value)


@given(data=st.dictionaries(st.text(max_size=20), st.text(max_size=3) | st.integers()))
def test_any_ping_is_read_as_the_model_reads_it(data: dict[str, Any]) -> None:
    data["action"] = "ping"
    assert type(INBOUND_ADAPTER.validate_python(data)).__name__ == "PingAction"
    assert parse_body(json.dumps(data)) == Ping()


def test_a_plain_chat_message_is_read_without_the_models() -> None:
    """The common case never reaches pydantic (the cold start test pins that it is not even
    imported); a frame the plain check cannot vouch for always does."""
    plain = {"action": "chat_message", "conversationId": "c", "content": "hi"}
    assert frames._plainly_valid_chat(plain) == ChatMessage("c", "hi")
    for doubtful in (
        {**plain, "content": " "},
        {**plain, "conversation_id": "d"},
        {**plain, "clientMessageId": 7},
    ):
        assert frames._plainly_valid_chat(doubtful) is None


# --- outbound: the same bytes or the same error ---------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def _outcome(write: Any) -> str:
    try:
        return str(write())
    except Exception as exc:
        return f"raised {type(exc).__name__}"


@given(
    event=st.sampled_from(SystemEvent),
    data=st.none() | st.dictionaries(st.text(), json_values, max_size=4),
)
def test_a_system_answer_is_written_as_the_model_writes_it(
    event: SystemEvent, data: dict[str, Any] | None
) -> None:
    ours = SystemAnswer(event, data, timestamp=TIMESTAMP)
    model = SystemFrame(timestamp=TIMESTAMP, event=event, data=data)
    assert _outcome(ours.to_json) == _outcome(model.to_json)


def test_a_system_answer_over_the_message_limit_is_refused_as_the_model_refuses_it() -> None:
    data = {"content": "€" * (schema.MAX_MESSAGE_BYTES // 3)}
    with pytest.raises(MessageTooLargeError):
        SystemAnswer(SystemEvent.ACCEPTED, data).to_json()
    with pytest.raises(MessageTooLargeError):
        SystemFrame(event=SystemEvent.ACCEPTED, data=data).to_json()


queue_strings = st.text() | st.sampled_from(["\ud800", "a\x00b", '"\\', "\u2028"])
queue_values = queue_strings | st.integers() | st.none() | st.booleans() | st.floats()


@given(
    fields=st.fixed_dictionaries(
        {
            "connection_id": queue_strings | st.integers(),
            "user_id": queue_strings,
            "conversation_id": queue_strings,
            "content": queue_strings,
            "client_message_id": queue_strings,
            "message_id": queue_values,
            "received_at": st.integers() | queue_values,
        }
    )
)
def test_a_queue_body_is_written_as_the_model_writes_it(fields: dict[str, Any]) -> None:
    """Refused where the model refuses (before anything is sent), then the same bytes, or the
    same serialization error."""
    try:
        model = ChatQueueMessage(**fields)
    except ValidationError:
        with pytest.raises(ValidationError):
            ChatQueueBody.of(**fields)
        return
    body = ChatQueueBody.of(**fields)
    assert _outcome(body.to_json) == _outcome(lambda: model.model_dump_json(by_alias=True))


def test_the_queue_body_has_the_models_fields_in_the_models_order() -> None:
    declared = [(name, wire) for name, wire, _ in frames._QUEUE_FIELDS]
    assert declared == [
        (name, field.alias) for name, field in ChatQueueMessage.model_fields.items()
    ]
