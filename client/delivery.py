"""Chat messages kept until the server accepts them: ChatClient's re-send bookkeeping.

Each message stays pending until its ``system/accepted`` frame arrives. It is handed back for
sending again (with the same ``clientMessageId``, which the server queues once) when no answer
came within ``resend_after`` and after a retryable ``error`` frame; it fails with
``MessageNotAcceptedError`` after ``accept_timeout`` and with ``MessageRejectedError`` on a
non-retryable ``error`` frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from client.errors import (
    InvalidArgumentError,
    MessageNotAcceptedError,
    MessageRejectedError,
    UnknownMessageError,
)
from runtime.messages import ErrorFrame, SystemFrame

logger = logging.getLogger(__name__)

# A retryable error without ``retryAfterMs`` (the queue was unavailable): re-send after this.
RETRY_WITHOUT_HINT_SECONDS = 1.0
# Outcomes of finished messages kept for late ``wait_accepted`` calls.
REMEMBERED_OUTCOMES = 4096


@dataclass(frozen=True)
class Accepted:
    """The server queued a chat message (its ``system/accepted`` frame)."""

    client_message_id: str
    conversation_id: str
    message_id: str | None
    frame: SystemFrame


@dataclass(eq=False)
class PendingMessage:
    """One chat message on its way: its wire text and the timers that drive it."""

    client_message_id: str
    conversation_id: str
    text: str
    future: asyncio.Future[Accepted]
    deadline: asyncio.TimerHandle | None = None
    resend: asyncio.TimerHandle | None = None
    last_error: str | None = None

    def stop_timers(self) -> None:
        for handle in (self.deadline, self.resend):
            if handle is not None:
                handle.cancel()


def _retrieve(future: asyncio.Future[Accepted]) -> None:
    """Mark a failure as seen: the caller may never await ``wait_accepted``."""
    if not future.cancelled():
        future.exception()


class Delivery:
    """The pending chat messages, oldest first, and the outcomes of recent ones.

    ``send_again`` is called with a message whose re-send is due; sending is the caller's job.
    """

    def __init__(
        self,
        *,
        accept_timeout: float,
        resend_after: float,
        send_again: Callable[[PendingMessage], None],
    ) -> None:
        self._accept_timeout = accept_timeout
        self._resend_after = resend_after
        self._send_again = send_again
        self._pending: dict[str, PendingMessage] = {}
        self._outcomes: OrderedDict[str, asyncio.Future[Accepted]] = OrderedDict()

    def add(self, client_message_id: str, conversation_id: str, text: str) -> PendingMessage:
        if client_message_id in self._pending:
            raise InvalidArgumentError(f"clientMessageId {client_message_id!r} is already pending")
        loop = asyncio.get_running_loop()
        pending = PendingMessage(client_message_id, conversation_id, text, loop.create_future())
        pending.future.add_done_callback(_retrieve)
        pending.deadline = loop.call_later(self._accept_timeout, self._expire, pending)
        self._pending[client_message_id] = pending
        return pending

    def pending(self) -> list[PendingMessage]:
        return list(self._pending.values())

    def ids(self) -> tuple[str, ...]:
        return tuple(self._pending)

    def is_pending(self, pending: PendingMessage) -> bool:
        return self._pending.get(pending.client_message_id) is pending

    def sent(self, pending: PendingMessage) -> None:
        """``pending`` went out: send it again if nothing answers it within ``resend_after``."""
        self._arm_resend(pending, self._resend_after)

    async def wait_accepted(self, client_message_id: str) -> Accepted:
        pending = self._pending.get(client_message_id)
        future = pending.future if pending else self._outcomes.get(client_message_id)
        if future is None:
            raise UnknownMessageError(
                f"unknown clientMessageId {client_message_id!r}: not sent by this client "
                f"or finished more than {REMEMBERED_OUTCOMES} messages ago"
            )
        return await asyncio.shield(future)

    def on_accepted(self, frame: SystemFrame) -> None:
        data = frame.data or {}
        message_id = data.get("clientMessageId")
        pending = self._pending.get(message_id) if isinstance(message_id, str) else None
        if pending is None:
            return  # the answer to a re-send of a message accepted already
        server_id = data.get("messageId")
        self._finish(pending)
        pending.future.set_result(
            Accepted(
                client_message_id=pending.client_message_id,
                conversation_id=pending.conversation_id,
                message_id=server_id if isinstance(server_id, str) else None,
                frame=frame,
            )
        )

    def on_error(self, frame: ErrorFrame) -> None:
        """A retryable error re-sends the message it names; any other rejects it."""
        pending = self._pending.get(frame.client_message_id or "")
        if pending is None:
            return
        code = str(frame.code)  # a code this client does not know is a plain string
        pending.last_error = f"{code}: {frame.message}"
        if not frame.retryable:
            self._finish(pending)
            pending.future.set_exception(
                MessageRejectedError(pending.client_message_id, code, frame.message)
            )
            return
        delay = (
            frame.retry_after_ms / 1000
            if frame.retry_after_ms is not None
            else RETRY_WITHOUT_HINT_SECONDS
        )
        self._arm_resend(pending, delay)

    def fail_all(self, error: BaseException) -> None:
        for pending in list(self._pending.values()):
            self._finish(pending)
            pending.future.set_exception(error)

    def _arm_resend(self, pending: PendingMessage, delay: float) -> None:
        if pending.resend is not None:
            pending.resend.cancel()
        pending.resend = asyncio.get_running_loop().call_later(delay, self._resend, pending)

    def _resend(self, pending: PendingMessage) -> None:
        if self.is_pending(pending):
            self._send_again(pending)

    def _expire(self, pending: PendingMessage) -> None:
        if not self.is_pending(pending):
            return
        self._finish(pending)
        error = MessageNotAcceptedError(
            pending.client_message_id, self._accept_timeout, pending.last_error
        )
        logger.warning("%s", error)
        pending.future.set_exception(error)

    def _finish(self, pending: PendingMessage) -> None:
        pending.stop_timers()
        del self._pending[pending.client_message_id]
        self._outcomes[pending.client_message_id] = pending.future
        if len(self._outcomes) > REMEMBERED_OUTCOMES:
            self._outcomes.popitem(last=False)
