"""Helpers shared by the test suites: the test environment and ``load_event``."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.aws import AwsResources
from local.events import now_ms
from local.gateway import LambdaContext
from runtime import schema

if TYPE_CHECKING:
    from runtime.sender import MessageSender

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "events"
# The deployed functions' default timeout (Pulumi.yaml's lambdaTimeoutSeconds).
FUNCTION_TIMEOUT_MS = 10_000
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE_NAME = "rag-websocket-test-connections"
QUEUE_NAME = "rag-websocket-test-chat.fifo"

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "CONNECTIONS_TABLE": TABLE_NAME,
    "CHAT_QUEUE_URL": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{QUEUE_NAME}",
    "WEBSOCKET_MANAGEMENT_ENDPOINT": f"https://abcdef1234.execute-api.{REGION}.amazonaws.com/dev",
    "AUTH_ISSUER": "https://issuer.test.invalid",
    "AUTH_AUDIENCE": "rag-websocket-test",
    "AUTH_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
    "POWERTOOLS_METRICS_NAMESPACE": "RagWebSocket",
    "POWERTOOLS_SERVICE_NAME": "rag-websocket",
    "LOG_LEVEL": "INFO",
}


@cache
def _read(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


def load_event(name: str, **request_context: Any) -> dict[str, Any]:
    """A fresh copy of ``tests/events/<name>.json`` with ``requestContext`` keys overridden."""
    event = copy.deepcopy(_read(name))
    event.setdefault("requestContext", {}).update(request_context)
    return event


def chat_event(body: object, **request_context: Any) -> dict[str, Any]:
    """A ``chat_message`` event carrying ``body`` (a dict is JSON-encoded, a str sent as is)."""
    event = load_event("chat_message", **request_context)
    event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    return event


def chat_message(content: str = "What is RAG?", **fields: Any) -> dict[str, Any]:
    """A ``chat_message`` event of ``conv-1`` with ``content`` and ``fields``, sent now from
    ``CONNECTION_ID``, connected now."""
    body = {"action": "chat_message", "conversationId": "conv-1", "content": content, **fields}
    return chat_event(body, connectedAt=now_ms())


def lambda_context(
    function: str = "handler", remaining_ms: int = FUNCTION_TIMEOUT_MS
) -> LambdaContext:
    """A Lambda context (local mode's) with ``remaining_ms`` left before the function times out."""
    return LambdaContext.starting_now(
        function, timeout_ms=remaining_ms, region=REGION, account_id=ACCOUNT, log_stream_name="test"
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


CONNECTION_ID = "BFHPhfCWIAMCKlQ="  # a real capture's (Powertools' tests/events)


def connect_event(user: str | None = "user-123", connection_id: str = CONNECTION_ID) -> Any:
    """A ``$connect`` event of ``user`` (no authorizer context for ``None``), connected now."""
    authorizer = {"principalId": user, "userId": user} if user else {}
    return load_event(
        "connect", connectionId=connection_id, connectedAt=now_ms(), authorizer=authorizer
    )


def connect_by_handler() -> None:
    """``CONNECTION_ID`` connected as ``user-123`` by the ``$connect`` handler (answering 200)."""
    from runtime.handlers import connect

    assert connect.handler(connect_event(), lambda_context("connect"))["statusCode"] == 200


def frame_of(result: dict[str, Any]) -> dict[str, Any]:
    """The frame a message route answered with (status 200, a ``timestamp`` as every frame)."""
    assert result["statusCode"] == 200
    frame: dict[str, Any] = json.loads(result["body"])
    assert "timestamp" in frame
    return frame


def message_frame(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """The frame the message handler answers ``event`` with (``frame_of``)."""
    from runtime.handlers import message

    return frame_of(message.handler(event, context or lambda_context("message")))


def drain_queue(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message in the queue with its FIFO attributes, removed from the queue."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        ).get("Messages", [])
        if not batch:
            return messages
        for item in batch:
            messages.append(dict(item))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=item["ReceiptHandle"])


def connection_rows(aws: AwsResources) -> list[dict[str, Any]]:
    """Every connection row in ``aws``'s table, expired or not (a Scan with a client of its own,
    so faults injected into the handlers' clients do not touch it)."""
    items = aws.dynamodb().scan(TableName=aws.table_name)["Items"]
    return [item for item in items if item["PK"]["S"].startswith(schema.CONNECTION_PREFIX)]


def queued_ids(aws: AwsResources) -> list[str]:
    """The ``clientMessageId`` of every message in ``aws``'s chat queue, in order, taken off it
    (``drain_queue``). Where nothing consumes the queue, everything queued is still there."""
    return [json.loads(m["Body"])["clientMessageId"] for m in drain_queue(aws.sqs(), aws.queue_url)]


def stream_to_user(
    message: Mapping[str, Any], sender: MessageSender, chunks: Iterable[str], **options: Any
) -> None:
    """Stream ``chunks`` as the answer to a queued chat ``message``, following its user across
    reconnects (``redirect_gone_to_user``): what a responder in these tests does."""
    sender.stream(
        str(message["connectionId"]),
        str(message["conversationId"]),
        chunks,
        user_id=str(message["userId"]),
        redirect_gone_to_user=True,
        **options,
    )
