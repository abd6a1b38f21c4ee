"""The demo responder: consumes the chat queue and answers the way a RAG responder would.

A responder is any callable ``responder(message, sender) -> None``:

- ``message`` is the queued chat message as a dict (what the ``chat_message`` handler sends to
  SQS): ``connectionId``, ``userId``, ``conversationId``, ``content``, ``clientMessageId``,
  ``messageId``, ``receivedAt``.
- ``sender`` is a ``runtime.sender.MessageSender`` wired to the local gateway and table, on
  its default (lean) posting path like production code.

It answers through ``sender`` (``sender.stream(...)`` sends typing on, numbered
``chat_response`` chunks, ``done`` and typing off). Returning marks the message done (it is
deleted); raising leaves it on the queue, to be retried and, after
``DLQ_MAX_RECEIVE_COUNT`` receives, moved to the dead-letter queue. Plug one in with
``python -m local --responder package.module:function``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.sender import MessageSender

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

Responder = Callable[[Mapping[str, Any], MessageSender], None]

# moto 5.2's FIFO long polling spins and starves other threads (DESIGN §4): short polls.
POLL_INTERVAL_SECONDS = 0.1
SQS_MAX_MESSAGES = 10
DEFAULT_MAX_WORKERS = 4
CHUNK_WORDS = 4
CHUNK_DELAY_SECONDS = 0.03
_log = logging.getLogger("local.responder")


def demo_answer(question: str) -> str:
    return (
        f'You asked: "{question}". This answer comes from the local demo responder, not a '
        "language model. In production the RAG stack consumes the same chat queue, retrieves "
        "context and streams its answer back through MessageSender exactly like this: typing "
        "on, numbered chat_response chunks, a final done frame, typing off. Plug in your own "
        "with python -m local --responder package.module:function."
    )


def _chunks(text: str, delay_seconds: float) -> Iterator[str]:
    words = text.split(" ")
    for start in range(0, len(words), CHUNK_WORDS):
        if start:
            time.sleep(delay_seconds)  # paced like tokens arriving from a model
        piece = " ".join(words[start : start + CHUNK_WORDS])
        yield piece if start + CHUNK_WORDS >= len(words) else piece + " "


def demo_responder(message: Mapping[str, Any], sender: MessageSender) -> None:
    """Streams a canned answer that quotes the question."""
    sender.stream(
        str(message["connectionId"]),
        str(message["conversationId"]),
        _chunks(demo_answer(str(message.get("content", ""))), CHUNK_DELAY_SECONDS),
        user_id=str(message["userId"]) if message.get("userId") else None,
        # The client gets a new connection id when it reconnects: follow the user there.
        redirect_gone_to_user=True,
        metadata={"responder": "local-demo"},
        # The client matches the answer to its question by this id (ChatClient.ask).
        in_reply_to=str(message["clientMessageId"]) if message.get("clientMessageId") else None,
    )


class ChatQueueConsumer:
    """Polls the chat queue on a thread and hands each message to the responder.

    Messages of different conversations (FIFO message groups) are answered concurrently, on
    up to ``max_workers`` threads; SQS itself holds back a group's next message until the
    previous one is deleted, so each conversation stays in order.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        responder: Responder,
        sender: MessageSender,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        poll_interval_seconds: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._responder = responder
        self._sender = sender
        self._poll_interval = poll_interval_seconds
        self._slots = threading.BoundedSemaphore(max_workers)
        self._max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="responder")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="chat-queue-consumer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the answers in progress."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=True)

    def _free_slots(self) -> int:
        """Block until a worker is free; how many are (0 when stopping)."""
        while not self._slots.acquire(timeout=self._poll_interval):
            if self._stopping.is_set():
                return 0
        free = 1
        while free < min(self._max_workers, SQS_MAX_MESSAGES) and self._slots.acquire(
            blocking=False
        ):
            free += 1
        return free

    def _poll(self) -> None:
        while not self._stopping.is_set():
            free = self._free_slots()
            if not free:
                return
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=free,
                    WaitTimeSeconds=0,
                ).get("Messages", [])
            except (BotoCoreError, ClientError) as exc:
                _log.warning("receiving from the chat queue failed: %s", exc)
                messages = []
            for _ in range(free - len(messages)):
                self._slots.release()
            for message in messages:
                self._pool.submit(self._answer, message)
            if not messages:
                self._stopping.wait(self._poll_interval)

    def _answer(self, message: MessageTypeDef) -> None:
        try:
            self._answer_and_delete(message)
        finally:
            self._slots.release()

    def _answer_and_delete(self, message: MessageTypeDef) -> None:
        try:
            body = json.loads(message.get("Body", ""))
            if not isinstance(body, dict):
                raise ValueError("the message body is not a JSON object")
            self._responder(body, self._sender)
        except Exception:
            _log.exception(
                "the responder failed on message %s; it stays on the queue for a retry",
                message.get("MessageId"),
            )
            return
        try:
            self._sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except (BotoCoreError, ClientError) as exc:
            _log.warning("deleting an answered message failed: %s", exc)
