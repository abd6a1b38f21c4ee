"""The RAG side in miniature: take queued chat messages, stream an answer to the connection.

Runs with the ``runtimeLayerArn`` layer (``runtime`` + its dependencies) and the
``senderPolicyArn`` + ``chatConsumerPolicyArn`` policies. Retrieval and generation go where
``answer_chunks`` is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from runtime.sender import MessageSender

SENDER = MessageSender.from_env()


def answer_chunks(question: str) -> Iterator[str]:
    yield "You asked: "
    yield question


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    for record in event["Records"]:
        if failures:
            # FIFO: a message after a failed one must not overtake it; it is retried too.
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        try:
            chat = json.loads(record["body"])
            SENDER.stream(
                chat["connectionId"],
                chat["conversationId"],
                answer_chunks(chat["content"]),
                user_id=chat["userId"],
                redirect_gone_to_user=True,
                in_reply_to=chat["clientMessageId"],  # lets the client match its question
            )
        except Exception:
            # Back to the queue (after 5 receives: the dead-letter queue).
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
