"""Each handler with DynamoDB or SQS throttled or failing (moto, faults injected into the very
boto3 clients the handlers use; ``injection.AwsFault``).

- ``$connect``: 500 and no row, whether the connection count or the write fails;
- ``$disconnect``: 200 all the same (the row's TTL, or the sender's 410 clean-up, removes it);
- ``chat_message``: a retryable ``error`` frame echoing the clientMessageId, nothing queued;
- a transient fault is absorbed by the SDK's retries, and the message is queued once;
- an answer lost after SQS queued the message: the client's re-send is deduplicated.

Every persistent fault is retried by the SDK first (1 + 3 attempts, standard mode): the counts
prove it. The SDK's retry delays are recorded, not slept (``SdkSleeps``).

AWS is moto's server on a loopback port (``local.aws.EmbeddedAws``), not ``mock_aws``: moto's
in-process mock executes every request it sees, even one a test hook has already answered, so
a "failed" write would still land in the table.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from local.aws import AwsResources, EmbeddedAws
from runtime import aws as runtime_aws
from runtime.handlers import connect, disconnect, message
from tests.reliability.figures import record
from tests.reliability.injection import AwsFault, LostResponse, SdkSleeps
from tests.support import QUEUE_NAME, TABLE_NAME, chat_event, load_event

CONNECTION_ID = "BFHPhfCWIAMCKlQ="
USER = "fault-user"
SDK_ATTEMPTS = 4  # runtime/aws.py: standard retry mode, max_attempts=3 retries after the first
DYNAMODB_FAULTS = [
    pytest.param("ThrottlingException", 400, id="throttled"),
    pytest.param("ProvisionedThroughputExceededException", 400, id="over-capacity"),
    pytest.param("InternalServerError", 500, id="5xx"),
]
SQS_FAULTS = [
    pytest.param("ThrottlingException", 400, id="throttled"),
    pytest.param("ServiceUnavailable", 503, id="5xx"),
]
injected: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    record("faults: handlers (moto)", **dict(injected))


@pytest.fixture(scope="module")
def moto_server() -> Iterator[AwsResources]:
    """The table and queue the handlers were configured with (tests/support.py), served."""
    with EmbeddedAws(table_name=TABLE_NAME, queue_name=QUEUE_NAME) as resources:
        yield resources


@pytest.fixture
def aws(moto_server: AwsResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsResources]:
    """The handlers' clients pointed at the server; the table and the queue emptied first."""
    for name, value in moto_server.environment().items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    runtime_aws.reset_clients()
    dynamodb = moto_server.dynamodb()
    for item in dynamodb.scan(TableName=TABLE_NAME)["Items"]:
        dynamodb.delete_item(TableName=TABLE_NAME, Key={k: item[k] for k in ("PK", "SK")})
    queued(moto_server)
    yield moto_server
    runtime_aws.reset_clients()


@pytest.fixture(autouse=True)
def sdk_sleeps(monkeypatch: pytest.MonkeyPatch) -> SdkSleeps:
    return SdkSleeps().install(monkeypatch)


def now_ms() -> int:
    return int(time.time() * 1000)


def connect_event() -> dict[str, Any]:
    return load_event(
        "connect",
        connectionId=CONNECTION_ID,
        connectedAt=now_ms(),
        authorizer={"principalId": USER, "userId": USER},
    )


def chat(client_message_id: str) -> dict[str, Any]:
    body = {
        "action": "chat_message",
        "conversationId": "conv-faults",
        "content": "a question",
        "clientMessageId": client_message_id,
    }
    return chat_event(body, connectionId=CONNECTION_ID, connectedAt=now_ms())


def rows(resources: AwsResources) -> list[dict[str, Any]]:
    """Every row of the table, read past the injected faults (a client of its own)."""
    return list(resources.dynamodb().scan(TableName=resources.table_name)["Items"])


def queued(resources: AwsResources) -> list[str]:
    """The clientMessageIds in the chat queue, read past the injected faults."""
    sqs = resources.sqs()
    ids: list[str] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=resources.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            return ids
        for item in batch:
            ids.append(json.loads(item["Body"])["clientMessageId"])
            sqs.delete_message(QueueUrl=resources.queue_url, ReceiptHandle=item["ReceiptHandle"])


def frame_of(result: dict[str, Any]) -> dict[str, Any]:
    assert result["statusCode"] == 200
    frame: dict[str, Any] = json.loads(result["body"])
    return frame


@pytest.fixture
def connected(aws: AwsResources) -> AwsResources:
    assert connect.handler(connect_event(), None)["statusCode"] == 200
    return aws


