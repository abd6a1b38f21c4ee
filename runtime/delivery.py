"""Frames to connections: serialized once, posted in order, fanned out over one thread pool.

A gone connection's row is removed here (the TARGET's, never the sender's); metrics are counted
in the caller's thread, because Powertools' metric set is not thread-safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from botocore.exceptions import BotoCoreError, ClientError

from runtime import aws, schema
from runtime.connections import ConnectionStore, GoneRow
from runtime.messages import (
    ChatResponse,
    ErrorFrame,
    MessageTooLargeError,
    SystemFrame,
    TypingIndicator,
)
from runtime.observability import Metric, count, logger
from runtime.posting import SendStatus

DEFAULT_MAX_WORKERS = aws.MANAGEMENT_MAX_CONNECTIONS

Message: TypeAlias = (
    ChatResponse | TypingIndicator | ErrorFrame | SystemFrame | Mapping[str, Any] | str
)
"""A frame model, a JSON object as a mapping, or text that already is JSON."""


class FramePoster(Protocol):
    def post(self, connection_id: str, data: bytes) -> SendStatus: ...


def serialize(message: Message) -> bytes:
    """The UTF-8 wire form of a message; raises ``MessageTooLargeError`` over 128 KB."""
    if isinstance(message, str):
        text = message
    elif isinstance(message, Mapping):
        text = json.dumps(dict(message), separators=(",", ":"), ensure_ascii=False)
    else:
        text = message.to_json()
    data = text.encode("utf-8")
    if len(data) > schema.MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(len(data))
    return data


@dataclass(frozen=True)
class Delivery:
    connection_id: str
    status: SendStatus
    frames_sent: int
    gone_row: GoneRow | None = None  # what a 410 did to the row; None when it was not touched


class Dispatcher:
    """Delivers frames to one or many connections; owns the sender's thread pool."""

    def __init__(self, store: ConnectionStore, poster: FramePoster, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers={max_workers} must be >= 1")
        self.store = store
        self.poster = poster
        # Created once and reused: threads start lazily, and a broadcast never outgrows the pool.
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="message-sender"
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def deliver(
        self, connection_id: str, frames: Sequence[bytes], *, remove_gone: bool = True
    ) -> Delivery:
        """Frames to one connection in order, stopping at the first that is not sent."""
        for index, data in enumerate(frames):
            status = self.poster.post(connection_id, data)
            if status is not SendStatus.SENT:
                gone_row = None
                if status is SendStatus.GONE and remove_gone:
                    gone_row = self.forget(connection_id)
                return Delivery(connection_id, status, index, gone_row)
        return Delivery(connection_id, SendStatus.SENT, len(frames))

    def _deliver_guarded(self, connection_id: str, frames: Sequence[bytes]) -> Delivery:
        # In a worker thread: one connection's unexpected error must not sink the others.
        try:
            return self.deliver(connection_id, frames)
        except Exception:
            logger.exception(
                "sending to a connection failed", extra={"connectionId": connection_id}
            )
            return Delivery(connection_id, SendStatus.FAILED, 0)

    def fan_out(self, connection_ids: Sequence[str], frames: Sequence[bytes]) -> list[Delivery]:
        """The same frames to several connections concurrently, each in order."""
        if len(connection_ids) == 1:
            return [self._deliver_guarded(connection_ids[0], frames)]
        return list(
            self._executor.map(lambda cid: self._deliver_guarded(cid, frames), connection_ids)
        )

    def fan_out_counted(
        self, connection_ids: Sequence[str], frames: Sequence[bytes]
    ) -> list[Delivery]:
        deliveries = self.fan_out(connection_ids, frames)
        tally(deliveries)
        return deliveries

    def forget(self, connection_id: str) -> GoneRow | None:
        """Remove a gone connection's row unless it is still connecting (``remove_gone``: API
        Gateway answers 410 during ``$connect`` too); None when that failed (logged: the TTL
        will expire it)."""
        logger.info("connection gone, removing it", extra={"connectionId": connection_id})
        try:
            return self.store.remove_gone(connection_id)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "removing a gone connection failed",
                extra={"connectionId": connection_id, "error": type(exc).__name__},
            )
            return None


def tally(deliveries: Iterable[Delivery]) -> None:
    """Count what was sent, the rows removed and those kept because still connecting, in the
    caller's thread."""
    sent = removed = connecting = 0
    for delivery in deliveries:
        sent += delivery.frames_sent
        removed += delivery.gone_row is GoneRow.REMOVED
        connecting += delivery.gone_row is GoneRow.CONNECTING
    count(Metric.MESSAGES_SENT, sent)
    count(Metric.STALE_CONNECTIONS_REMOVED, removed)
    count(Metric.GONE_WHILE_CONNECTING, connecting)
