"""Where moto differs from AWS in a way this project's guarantees depend on, made like AWS.

Applied by ``patch_moto()`` in the process that serves moto (``local.aws``), so ``python -m
local``, the tests and the soak all run the same patched moto:

- SQS FIFO deduplication: AWS refuses a message whose deduplication id it accepted in the last
  5 minutes, even after that message was received and deleted. moto 5 only compares against the
  messages still in the queue, so a client that re-sends an unaccepted chat message after the
  responder consumed the first copy would have it queued twice locally and once on AWS.
- ``Queue.delete_message`` race: moto rebuilds the message list without the lock
  ``add_message`` appends under, so a ``DeleteMessage`` racing a ``SendMessage`` can drop the
  new message, and two racing deletes can bring a deleted message back (the demo responder's
  four consumer threads did: one message left in flight after every message had been answered).
  Here it deletes under that lock, as AWS never loses an accepted message.
- DynamoDB transactions: AWS isolates a TransactWriteItems from other writes to its items. moto 5
  deep-copies the table first (to roll back), checks the conditions, then writes, all without a
  lock, so on the threaded server a concurrent write fails the copy ("dictionary changed size
  during iteration", a 500) or is undone by a rollback, and two $connects can both pass a limit.
  Here DynamoDB writes run one at a time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from runtime import schema

_WINDOW = schema.SQS_DEDUPLICATION_WINDOW_SECONDS
_lock = threading.Lock()
_patched = False
_dynamodb_writes = threading.RLock()
_DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


def _remember_fifo_deduplication_ids(queue: Any) -> None:
    original = queue.add_message

    def add_message(self: Any, message: Any) -> None:
        dedup_id = getattr(message, "deduplication_id", None)
        if not getattr(self, "fifo_queue", False) or not dedup_id:
            original(self, message)
            return
        now = time.monotonic()
        with _lock:
            seen: dict[str, float] = self.__dict__.setdefault("_seen_dedup_ids", {})
            for key in [k for k, at in seen.items() if now - at >= _WINDOW]:
                del seen[key]
            if dedup_id in seen:
                return
            seen[dedup_id] = now
        original(self, message)

    queue.add_message = add_message


def _delete_under_the_queue_lock(queue: Any) -> None:
    unlocked_delete = queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            unlocked_delete(self, receipt_handle)

    queue.delete_message = delete_message


def patch_moto() -> None:
    """Make moto's SQS queues and DynamoDB writes behave like AWS's in the ways above
    (idempotent)."""
    global _patched
    with _lock:
        if _patched:
            return
        from moto.sqs.models import Queue

        _remember_fifo_deduplication_ids(Queue)
        _delete_under_the_queue_lock(Queue)
        _patched = True
    serialize_dynamodb_writes()


def serialize_dynamodb_writes() -> None:
    """Run moto's DynamoDB writes one at a time, transactions included (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    with _lock:
        for name in _DYNAMODB_WRITES:
            original = getattr(DynamoDBBackend, name)
            if getattr(original, "_serialized", False):
                continue

            def serialized(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                with _dynamodb_writes:
                    return _original(self, *args, **kwargs)

            serialized._serialized = True  # type: ignore[attr-defined]
            setattr(DynamoDBBackend, name, serialized)
