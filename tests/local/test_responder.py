"""The chat-queue consumer and the demo responder, against the embedded moto."""

from __future__ import annotations

import json
import threading
from typing import Any

from local import responder as responder_module
from local.aws import AwsResources
from local.responder import ChatQueueConsumer, demo_answer, demo_responder
from tests.support import wait_until


def _queue(served_aws: AwsResources, conversation: str, content: str, message_id: str) -> None:
    body = {
        "connectionId": f"conn-{conversation}",
        "userId": "alice",
        "conversationId": conversation,
        "content": content,
        "clientMessageId": message_id,
        "messageId": message_id,
    }
    served_aws.sqs().send_message(
        QueueUrl=served_aws.queue_url,
        MessageBody=json.dumps(body),
        MessageGroupId=conversation,
        MessageDeduplicationId=message_id,
    )


def _visible_and_in_flight(served_aws: AwsResources) -> int:
    attributes = served_aws.sqs().get_queue_attributes(
        QueueUrl=served_aws.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_each_message_reaches_the_responder_in_order_and_is_deleted(served_aws):
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()
    sender: Any = object()

    def respond(message: Any, given_sender: Any) -> None:
        assert given_sender is sender
        with lock:
            seen.append((message["conversationId"], message["content"]))

    for index in range(3):
        _queue(served_aws, "c1", f"first-{index}", f"c1-{index}")
        _queue(served_aws, "c2", f"second-{index}", f"c2-{index}")
    consumer = ChatQueueConsumer(served_aws.sqs(), served_aws.queue_url, respond, sender)
    consumer.start()
    try:
        wait_until(lambda: len(seen) == 6, timeout=15)
    finally:
        consumer.stop()
    for conversation, prefix in (("c1", "first"), ("c2", "second")):
        assert [c for conv, c in seen if conv == conversation] == [
            f"{prefix}-{i}" for i in range(3)
        ]
    assert _visible_and_in_flight(served_aws) == 0


def test_a_failing_responder_leaves_the_message_for_a_retry(served_aws):
    attempts: list[str] = []

    def fail(message: Any, sender: Any) -> None:
        attempts.append(message["clientMessageId"])
        raise RuntimeError("model unavailable")

    _queue(served_aws, "c3", "question", "c3-0")
    consumer = ChatQueueConsumer(served_aws.sqs(), served_aws.queue_url, fail, object())  # type: ignore[arg-type]
    consumer.start()
    try:
        wait_until(lambda: attempts == ["c3-0"], timeout=15)
    finally:
        consumer.stop()
    assert _visible_and_in_flight(served_aws) == 1  # not deleted: SQS retries it, then the DLQ


class _RecordingSender:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def stream(self, connection_id: str, conversation_id: str, chunks: Any, **options: Any) -> None:
        self.calls.append(
            {
                "connection_id": connection_id,
                "conversation_id": conversation_id,
                "chunks": list(chunks),
                **options,
            }
        )


def test_demo_responder_streams_an_answer_quoting_the_question(monkeypatch):
    monkeypatch.setattr(responder_module, "CHUNK_DELAY_SECONDS", 0)
    sender = _RecordingSender()
    message = {
        "connectionId": "abc=",
        "userId": "alice",
        "conversationId": "conv",
        "content": "What is RAG?",
        "clientMessageId": "c1",
        "messageId": "m1",
    }
    demo_responder(message, sender)  # type: ignore[arg-type]
    [call] = sender.calls
    assert (call["connection_id"], call["conversation_id"]) == ("abc=", "conv")
    assert len(call["chunks"]) > 3
    assert "".join(call["chunks"]) == demo_answer("What is RAG?")
    assert call["user_id"] == "alice"
    assert call["redirect_gone_to_user"] is True  # the answer follows the user's reconnect
    # inReplyTo names the question by its clientMessageId (what ChatClient.ask matches on),
    # and only there: the metadata holds no second, different inReplyTo.
    assert call["in_reply_to"] == "c1"
    assert call["metadata"] == {"responder": "local-demo"}