# --- $connect --------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["Query", "PutItem"], ids=["count", "write"])
@pytest.mark.parametrize(("code", "status"), DYNAMODB_FAULTS)
def test_connect_answers_500_and_stores_no_row(
    aws: AwsResources, operation: str, code: str, status: int, logs: io.StringIO
) -> None:
    with AwsFault(runtime_aws.dynamodb(), operation, code, status) as fault:
        result = connect.handler(connect_event(), None)
    injected[f"$connect: DynamoDB {operation} {code}"] += fault.calls
    assert result["statusCode"] == 500
    assert fault.calls == SDK_ATTEMPTS
    assert rows(aws) == []
    assert "connect failed: could not store the connection" in logs.getvalue()


# --- $disconnect -----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), DYNAMODB_FAULTS)
def test_disconnect_answers_200_and_leaves_the_row_to_its_ttl(
    connected: AwsResources, code: str, status: int, logs: io.StringIO
) -> None:
    event = load_event("disconnect", connectionId=CONNECTION_ID)
    with AwsFault(runtime_aws.dynamodb(), "DeleteItem", code, status) as fault:
        result = disconnect.handler(event, None)
    injected[f"$disconnect: DynamoDB DeleteItem {code}"] += fault.calls
    assert result["statusCode"] == 200
    assert fault.calls == SDK_ATTEMPTS
    [row] = rows(connected)
    assert int(row["ttl"]["N"]) > time.time()  # the TTL (or a 410) removes it
    assert "could not delete the connection row; its TTL will" in logs.getvalue()


# --- chat_message ----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), DYNAMODB_FAULTS)
def test_chat_message_is_a_retryable_error_and_nothing_is_queued_when_dynamodb_fails(
    connected: AwsResources, code: str, status: int
) -> None:
    with AwsFault(runtime_aws.dynamodb(), "UpdateItem", code, status) as fault:
        frame = frame_of(message.handler(chat("m-store-fault"), None))
    injected[f"chat_message: DynamoDB UpdateItem {code}"] += fault.calls
    assert fault.calls == SDK_ATTEMPTS
    assert (frame["type"], frame["code"], frame["retryable"]) == (
        "error",
        "SERVICE_UNAVAILABLE",
        True,
    )
    assert frame["clientMessageId"] == "m-store-fault"
    assert queued(connected) == []


@pytest.mark.parametrize(("code", "status"), SQS_FAULTS)
def test_chat_message_is_a_retryable_error_and_nothing_is_queued_when_sqs_fails(
    connected: AwsResources, code: str, status: int
) -> None:
    with AwsFault(runtime_aws.sqs(), "SendMessage", code, status) as fault:
        frame = frame_of(message.handler(chat("m-queue-fault"), None))
    injected[f"chat_message: SQS SendMessage {code}"] += fault.calls
    assert fault.calls == SDK_ATTEMPTS
    assert (frame["type"], frame["code"], frame["retryable"]) == (
        "error",
        "SERVICE_UNAVAILABLE",
        True,
    )
    assert frame["clientMessageId"] == "m-queue-fault"
    assert "send it again with the same clientMessageId" in frame["message"]
    assert queued(connected) == []


def test_transient_throttling_is_absorbed_by_the_sdk_and_queues_once(
    connected: AwsResources, sdk_sleeps: SdkSleeps
) -> None:
    with (
        AwsFault(runtime_aws.dynamodb(), "UpdateItem", "ThrottlingException", 400, times=2) as db,
        AwsFault(runtime_aws.sqs(), "SendMessage", "ThrottlingException", 400, times=2) as sqs,
    ):
        frame = frame_of(message.handler(chat("m-transient"), None))
    injected["chat_message: transient throttling (DynamoDB + SQS)"] += db.calls + sqs.calls
    assert (frame["type"], frame["event"]) == ("system", "accepted")
    assert (db.calls, sqs.calls) == (2, 2)
    assert len(sdk_sleeps.delays) == 4  # the SDK backed off before each retry
    assert queued(connected) == ["m-transient"]


def test_an_answer_lost_after_sqs_queued_the_message_is_resent_and_queued_once(
    connected: AwsResources,
) -> None:
    with LostResponse(runtime_aws.sqs(), "SendMessage") as lost:
        first = frame_of(message.handler(chat("m-lost-answer"), None))
        # What the client does with a retryable error: the same message, the same id.
        second = frame_of(message.handler(chat("m-lost-answer"), None))
    injected["chat_message: SQS answer lost after queueing"] += lost.calls
    assert lost.calls == 1
    assert (first["code"], first["retryable"]) == ("SERVICE_UNAVAILABLE", True)
    assert (second["event"], second["data"]["clientMessageId"]) == ("accepted", "m-lost-answer")
    assert queued(connected) == ["m-lost-answer"]  # the FIFO deduplication id did it
