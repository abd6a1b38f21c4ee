from __future__ import annotations

import io
import json
import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import schema
from runtime.handlers import connect, disconnect, message
from tests.conftest import AwsResources
from tests.support import chat_event, load_event

CONNECTION_ID = "BFHPhfCWIAMCKlQ="


def now_ms() -> int:
    return int(time.time() * 1000)


def connect_event(user: str | None = "user-123", connection_id: str = CONNECTION_ID) -> Any:
    authorizer = {"principalId": user, "userId": user} if user else {}
    return load_event(
        "connect", connectionId=connection_id, connectedAt=now_ms(), authorizer=authorizer
    )


def frame_of(result: dict[str, Any]) -> dict[str, Any]:
    assert result["statusCode"] == 200
    frame: dict[str, Any] = json.loads(result["body"])
    assert "timestamp" in frame
    return frame


def queued(aws: AwsResources) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not batch:
            return bodies
        for item in batch:
            bodies.append(json.loads(item["Body"]))
            sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=item["ReceiptHandle"])


@pytest.fixture
def connected(aws: AwsResources) -> AwsResources:
    assert connect.handler(connect_event(), None)["statusCode"] == 200
    return aws


def chat(content: str = "What is RAG?", **extra: Any) -> dict[str, Any]:
    body = {"action": "chat_message", "conversationId": "conv-1", "content": content, **extra}
    return chat_event(body, connectedAt=now_ms())


# --- $connect / $disconnect ---------------------------------------------------------------


def test_connect_stores_the_row(aws: AwsResources) -> None:
    assert connect.handler(connect_event(), None) == {"statusCode": 200, "body": ""}
    rows = connect.STORE.list_for_user("user-123")
    assert [(r.connection_id, r.user_id) for r in rows] == [(CONNECTION_ID, "user-123")]


def test_connect_uses_principal_id_when_context_has_no_user_id(aws: AwsResources) -> None:
    event = connect_event()
    event["requestContext"]["authorizer"] = {"principalId": "p-1"}
    assert connect.handler(event, None)["statusCode"] == 200
    assert connect.STORE.count_for_user("p-1") == 1


def test_connect_without_identity_is_401(aws: AwsResources) -> None:
    assert connect.handler(connect_event(user=None), None)["statusCode"] == 401
    assert connect.STORE.count_for_user("user-123") == 0


def test_connect_over_the_per_user_limit_is_429(aws: AwsResources) -> None:
    limit = connect.STORE.config.max_connections_per_user
    for n in range(limit):
        assert connect.handler(connect_event(connection_id=f"c{n}="), None)["statusCode"] == 200
    assert connect.handler(connect_event(connection_id="one-too-many"), None)["statusCode"] == 429
    assert connect.STORE.count_for_user("user-123") == limit


