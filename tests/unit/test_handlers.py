from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.events import now_ms
from runtime import schema
from runtime.config import StoreConfig
from runtime.handlers import connect, disconnect, message
from runtime.handlers._common import RequestContext
from tests.conftest import MockedAws
from tests.support import (
    CONNECTION_ID,
    TEST_ENV,
    chat_event,
    chat_message,
    connect_event,
    drain_queue,
    lambda_context,
    load_event,
    message_frame,
)
from tests.unit.test_connections import user_slots


def queued(aws: MockedAws) -> list[dict[str, Any]]:
    return [json.loads(item["Body"]) for item in queued_messages(aws)]


def queued_messages(aws: MockedAws) -> list[dict[str, Any]]:
    return drain_queue(boto3.client("sqs"), aws.queue_url)


def metrics(capsys: pytest.CaptureFixture[str]) -> Counter[str]:
    """Every metric the handlers flushed as EMF since the last call, summed by name."""
    totals: Counter[str] = Counter()
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' not in line:
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals


def unexpected_failures(capsys: pytest.CaptureFixture[str]) -> float:
    """The UnexpectedFailures the handlers flushed as EMF since the last call."""
    return metrics(capsys)[schema.UNEXPECTED_FAILURES_METRIC]


# --- reading the event ---------------------------------------------------------------------

CAPTURED_EVENTS = (
    "powertools/apiGatewayWebSocketApiConnect",
    "powertools/apiGatewayWebSocketApiMessage",
    "powertools/apiGatewayWebSocketApiDisconnect",
    "aws-lambda-go/apigw-websocket-request-send-message",
    "aws-lambda-go/apigw-websocket-request-disconnect",
    "connect",
    "chat_message",
    "disconnect",
)


@pytest.mark.parametrize("name", CAPTURED_EVENTS)
def test_the_request_context_reads_what_powertools_reads(name: str) -> None:
    """The handlers read the event without Powertools' data classes (their package imports every
    event class at cold start); on every capture each field reads as Powertools reads it."""
    event = load_event(name)
    ours = RequestContext(event)
    theirs = APIGatewayWebSocketEvent(event).request_context
    for field in (
        "connection_id",
        "request_id",
        "message_id",
        "disconnect_status_code",
        "disconnect_reason",
    ):
        assert getattr(ours, field) == getattr(theirs, field), field
    for key in ("connectedAt", "requestTimeEpoch", "absent"):
        assert ours.get(key) == theirs.get(key), key


@pytest.mark.parametrize("field", ["connectionId", "requestId"])
def test_a_request_context_without_a_required_id_raises_key_error_as_powertools_does(
    field: str,
) -> None:
    event = load_event("chat_message")
    del event["requestContext"][field]
    attribute = {"connectionId": "connection_id", "requestId": "request_id"}[field]
    for context in (RequestContext(event), APIGatewayWebSocketEvent(event).request_context):
        with pytest.raises(KeyError, match=field):
            getattr(context, attribute)
    with pytest.raises(KeyError, match="requestContext"):
        RequestContext({"body": "{}"})


# --- $connect / $disconnect ---------------------------------------------------------------


def test_connect_stores_the_row(aws: MockedAws) -> None:
    assert connect.handler(connect_event(), lambda_context("connect")) == {
        "statusCode": 200,
        "body": "",
    }
    rows = connect.STORE.list_for_user("user-123")
    assert [(r.connection_id, r.user_id) for r in rows] == [(CONNECTION_ID, "user-123")]


def test_connect_uses_principal_id_when_context_has_no_user_id(aws: MockedAws) -> None:
    event = connect_event()
    event["requestContext"]["authorizer"] = {"principalId": "p-1"}
    assert connect.handler(event, lambda_context("connect"))["statusCode"] == 200
    assert connect.STORE.count_for_user("p-1") == 1


def test_connect_without_identity_is_401(aws: MockedAws) -> None:
    assert connect.handler(connect_event(user=None), lambda_context("connect"))["statusCode"] == 401
    assert connect.STORE.count_for_user("user-123") == 0


