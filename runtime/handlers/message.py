"""``chat_message``, ``ping`` and ``$default`` (DESIGN §3).

Every invocation answers with exactly one frame as the route response, whatever the body, and
before its Lambda times out: the handler never raises into API Gateway, and skips an AWS call
the time left cannot cover. A chat message costs two AWS calls: the conditional ``UpdateItem``
of ``ConnectionStore.touch`` and the SQS ``SendMessage``.

A good frame is read and answered through ``runtime.frames``, without pydantic; the error
frames are ``runtime.messages`` models, imported (pydantic and all) by the first one.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime import aws
from runtime.aws import Deadline
from runtime.config import StoreConfig, queue_url_from_env
from runtime.connections import ConnectionStore, TouchStatus
from runtime.frames import (
    BadRequest,
    ChatMessage,
    ChatQueueBody,
    ErrorCode,
    Ping,
    SystemAnswer,
    SystemEvent,
    parse_body,
)
from runtime.handlers._common import RequestContext, connected_at_ms, response, user_id_of
from runtime.observability import Metric, count, handles_invocation, logger

if TYPE_CHECKING:
    from runtime.messages import ErrorFrame

    Answer = ErrorFrame | SystemAnswer

STORE = ConnectionStore(StoreConfig.from_env())
QUEUE_URL = queue_url_from_env()


def _error_frame(
    code: ErrorCode,
    message: str,
    *,
    retryable: bool = False,
    retry_after_ms: int | None = None,
    request_id: str | None = None,
) -> ErrorFrame:
    """``runtime.messages.error_frame``, imported when the first error is answered."""
    from runtime.messages import error_frame

    return error_frame(
        code, message, retryable=retryable, retry_after_ms=retry_after_ms, request_id=request_id
    )


def _failed(exc: Exception, action: str, request_id: str | None) -> ErrorFrame:
    """The answer when the AWS call to ``action`` failed: retryable only when a retry can
    succeed (throttling, a 5xx, a timeout, too little time left to try)."""
    logger.exception(f"could not {action}")
    count(Metric.UNEXPECTED_FAILURES)
    if aws.is_transient(exc):
        return _error_frame(
            ErrorCode.SERVICE_UNAVAILABLE,
            f"could not {action}; send it again (a chat message with the same clientMessageId)",
            retryable=True,
            request_id=request_id,
        )
    return _error_frame(
        ErrorCode.INTERNAL_ERROR,
        f"could not {action}; sending it again would fail the same way",
        request_id=request_id,
    )


def _touch(context: RequestContext, deadline: Deadline) -> ErrorFrame | None:
    """Slide the TTL and apply the rate limit; an error frame when the message must stop here."""
    try:
        deadline.check()
        result = STORE.touch(
            context.connection_id, connected_at_ms(context, int(time.time() * 1000))
        )
    except Exception as exc:
        return _failed(exc, "record activity on the connection", context.request_id)
    if result.status is TouchStatus.UNKNOWN:
        return _error_frame(
            ErrorCode.UNKNOWN_CONNECTION,
            "this connection is not registered or has expired; reconnect",
            request_id=context.request_id,
        )
    if result.status is TouchStatus.RATE_LIMITED:
        count(Metric.MESSAGES_RATE_LIMITED)
        return _error_frame(
            ErrorCode.RATE_LIMITED,
            f"over {STORE.config.messages_per_minute} messages per minute on this connection; "
            f"retry after {result.retry_after_ms} ms",
            retryable=True,
            retry_after_ms=result.retry_after_ms,
            request_id=context.request_id,
        )
    return None


def _scoped_id(*parts: str) -> str:
    """A stable SQS id for ``parts``: the SHA-256 of their JSON array, 64 hex digits."""
    return hashlib.sha256(json.dumps(parts).encode("ascii")).hexdigest()


def message_group_id(user_id: str, conversation_id: str) -> str:
    """The FIFO group of a user's conversation: clients choose conversation ids freely, so two
    users' ``"default"`` must not share one (order, throughput and deduplication are per group)."""
    return _scoped_id(user_id, conversation_id)


def deduplication_id(
    user_id: str, conversation_id: str, client_message_id: str | None, message_id: str
) -> str:
    """The user's clientMessageId within the conversation, else API Gateway's messageId."""
    if client_message_id is None:
        return message_id
    return _scoped_id(user_id, conversation_id, client_message_id)


def _queue(context: RequestContext, chat: ChatMessage, user_id: str, deadline: Deadline) -> Answer:
    message_id = context.message_id or context.request_id
    client_message_id = chat.client_message_id or message_id
    body = ChatQueueBody.of(
        connection_id=context.connection_id,
        user_id=user_id,
        conversation_id=chat.conversation_id,
        content=chat.content,
        client_message_id=client_message_id,
        message_id=message_id,
        received_at=context.get("requestTimeEpoch") or int(time.time() * 1000),
    )
    try:
        deadline.check()
        aws.sqs().send_message(
            QueueUrl=QUEUE_URL,
            MessageBody=body.to_json(),
            MessageGroupId=message_group_id(user_id, chat.conversation_id),
            MessageDeduplicationId=deduplication_id(
                user_id, chat.conversation_id, chat.client_message_id, message_id
            ),
        )
    except Exception as exc:
        failed = _failed(exc, "queue the chat message", context.request_id)
        return failed.model_copy(update={"client_message_id": client_message_id})
    count(Metric.MESSAGES_RECEIVED)
    logger.info("chat message queued", extra={"conversationId": chat.conversation_id})
    logger.debug("chat message content", extra={"content": chat.content})
    return SystemAnswer(
        SystemEvent.ACCEPTED,
        data={
            "clientMessageId": client_message_id,
            "conversationId": chat.conversation_id,
            "messageId": message_id,
        },
    )


def _handle(event: dict[str, Any], deadline: Deadline) -> Answer:
    context = RequestContext(event)
    request_id = context.get("requestId")
    try:
        action = parse_body(event.get("body"))
    except BadRequest as exc:
        return _error_frame(exc.code, str(exc), request_id=request_id)
    user_id = user_id_of(event)
    if user_id is None:
        return _error_frame(
            ErrorCode.UNKNOWN_CONNECTION,
            "no identity on this connection; reconnect with a valid token",
            request_id=request_id,
        )
    rejected = _touch(context, deadline)
    if rejected is not None:
        if isinstance(action, ChatMessage):
            return rejected.model_copy(update={"client_message_id": action.client_message_id})
        return rejected
    if isinstance(action, Ping):
        return SystemAnswer(SystemEvent.PONG)
    return _queue(context, action, user_id, deadline)


def _serialize(frame: Answer, request_id: str | None) -> str:
    try:
        return frame.to_json()
    except Exception:
        logger.exception("could not serialize the answer frame")
        count(Metric.UNEXPECTED_FAILURES)
        return _error_frame(
            ErrorCode.INTERNAL_ERROR, "internal error", request_id=request_id
        ).to_json()


@handles_invocation
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = Deadline.of(context)
    request_id: str | None = None
    try:
        request_id = (event.get("requestContext") or {}).get("requestId")
        frame = _handle(event, deadline)
    except Exception:
        logger.exception("unexpected error in the message handler")
        count(Metric.UNEXPECTED_FAILURES)
        frame = _error_frame(
            ErrorCode.INTERNAL_ERROR,
            "internal error",
            request_id=request_id if isinstance(request_id, str) else None,
        )
    return response(200, _serialize(frame, request_id if isinstance(request_id, str) else None))