def test_connect_store_failure_is_500_and_logged(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    client = boto3.client("dynamodb")
    with Stubber(client) as stub:
        stub.add_client_error(
            "query", "ProvisionedThroughputExceededException", http_status_code=400
        )
        monkeypatch.setattr(connect.STORE, "_client", client)
        assert connect.handler(connect_event(), None)["statusCode"] == 500
    assert "connect failed" in logs.getvalue()


def test_disconnect_deletes_the_row(connected: AwsResources) -> None:
    event = load_event("disconnect", connectionId=CONNECTION_ID)
    assert disconnect.handler(event, None)["statusCode"] == 200
    assert disconnect.STORE.get(CONNECTION_ID) is None


def test_disconnect_is_200_even_when_the_delete_fails(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("dynamodb")
    with Stubber(client) as stub:
        stub.add_client_error("delete_item", "InternalServerError", http_status_code=500)
        monkeypatch.setattr(disconnect.STORE, "_client", client)
        result = disconnect.handler(load_event("disconnect"), None)
    assert result["statusCode"] == 200


# --- chat_message / ping / $default -------------------------------------------------------


def test_ping_answers_pong_and_slides_the_ttl(connected: AwsResources) -> None:
    before = message.STORE.get(CONNECTION_ID)
    assert before is not None
    time.sleep(1.1)
    event = chat_event('{"action":"ping"}', routeKey="ping", connectedAt=now_ms())
    frame = frame_of(message.handler(event, None))
    assert (frame["type"], frame["event"]) == ("system", "pong")
    after = message.STORE.get(CONNECTION_ID)
    assert after is not None
    assert after.ttl > before.ttl


def test_chat_message_is_queued_and_accepted(connected: AwsResources) -> None:
    frame = frame_of(message.handler(chat(clientMessageId="c-42"), None))
    assert frame["type"] == "system"
    assert frame["event"] == "accepted"
    assert frame["data"]["clientMessageId"] == "c-42"
    [body] = queued(connected)
    assert body == {
        "connectionId": CONNECTION_ID,
        "userId": "user-123",
        "conversationId": "conv-1",
        "content": "What is RAG?",
        "clientMessageId": "c-42",
        "messageId": "BFHQLcaQIAMCKlQ=",
        "receivedAt": 1795629605000,
    }


def test_a_resent_client_message_id_is_queued_once(connected: AwsResources) -> None:
    for _ in range(3):
        assert frame_of(message.handler(chat(clientMessageId="same"), None))["event"] == "accepted"
    assert len(queued(connected)) == 1


def test_without_client_message_id_the_api_gateway_message_id_deduplicates(
    connected: AwsResources,
) -> None:
    frame = frame_of(message.handler(chat(), None))
    assert frame["data"]["clientMessageId"] == "BFHQLcaQIAMCKlQ="
    assert queued(connected)[0]["clientMessageId"] == "BFHQLcaQIAMCKlQ="


def test_rate_limited_message_is_not_queued(
    connected: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = message.STORE.config.messages_per_minute
    frames = [
        frame_of(message.handler(chat(clientMessageId=f"m{n}"), None)) for n in range(limit + 1)
    ]
    # a window boundary inside the burst would reset the counter: allow one extra accept
    limited = [f for f in frames if f["type"] == "error"]
    if not limited:
        limited = [frame_of(message.handler(chat(clientMessageId="extra"), None))]
    [last] = limited[-1:]
    assert last["code"] == "RATE_LIMITED"
    assert last["retryable"] is True
    assert 0 < last["retryAfterMs"] <= 60_000
    assert len(queued(connected)) == len([f for f in frames if f["type"] == "system"])


def test_unknown_connection_gets_an_error_and_nothing_is_queued(aws: AwsResources) -> None:
    frame = frame_of(message.handler(chat(), None))
    assert frame["code"] == "UNKNOWN_CONNECTION"
    assert queued(aws) == []


def test_queue_failure_is_a_retryable_error_echoing_the_client_message_id(
    connected: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("sqs")
    with Stubber(client) as stub:
        stub.add_client_error("send_message", "ServiceUnavailable", http_status_code=503)
        monkeypatch.setattr(message.aws, "sqs", lambda: client)
        frame = frame_of(message.handler(chat(clientMessageId="keep-me"), None))
    assert frame["type"] == "error"
    assert frame["code"] == "SERVICE_UNAVAILABLE"
    assert frame["retryable"] is True
    assert frame["clientMessageId"] == "keep-me"


def test_store_failure_is_a_retryable_error(
    connected: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("dynamodb")
    with Stubber(client) as stub:
        stub.add_client_error("update_item", "ThrottlingException", http_status_code=400)
        monkeypatch.setattr(message.STORE, "_client", client)
        frame = frame_of(message.handler(chat(), None))
    assert (frame["code"], frame["retryable"]) == ("SERVICE_UNAVAILABLE", True)
    assert queued(connected) == []


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ("not json", "BAD_REQUEST", "not valid JSON"),
        ("", "BAD_REQUEST", "empty"),
        (None, "BAD_REQUEST", "empty"),
        ("[1, 2]", "BAD_REQUEST", "JSON object"),
        ('{"action":"dance"}', "UNKNOWN_ACTION", "'dance'"),
        ('{"content":"no action"}', "UNKNOWN_ACTION", "chat_message, ping"),
        ('{"action":"chat_message","conversationId":"c"}', "BAD_REQUEST", "content"),
        (
            '{"action":"chat_message","conversationId":"bad id","content":"x"}',
            "BAD_REQUEST",
            "conversationId",
        ),
        ('{"action":"chat_message","conversationId":"c","content":7}', "BAD_REQUEST", "content"),
        ("[" * 60_000 + "]" * 60_000, "BAD_REQUEST", "not valid JSON"),
        ("x" * (schema.MAX_MESSAGE_BYTES + 1), "MESSAGE_TOO_LARGE", "131072"),
    ],
)
def test_bad_bodies_get_an_error_frame_naming_the_problem(
    connected: AwsResources, body: str | None, code: str, names: str
) -> None:
    event = chat_event(body, routeKey="$default", connectedAt=now_ms())
    frame = frame_of(message.handler(event, None))
    assert frame["type"] == "error"
    assert frame["code"] == code
    assert names in frame["message"]
    assert frame["requestId"] == "BFHQLHnbIAMFbSg="
    assert queued(connected) == []


def test_deeply_nested_json_in_an_extra_field_is_harmless(connected: AwsResources) -> None:
    body = '{"action":"ping","x":' + "[" * 5000 + "]" * 5000 + "}"
    frame = frame_of(message.handler(chat_event(body, routeKey="ping"), None))
    assert frame["type"] in {"system", "error"}


def test_logs_carry_ids_but_no_content_at_info(connected: AwsResources, logs: io.StringIO) -> None:
    message.handler(chat("a secret question"), None)
    out = logs.getvalue()
    records = [json.loads(line) for line in out.splitlines() if line.startswith('{"level"')]
    queued_record = next(r for r in records if r["message"] == "chat message queued")
    assert queued_record["connectionId"] == CONNECTION_ID
    assert queued_record["routeKey"] == "chat_message"
    assert queued_record["requestId"] == "BFHQLHnbIAMFbSg="
    assert "a secret question" not in out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
bodies = (
    st.text()
    | st.binary().map(lambda b: b.decode("latin-1"))
    | json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {"action": st.sampled_from(["chat_message", "ping", "other"])},
        optional={
            "conversationId": json_values,
            "content": json_values,
            "clientMessageId": st.text(),
        },
    ).map(json.dumps)
)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_any_body_gets_one_well_formed_frame(connected: AwsResources, body: str) -> None:
    result = message.handler(chat_event(body, routeKey="$default", connectedAt=now_ms()), None)
    assert result["statusCode"] == 200
    frame = json.loads(result["body"])
    assert frame["type"] in {"system", "error"}
    if frame["type"] == "error":
        assert frame["code"] in {"BAD_REQUEST", "UNKNOWN_ACTION", "RATE_LIMITED"}
        assert frame["message"]