def test_connect_over_the_per_user_limit_is_429(aws: MockedAws) -> None:
    limit = connect.STORE.config.max_connections_per_user
    for n in range(limit):
        assert (
            connect.handler(connect_event(connection_id=f"c{n}="), lambda_context("connect"))[
                "statusCode"
            ]
            == 200
        )
    assert (
        connect.handler(connect_event(connection_id="one-too-many"), lambda_context("connect"))[
            "statusCode"
        ]
        == 429
    )
    assert connect.STORE.count_for_user("user-123") == limit


@pytest.mark.usefixtures("serializable_transactions")
def test_eight_simultaneous_connects_of_one_user_against_a_limit_of_three(
    aws: MockedAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        connect.STORE, "config", StoreConfig(aws.table_name, max_connections_per_user=3)
    )
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def connect_one(n: int) -> None:
        event = connect_event(connection_id=f"conn-{n}=")
        barrier.wait()
        statuses.append(connect.handler(event, lambda_context("connect"))["statusCode"])

    threads = [threading.Thread(target=connect_one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 3 + [429] * 5
    assert len(connect.STORE.list_for_user("user-123")) == 3
    assert unexpected_failures(capsys) == 0  # a refused connect is not a failure


def test_a_first_connect_is_one_aws_call_or_three_with_an_instance_id(aws: MockedAws) -> None:
    """A reconnect of a client instance adds a PutItem and a DeleteConnection (tested below)."""
    calls: list[str] = []
    client = boto3.client("dynamodb")
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    connect.STORE._client = client
    try:
        assert connect.handler(connect_event(), lambda_context("connect"))["statusCode"] == 200
        assert calls == ["TransactWriteItems"]
        calls.clear()
        # With an instance id, one PutItem before (the instance's item; a first connect of the
        # instance has no earlier connection to close) and one GetItem after: whether a newer
        # connection of the instance replaced this one meanwhile.
        event = instance_connect_event("tab-1", "A=")
        assert connect.handler(event, lambda_context("connect"))["statusCode"] == 200
    finally:
        connect.STORE._client = None
    assert calls == ["PutItem", "TransactWriteItems", "GetItem"]


def test_connect_store_failure_is_500_logged_and_counted(
    aws: MockedAws,
    monkeypatch: pytest.MonkeyPatch,
    logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = boto3.client("dynamodb")
    with Stubber(client) as stub:
        stub.add_client_error(
            "transact_write_items", "ProvisionedThroughputExceededException", http_status_code=400
        )
        monkeypatch.setattr(connect.STORE, "_client", client)
        assert connect.handler(connect_event(), lambda_context("connect"))["statusCode"] == 500
    assert "connect failed" in logs.getvalue()
    assert unexpected_failures(capsys) == 1


def instance_connect_event(instance_id: str, connection_id: str, user: str = "user-123") -> Any:
    """A ``$connect`` whose URL also carries ``?instanceId=``: API Gateway passes the query
    string in ``queryStringParameters`` and ``multiValueQueryStringParameters`` of ``$connect``
    (AWS docs, "Set up a $connect route": the route request's query string; our
    ``tests/events/connect.json`` carries the token the same way)."""
    event = connect_event(user, connection_id)
    event["queryStringParameters"][schema.INSTANCE_QUERY_PARAMETER] = instance_id
    event["multiValueQueryStringParameters"][schema.INSTANCE_QUERY_PARAMETER] = [instance_id]
    return event


def earlier_and_newer(instance_id: str = "tab-1") -> tuple[Any, Any]:
    """The ``$connect`` events of A and B, two connections of one client instance, API Gateway
    accepting B 2 s after A (``connectedAt`` orders them, whatever order they run in)."""
    earlier = instance_connect_event(instance_id, "A=")
    newer = instance_connect_event(instance_id, "B=")
    newer["requestContext"]["connectedAt"] = earlier["requestContext"]["connectedAt"] + 2_000
    return earlier, newer


def assert_refused_as_superseded(
    result: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused (409, counted, nothing failed) and B, the newer connection, alone stored."""
    assert result["statusCode"] == 409
    assert "newer connection" in result["body"]
    assert [r.connection_id for r in connect.STORE.list_for_user("user-123")] == ["B="]
    emitted = metrics(capsys)
    assert emitted["SupersededConnectionsRefused"] == 1
    assert emitted[schema.UNEXPECTED_FAILURES_METRIC] == 0


def answer_gone(management: Stubber, times: int = 1) -> None:
    """The next ``times`` DeleteConnection calls answer 410 (``GoneException``)."""
    for _ in range(times):
        management.add_client_error(
            "delete_connection", "GoneException", http_status_code=410, expected_params=None
        )


@pytest.fixture
def management(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The connect handler's management API client, stubbed: a call not scripted fails."""
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=TEST_ENV[schema.ENV_MANAGEMENT_ENDPOINT]
    )
    endpoints: list[str] = []

    def management_api(endpoint_url: str) -> Any:
        endpoints.append(endpoint_url)
        return client

    monkeypatch.setattr(connect.aws, "management_api", management_api)
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()
    assert set(endpoints) <= {TEST_ENV[schema.ENV_MANAGEMENT_ENDPOINT]}


def test_a_reconnect_of_the_same_client_instance_closes_its_previous_connection(
    aws: MockedAws, management: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client that gave up on a socket API Gateway still holds reconnects with the same
    ``instanceId``; ``$connect`` closes the old socket (DeleteConnection, ``DELETE
    @connections/{id}``: "Delete the connection with the provided id", the management API's
    reference), so a post to it answers 410 and the answer moves to the new connection."""
    context = lambda_context("connect")
    assert connect.handler(instance_connect_event("tab-1", "A="), context)["statusCode"] == 200
    management.add_response("delete_connection", {}, {"ConnectionId": "A="})
    assert connect.handler(instance_connect_event("tab-1", "B="), context)["statusCode"] == 200
    management.assert_no_pending_responses()
    # Another tab of the same user, and a retried $connect of B, close nothing.
    assert connect.handler(instance_connect_event("tab-2", "C="), context)["statusCode"] == 200
    assert connect.handler(instance_connect_event("tab-1", "B="), context)["statusCode"] == 200
    # Another user with the same instance id cannot close user-123's connection.
    event = instance_connect_event("tab-1", "D=", user="mallory")
    assert connect.handler(event, context)["statusCode"] == 200
    assert sorted(r.connection_id for r in connect.STORE.list_for_user("user-123")) == [
        "A=",
        "B=",
        "C=",
    ]  # A's row goes when API Gateway runs its $disconnect
    # Frames A missed go to B, not to C (another tab): runtime.redirect reads this.
    assert connect.STORE.replacement_of("A=") == "B="
    assert connect.STORE.replacement_of("C=") is None
    emitted = metrics(capsys)
    assert emitted["ReplacedConnectionsClosed"] == 1
    assert emitted[schema.UNEXPECTED_FAILURES_METRIC] == 0


def test_a_reconnect_at_the_per_user_limit_takes_the_slot_of_the_connection_it_closed(
    aws: MockedAws, management: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeleteConnection returns before API Gateway runs the closed connection's $disconnect,
    which is "a best-effort event" (AWS docs, "Working with $connect and $disconnect routes":
    https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-route-keys-connect-disconnect.html),
    so its row and slot are still there when the new row is counted against the limit."""
    monkeypatch.setattr(
        connect.STORE, "config", StoreConfig(aws.table_name, max_connections_per_user=2)
    )
    context = lambda_context("connect")
    assert connect.handler(instance_connect_event("tab-1", "A="), context)["statusCode"] == 200
    assert connect.handler(instance_connect_event("tab-2", "C="), context)["statusCode"] == 200
    management.add_response("delete_connection", {}, {"ConnectionId": "A="})
    assert connect.handler(instance_connect_event("tab-1", "B="), context)["statusCode"] == 200
    # Another tab at the limit is still refused: only the closed connection's slot came free.
    assert connect.handler(instance_connect_event("tab-3", "D="), context)["statusCode"] == 429


def test_a_handshake_finishing_after_the_instance_s_newer_one_is_refused_409(
    aws: MockedAws, management: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client gave up on A's handshake (its $connect slow) and opened B, whose $connect
    finished first. A must not close B: API Gateway's ``connectedAt`` says B is newer, so A is
    refused, stores nothing and closes nothing (the stub answers no DeleteConnection)."""
    context = lambda_context("connect")
    late, newer = earlier_and_newer()
    assert connect.handler(newer, context)["statusCode"] == 200
    assert_refused_as_superseded(connect.handler(late, context), capsys)


def test_a_handshake_replaced_while_its_connect_runs_is_refused_409_and_leaves_no_row(
    aws: MockedAws,
    management: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The client gave up on A's handshake (its $connect slow) and opened B, whose $connect ran
    while A's was still running, after A had recorded itself as the instance's connection. B's
    ``DeleteConnection`` of A finds no open connection A (410, ``GoneException``): "Until
    execution of the integration associated with the $connect route is completed, the upgrade
    request is pending and the actual connection will not be established" (AWS docs, "Manage
    connected users and client apps: $connect and $disconnect routes":
    https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-route-keys-connect-disconnect.html).
    So A's own $connect must refuse it, or A opens afterwards, unknown to the client, and holds
    a slot and a row that broadcasts post into until its idle timeout."""
    context = lambda_context("connect")
    original_add = connect.STORE.add
    abandoned, newer = earlier_and_newer()

    def add_then_newer_connect_runs(connection_id: str, *args: Any, **kwargs: Any) -> Any:
        stored = original_add(connection_id, *args, **kwargs)
        if connection_id == "A=":
            assert connect.handler(newer, context)["statusCode"] == 200
        return stored

    monkeypatch.setattr(connect.STORE, "add", add_then_newer_connect_runs)
    monkeypatch.setattr(connect.time, "sleep", lambda seconds: None)
    answer_gone(management, times=2)  # A's row is stored and young: B tries once more
    assert_refused_as_superseded(connect.handler(abandoned, context), capsys)
    assert user_slots(aws, "user-123") == {"B="}  # A's slot in the user's set is released too


def test_a_handshake_that_opens_just_after_its_replacement_is_recorded_is_closed_on_a_retry(
    aws: MockedAws,
    management: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A's $connect read that nothing had replaced it and returned 200, but API Gateway had not
    finished its upgrade when B's DeleteConnection came: 410 (API Gateway opens a connection
    only once $connect has completed; AWS docs, "Manage connected users and client apps:
    $connect and $disconnect routes"). A's row is stored and A is younger than the integration
    timeout, so B pauses and tries once more, and closes A."""
    context = lambda_context("connect")
    abandoned, newer = earlier_and_newer()
    assert connect.handler(abandoned, context)["statusCode"] == 200
    pauses: list[float] = []
    monkeypatch.setattr(connect.time, "sleep", pauses.append)
    answer_gone(management)
    management.add_response("delete_connection", {}, {"ConnectionId": "A="})
    assert connect.handler(newer, context)["statusCode"] == 200
    assert pauses == [connect.OPENING_RETRY_PAUSE_SECONDS]
    emitted = metrics(capsys)
    assert emitted["ReplacedConnectionsClosed"] == 1
    assert emitted[schema.UNEXPECTED_FAILURES_METRIC] == 0


def test_a_410_is_tried_again_only_for_a_young_connection_whose_row_is_stored(
    aws: MockedAws,
    management: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A's $disconnect has run (its row is gone): the 410 means closed, and B does not pause."""
    context = lambda_context("connect")
    earlier, newer = earlier_and_newer()
    assert connect.handler(earlier, context)["statusCode"] == 200
    connect.STORE.remove("A=")
    pauses: list[float] = []
    monkeypatch.setattr(connect.time, "sleep", pauses.append)
    answer_gone(management)
    assert connect.handler(newer, context)["statusCode"] == 200
    assert pauses == []
    assert unexpected_failures(capsys) == 0


@pytest.mark.parametrize(
    ("age_ms", "tried_again"),
    [
        (schema.INTEGRATION_TIMEOUT_SECONDS * 1000, True),
        (schema.INTEGRATION_TIMEOUT_SECONDS * 1000 + 1, False),
    ],
)
def test_a_410_is_tried_again_only_within_the_integration_timeout(
    aws: MockedAws,
    management: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    age_ms: int,
    tried_again: bool,
) -> None:
    """The boundary ``remove_gone`` keeps rows by (``schema.connecting_cutoff_ms``): A accepted
    exactly the integration timeout before B may still be opening; a millisecond more, not."""
    context = lambda_context("connect")
    earlier, newer = earlier_and_newer()
    newer["requestContext"]["connectedAt"] = earlier["requestContext"]["connectedAt"] + age_ms
    assert connect.handler(earlier, context)["statusCode"] == 200
    pauses: list[float] = []
    monkeypatch.setattr(connect.time, "sleep", pauses.append)
    answer_gone(management)
    if tried_again:
        management.add_response("delete_connection", {}, {"ConnectionId": "A="})
    assert connect.handler(newer, context)["statusCode"] == 200
    assert pauses == ([connect.OPENING_RETRY_PAUSE_SECONDS] if tried_again else [])
    management.assert_no_pending_responses()
    assert unexpected_failures(capsys) == 0


def test_a_retry_that_fails_leaves_the_410_standing(
    aws: MockedAws,
    management: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The second try comes last, once B is stored: its failure is logged, not counted (the
    first answer already said gone), and at the per-user limit A's slot was freed all the
    same."""
    monkeypatch.setattr(
        connect.STORE, "config", StoreConfig(aws.table_name, max_connections_per_user=1)
    )
    context = lambda_context("connect")
    earlier, newer = earlier_and_newer()
    assert connect.handler(earlier, context)["statusCode"] == 200
    monkeypatch.setattr(connect.time, "sleep", lambda seconds: None)
    answer_gone(management)
    management.add_client_error(
        "delete_connection", "ServiceUnavailableException", http_status_code=503
    )
    assert connect.handler(newer, context)["statusCode"] == 200
    assert "could not try closing the previous connection again" in logs.getvalue()
    assert unexpected_failures(capsys) == 0
    assert user_slots(aws, "user-123") == {"B="}


def test_a_failed_check_for_a_replacement_leaves_the_connection_standing(
    aws: MockedAws,
    monkeypatch: pytest.MonkeyPatch,
    logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def unreadable(connection_id: str) -> str | None:
        raise RuntimeError("DynamoDB is unreachable")

    monkeypatch.setattr(connect.STORE, "replacement_of", unreadable)
    result = connect.handler(instance_connect_event("tab-1", "A="), lambda_context("connect"))
    assert result["statusCode"] == 200
    assert connect.STORE.get("A=") is not None
    assert "could not check whether a newer connection" in logs.getvalue()
    assert unexpected_failures(capsys) == 1


@pytest.mark.parametrize(
    ("code", "status", "failures"),
    [("GoneException", 410, 0), ("ForbiddenException", 403, 1)],
)
def test_closing_the_previous_connection_never_fails_the_connect(
    aws: MockedAws,
    management: Stubber,
    logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    code: str,
    status: int,
    failures: int,
) -> None:
    """Already gone (410) is what closing wanted; anything else is logged and counted, and the
    new connection stands either way. A, open for a minute, is past its $connect: a 410 is not
    tried again (the stub answers one call only)."""
    context = lambda_context("connect")
    earlier = instance_connect_event("tab-1", "A=")
    earlier["requestContext"]["connectedAt"] -= 60_000
    connect.handler(earlier, context)
    management.add_client_error(
        "delete_connection", code, http_status_code=status, expected_params=None
    )
    assert connect.handler(instance_connect_event("tab-1", "B="), context)["statusCode"] == 200
    emitted = metrics(capsys)
    assert emitted[schema.UNEXPECTED_FAILURES_METRIC] == failures
    assert emitted["ReplacedConnectionsClosed"] == 0  # none was still open
    logged = "could not close the connection this client instance opened before"
    assert (logged in logs.getvalue()) == bool(failures)
    assert connect.STORE.get("B=") is not None


@pytest.mark.parametrize("instance_id", ["", "tab#1", "x" * 65, "tab 1", "t\u00e4b", "tab-1\n"])
def test_a_malformed_instance_id_is_400_naming_it_and_stores_nothing(
    aws: MockedAws, management: Stubber, instance_id: str
) -> None:
    result = connect.handler(instance_connect_event(instance_id, "A="), lambda_context("connect"))
    assert result["statusCode"] == 400
    assert schema.INSTANCE_QUERY_PARAMETER in result["body"]
    assert "letters, digits" in result["body"]
    assert connect.STORE.count_for_user("user-123") == 0


def test_disconnect_deletes_the_row_and_frees_the_slot(
    connected: MockedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        connect.STORE, "config", StoreConfig(connected.table_name, max_connections_per_user=1)
    )
    assert (
        connect.handler(connect_event(connection_id="second="), lambda_context("connect"))[
            "statusCode"
        ]
        == 429
    )
    event = load_event("disconnect", connectionId=CONNECTION_ID)
    assert disconnect.handler(event, lambda_context("disconnect"))["statusCode"] == 200
    assert disconnect.STORE.get(CONNECTION_ID) is None
    assert (
        connect.handler(connect_event(connection_id="second="), lambda_context("connect"))[
            "statusCode"
        ]
        == 200
    )


def test_disconnect_is_200_even_when_the_delete_fails(
    aws: MockedAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("dynamodb")
    with Stubber(client) as stub:
        stub.add_client_error("delete_item", "InternalServerError", http_status_code=500)
        monkeypatch.setattr(disconnect.STORE, "_client", client)
        result = disconnect.handler(load_event("disconnect"), lambda_context("disconnect"))
    assert result["statusCode"] == 200
    assert unexpected_failures(capsys) == 1


# --- chat_message / ping / $default -------------------------------------------------------


def test_ping_answers_pong_and_records_activity(connected: MockedAws) -> None:
    def last_seen() -> int:
        key = {"S": schema.connection_key(CONNECTION_ID)}
        item = boto3.client("dynamodb").get_item(
            TableName=connected.table_name, Key={"PK": key, "SK": key}
        )["Item"]
        return int(item[schema.ATTR_LAST_SEEN_AT]["N"])

    before = last_seen()
    time.sleep(0.01)
    event = chat_event('{"action":"ping"}', routeKey="ping", connectedAt=now_ms())
    frame = message_frame(event)
    assert (frame["type"], frame["event"]) == ("system", "pong")
    assert last_seen() > before
    row = message.STORE.get(CONNECTION_ID)
    assert row is not None
    assert row.ttl >= time.time() + message.STORE.config.idle_timeout_seconds - 1


def test_chat_message_is_queued_and_accepted(connected: MockedAws) -> None:
    frame = message_frame(chat_message(clientMessageId="c-42"))
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


def test_a_resent_client_message_id_is_queued_once(connected: MockedAws) -> None:
    for _ in range(3):
        assert message_frame(chat_message(clientMessageId="same"))["event"] == "accepted"
    assert len(queued(connected)) == 1


def test_without_client_message_id_the_api_gateway_message_id_deduplicates(
    connected: MockedAws,
) -> None:
    frame = message_frame(chat_message())
    assert frame["data"]["clientMessageId"] == "BFHQLcaQIAMCKlQ="
    [queued_message] = queued_messages(connected)
    assert json.loads(queued_message["Body"])["clientMessageId"] == "BFHQLcaQIAMCKlQ="
    assert queued_message["Attributes"]["MessageDeduplicationId"] == "BFHQLcaQIAMCKlQ="


def test_rate_limited_message_is_not_queued(
    connected: MockedAws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store's clock stands still: a burst that crossed a window boundary (a fresh-clone
    # run's did, at hh:45:00) would start counting again in the new window.
    frozen = time.time()
    monkeypatch.setattr(message.STORE, "_clock", lambda: frozen)
    limit = message.STORE.config.messages_per_minute
    frames = [message_frame(chat_message(clientMessageId=f"m{n}")) for n in range(limit + 1)]
    assert [f["type"] for f in frames] == ["system"] * limit + ["error"]
    last = frames[-1]
    assert last["code"] == "RATE_LIMITED"
    assert last["retryable"] is True
    assert 0 < last["retryAfterMs"] <= 60_000
    assert len(queued(connected)) == len([f for f in frames if f["type"] == "system"])
    assert unexpected_failures(capsys) == 0


def test_unknown_connection_gets_an_error_and_nothing_is_queued(aws: MockedAws) -> None:
    frame = message_frame(chat_message())
    assert frame["code"] == "UNKNOWN_CONNECTION"
    assert queued(aws) == []


def test_queue_failure_is_a_retryable_error_echoing_the_client_message_id(
    connected: MockedAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("sqs")
    with Stubber(client) as stub:
        stub.add_client_error("send_message", "ServiceUnavailable", http_status_code=503)
        monkeypatch.setattr(message.aws, "sqs", lambda: client)
        frame = message_frame(chat_message(clientMessageId="keep-me"))
    assert frame["type"] == "error"
    assert frame["code"] == "SERVICE_UNAVAILABLE"
    assert frame["retryable"] is True
    assert frame["clientMessageId"] == "keep-me"
    assert unexpected_failures(capsys) == 1


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("send_message", "InvalidMessageContents", 400),
        ("send_message", "AccessDenied", 403),
        ("update_item", "AccessDeniedException", 400),
        ("update_item", "ValidationException", 400),
    ],
)
def test_an_error_a_retry_cannot_fix_is_not_retryable(
    connected: MockedAws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    operation: str,
    code: str,
    status: int,
) -> None:
    """Only throttling, 5xx and timeouts are worth a retry: SQS refuses a body outside its
    character set with InvalidMessageContents (a 400) every time
    (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html)."""
    service = "sqs" if operation == "send_message" else "dynamodb"
    client = boto3.client(service)  # type: ignore[call-overload]
    with Stubber(client) as stub:
        stub.add_client_error(operation, code, http_status_code=status)
        if service == "sqs":
            monkeypatch.setattr(message.aws, "sqs", lambda: client)
        else:
            monkeypatch.setattr(message.STORE, "_client", client)
        frame = message_frame(chat_message(clientMessageId="m-1"))
    assert (frame["type"], frame["code"], frame["retryable"]) == ("error", "INTERNAL_ERROR", False)
    assert frame["clientMessageId"] == "m-1"
    assert "would fail the same way" in frame["message"]
    assert unexpected_failures(capsys) == 1


def test_a_crash_is_an_error_frame_counted_as_unexpected(
    connected: MockedAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(message, "_handle", crash)
    frame = message_frame(chat_message())
    assert (frame["code"], frame["retryable"]) == ("INTERNAL_ERROR", False)
    assert unexpected_failures(capsys) == 1


def test_two_users_with_the_same_ids_are_both_queued(connected: MockedAws) -> None:
    """Clients choose conversationId and clientMessageId; SQS FIFO drops a second message
    with a deduplication id it saw in the last 5 minutes, per message group
    (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/using-messagededuplicationid-property.html)."""
    other = connect_event(user="user-456", connection_id="JC1dgf9yoAMCK-g=")
    assert connect.handler(other, lambda_context("connect"))["statusCode"] == 200
    for connection_id, user in ((CONNECTION_ID, "user-123"), ("JC1dgf9yoAMCK-g=", "user-456")):
        event = chat_message(clientMessageId="1")
        event["requestContext"].update(
            connectionId=connection_id, authorizer={"principalId": user, "userId": user}
        )
        assert message_frame(event)["event"] == "accepted"
    messages = queued_messages(connected)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert sorted(b["userId"] for b in bodies) == ["user-123", "user-456"]
    assert {(b["conversationId"], b["clientMessageId"]) for b in bodies} == {("conv-1", "1")}
    groups = {m["Attributes"]["MessageGroupId"] for m in messages}
    assert groups == {
        hashlib.sha256(json.dumps([user, "conv-1"]).encode()).hexdigest()
        for user in ("user-123", "user-456")
    }
    assert len({m["Attributes"]["MessageDeduplicationId"] for m in messages}) == 2


def test_store_failure_is_a_retryable_error(
    connected: MockedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("dynamodb")
    with Stubber(client) as stub:
        stub.add_client_error("update_item", "ThrottlingException", http_status_code=400)
        monkeypatch.setattr(message.STORE, "_client", client)
        frame = message_frame(chat_message())
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
        (
            '{"action":"chat_message","conversationId":"c","content":" \\n\\t "}',
            "BAD_REQUEST",
            "content: Value error, is only whitespace",
        ),
        (
            '{"action":"chat_message","conversationId":"c","content":"ab\\ufffe"}',
            "BAD_REQUEST",
            "U+FFFE at index 2",
        ),
        (
            '{"action":"chat_message","conversationId":"c","content":"\\ud800 x"}',
            "BAD_REQUEST",
            "U+D800 at index 0",
        ),
        ("[" * 60_000 + "]" * 60_000, "BAD_REQUEST", "not valid JSON"),
        ("x" * (schema.MAX_MESSAGE_BYTES + 1), "MESSAGE_TOO_LARGE", "131072"),
    ],
)
def test_bad_bodies_get_an_error_frame_naming_the_problem(
    connected: MockedAws,
    body: str | None,
    code: str,
    names: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = chat_event(body, routeKey="$default", connectedAt=now_ms())
    frame = message_frame(event)
    assert frame["type"] == "error"
    assert frame["code"] == code
    assert names in frame["message"]
    assert frame["requestId"] == "BFHQLHnbIAMFbSg="
    assert frame["retryable"] is False
    assert queued(connected) == []
    assert unexpected_failures(capsys) == 0


def test_deeply_nested_json_in_an_extra_field_is_harmless(connected: MockedAws) -> None:
    body = '{"action":"ping","x":' + "[" * 5000 + "]" * 5000 + "}"
    frame = message_frame(chat_event(body, routeKey="ping"))
    assert frame["type"] in {"system", "error"}


def test_logs_carry_ids_but_no_content_at_info(connected: MockedAws, logs: io.StringIO) -> None:
    message.handler(chat_message("a secret question"), lambda_context("message"))
    out = logs.getvalue()
    records = [json.loads(line) for line in out.splitlines() if line.startswith('{"level"')]
    queued_record = next(r for r in records if r["message"] == "chat message queued")
    assert queued_record["connectionId"] == CONNECTION_ID
    assert queued_record["routeKey"] == "chat_message"
    assert queued_record["requestId"] == "BFHQLHnbIAMFbSg="
    assert "a secret question" not in out


def test_every_handler_logs_with_the_lambda_context(
    connected: MockedAws, logs: io.StringIO
) -> None:
    """The keys of Powertools' ``inject_lambda_context`` on connect, message and disconnect,
    as on the authorizer (``handles_invocation``): cold start, function name and request id on
    every line."""
    contexts = [lambda_context(name) for name in ("connect", "message", "disconnect")]
    connect.handler(connect_event(connection_id="second="), contexts[0])
    message.handler(chat_message(), contexts[1])
    disconnect.handler(load_event("disconnect", connectionId="second="), contexts[2])
    records = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    for context in contexts:
        mine = [r for r in records if r.get("function_request_id") == context.aws_request_id]
        assert mine, f"no log line of {context.function_name}"
        assert all(r["function_name"] == context.function_name for r in mine)
        assert all(isinstance(r["cold_start"], bool) for r in mine)


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
def test_any_body_gets_one_well_formed_frame(connected: MockedAws, body: str) -> None:
    result = message.handler(
        chat_event(body, routeKey="$default", connectedAt=now_ms()), lambda_context("message")
    )
    assert result["statusCode"] == 200
    frame = json.loads(result["body"])
    assert frame["type"] in {"system", "error"}
    if frame["type"] == "error":
        assert frame["code"] in {"BAD_REQUEST", "UNKNOWN_ACTION", "RATE_LIMITED"}
        assert frame["message"]
