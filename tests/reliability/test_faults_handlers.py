"""Each handler with DynamoDB or SQS throttled, failing or silent (moto, faults injected into
the very boto3 clients the handlers use; ``injection.AwsFault``; a black-hole socket).

- ``$connect``: 500 and no row when its transaction fails;
- ``$disconnect``: 200 all the same (the row's TTL, or the sender's 410 clean-up, removes it);
- ``chat_message``: a retryable ``error`` frame echoing the clientMessageId, nothing queued;
- a transient fault is absorbed by the SDK's retry, and the message is queued once;
- an answer lost after SQS queued the message: the client's re-send is deduplicated;
- an endpoint that accepts and never answers: every handler answers before its Lambda timeout.

Every persistent fault is retried by the SDK once (2 attempts in all, standard mode): the
counts prove it. The SDK's retry delays are recorded, not slept (``SdkSleeps``).

AWS is moto's server on a loopback port (``local.aws.EmbeddedAws``), not ``mock_aws``: moto's
in-process mock executes every request it sees, even one a test hook has already answered, so
a "failed" write would still land in the table.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType

import pytest

from local.aws import AwsResources
from runtime import aws as runtime_aws
from runtime import schema
from runtime.handlers import connect, disconnect
from tests.reliability.figures import Figures
from tests.reliability.injection import AwsFault, LostResponse, SdkSleeps
from tests.support import (
    CONNECTION_ID,
    TABLE_NAME,
    chat_message,
    connect_by_handler,
    connect_event,
    connection_rows,
    lambda_context,
    load_event,
    message_frame,
    queued_ids,
)

SDK_ATTEMPTS = runtime_aws.MAX_ATTEMPTS  # runtime/aws.py: standard mode, 2 attempts in all
DYNAMODB_FAULTS = [
    pytest.param("ThrottlingException", 400, id="throttled"),
    pytest.param("ProvisionedThroughputExceededException", 400, id="over-capacity"),
    pytest.param("InternalServerError", 500, id="5xx"),
]
SQS_FAULTS = [
    pytest.param("ThrottlingException", 400, id="throttled"),
    pytest.param("ServiceUnavailable", 503, id="5xx"),
]
injected = Figures("faults: handlers (moto)")


@pytest.fixture
def handlers_aws(
    served_aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AwsResources]:
    """``served_aws`` with the handlers' clients pointed at it, the table and queue emptied."""
    for name, value in served_aws.environment().items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    runtime_aws.reset_clients()
    dynamodb = served_aws.dynamodb()
    for item in dynamodb.scan(TableName=TABLE_NAME)["Items"]:
        dynamodb.delete_item(TableName=TABLE_NAME, Key={k: item[k] for k in ("PK", "SK")})
    queued_ids(served_aws)
    yield served_aws
    runtime_aws.reset_clients()


@pytest.fixture
def connected(handlers_aws: AwsResources) -> AwsResources:
    """``handlers_aws`` with ``CONNECTION_ID`` connected by the ``$connect`` handler."""
    connect_by_handler()
    return handlers_aws


@pytest.fixture(autouse=True)
def sdk_sleeps(monkeypatch: pytest.MonkeyPatch) -> SdkSleeps:
    return SdkSleeps().install(monkeypatch)


# --- $connect --------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), DYNAMODB_FAULTS)
def test_connect_answers_500_and_stores_no_row(
    handlers_aws: AwsResources, code: str, status: int, logs: io.StringIO
) -> None:
    with AwsFault(runtime_aws.dynamodb(), "TransactWriteItems", code, status) as fault:
        result = connect.handler(connect_event(), lambda_context("connect"))
    injected[f"$connect: DynamoDB TransactWriteItems {code}"] += fault.calls
    assert result["statusCode"] == 500
    assert fault.calls == SDK_ATTEMPTS
    assert connection_rows(handlers_aws) == []
    assert "connect failed: could not store the connection" in logs.getvalue()


# --- $disconnect -----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), DYNAMODB_FAULTS)
def test_disconnect_answers_200_and_leaves_the_row_to_its_ttl(
    connected: AwsResources, code: str, status: int, logs: io.StringIO
) -> None:
    event = load_event("disconnect", connectionId=CONNECTION_ID)
    with AwsFault(runtime_aws.dynamodb(), "DeleteItem", code, status) as fault:
        result = disconnect.handler(event, lambda_context("disconnect"))
    injected[f"$disconnect: DynamoDB DeleteItem {code}"] += fault.calls
    assert result["statusCode"] == 200
    assert fault.calls == SDK_ATTEMPTS
    [row] = connection_rows(connected)
    assert int(row["ttl"]["N"]) > time.time()  # the TTL (or a 410) removes it
    assert "could not delete the connection row; its TTL will" in logs.getvalue()


# --- chat_message ----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), DYNAMODB_FAULTS)
def test_chat_message_is_a_retryable_error_and_nothing_is_queued_when_dynamodb_fails(
    connected: AwsResources, code: str, status: int
) -> None:
    with AwsFault(runtime_aws.dynamodb(), "UpdateItem", code, status) as fault:
        frame = message_frame(chat_message(clientMessageId="m-store-fault"))
    injected[f"chat_message: DynamoDB UpdateItem {code}"] += fault.calls
    assert fault.calls == SDK_ATTEMPTS
    assert (frame["type"], frame["code"], frame["retryable"]) == (
        "error",
        "SERVICE_UNAVAILABLE",
        True,
    )
    assert frame["clientMessageId"] == "m-store-fault"
    assert queued_ids(connected) == []


@pytest.mark.parametrize(("code", "status"), SQS_FAULTS)
def test_chat_message_is_a_retryable_error_and_nothing_is_queued_when_sqs_fails(
    connected: AwsResources, code: str, status: int
) -> None:
    with AwsFault(runtime_aws.sqs(), "SendMessage", code, status) as fault:
        frame = message_frame(chat_message(clientMessageId="m-queue-fault"))
    injected[f"chat_message: SQS SendMessage {code}"] += fault.calls
    assert fault.calls == SDK_ATTEMPTS
    assert (frame["type"], frame["code"], frame["retryable"]) == (
        "error",
        "SERVICE_UNAVAILABLE",
        True,
    )
    assert frame["clientMessageId"] == "m-queue-fault"
    assert "send it again (a chat message with the same clientMessageId)" in frame["message"]
    assert queued_ids(connected) == []


def test_transient_throttling_is_absorbed_by_the_sdk_and_queues_once(
    connected: AwsResources, sdk_sleeps: SdkSleeps
) -> None:
    with (
        AwsFault(runtime_aws.dynamodb(), "UpdateItem", "ThrottlingException", 400, times=1) as db,
        AwsFault(runtime_aws.sqs(), "SendMessage", "ThrottlingException", 400, times=1) as sqs,
    ):
        frame = message_frame(chat_message(clientMessageId="m-transient"))
    injected["chat_message: transient throttling (DynamoDB + SQS)"] += db.calls + sqs.calls
    assert (frame["type"], frame["event"]) == ("system", "accepted")
    assert (db.calls, sqs.calls) == (1, 1)
    assert len(sdk_sleeps.delays) == 2  # the SDK backed off before each retry
    assert queued_ids(connected) == ["m-transient"]


def test_an_answer_lost_after_sqs_queued_the_message_is_resent_and_queued_once(
    connected: AwsResources,
) -> None:
    with LostResponse(runtime_aws.sqs(), "SendMessage") as lost:
        first = message_frame(chat_message(clientMessageId="m-lost-answer"))
        # What the client does with a retryable error: the same message, the same id.
        second = message_frame(chat_message(clientMessageId="m-lost-answer"))
    injected["chat_message: SQS answer lost after queueing"] += lost.calls
    assert lost.calls == 1
    assert (first["code"], first["retryable"]) == ("SERVICE_UNAVAILABLE", True)
    assert (second["event"], second["data"]["clientMessageId"]) == ("accepted", "m-lost-answer")
    assert queued_ids(connected) == ["m-lost-answer"]  # the FIFO deduplication id did it


# --- an endpoint that accepts and never answers ----------------------------------------------


class BlackHole:
    """A TCP server on loopback that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self.accepted = 0
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self._held.append(connection)
            self.accepted += 1

    def __enter__(self) -> BlackHole:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._server.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def black_hole(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlackHole]:
    with BlackHole() as hole:
        yield hole
    runtime_aws.reset_clients()


def silence(monkeypatch: pytest.MonkeyPatch, hole: BlackHole, service: str) -> None:
    """Point the handlers' ``service`` client at the black hole (botocore's service-specific
    ``AWS_ENDPOINT_URL_<SERVICE>`` wins over ``AWS_ENDPOINT_URL``), with the timeouts a Lambda
    function has (local mode gives moto longer)."""
    monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service.upper()}", hole.url)
    monkeypatch.delenv(schema.ENV_AWS_READ_TIMEOUT, raising=False)
    runtime_aws.reset_clients()


@pytest.mark.parametrize("service", ["dynamodb", "sqs"])
def test_chat_message_answers_service_unavailable_before_its_lambda_times_out(
    connected: AwsResources,
    black_hole: BlackHole,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    logs: io.StringIO,
) -> None:
    """Before: 4 attempts x 5 s reads = 20.5 s against a stack timeout of 10 s, and the client
    got API Gateway's bare "Internal server error" instead of a frame."""
    silence(monkeypatch, black_hole, service)
    context = lambda_context("message")
    frame = message_frame(chat_message(clientMessageId="m-silent"), context)
    assert context.get_remaining_time_in_millis() > 0
    assert (frame["type"], frame["code"], frame["retryable"]) == (
        "error",
        "SERVICE_UNAVAILABLE",
        True,
    )
    assert frame["clientMessageId"] == "m-silent"
    assert black_hole.accepted == SDK_ATTEMPTS
    assert "ReadTimeoutError" in logs.getvalue()
    injected[f"chat_message: {service} black hole"] += black_hole.accepted


def test_chat_message_skips_a_call_the_time_left_cannot_cover(
    connected: AwsResources, black_hole: BlackHole, monkeypatch: pytest.MonkeyPatch
) -> None:
    silence(monkeypatch, black_hole, "dynamodb")
    too_little = runtime_aws.call_worst_case_seconds() + runtime_aws.ANSWER_MARGIN_SECONDS - 0.5
    frame = message_frame(
        chat_message(clientMessageId="m-late"), lambda_context("message", int(too_little * 1000))
    )
    assert (frame["code"], frame["retryable"], frame["clientMessageId"]) == (
        "SERVICE_UNAVAILABLE",
        True,
        "m-late",
    )
    assert black_hole.accepted == 0


def test_connect_and_disconnect_answer_before_their_lambda_times_out(
    handlers_aws: AwsResources, black_hole: BlackHole, monkeypatch: pytest.MonkeyPatch
) -> None:
    silence(monkeypatch, black_hole, "dynamodb")
    context = lambda_context("connect")
    assert connect.handler(connect_event(), context)["statusCode"] == 500
    assert context.get_remaining_time_in_millis() > 0
    context = lambda_context("disconnect")
    event = load_event("disconnect", connectionId=CONNECTION_ID)
    assert disconnect.handler(event, context)["statusCode"] == 200
    assert context.get_remaining_time_in_millis() > 0
    assert black_hole.accepted == 2 * SDK_ATTEMPTS
