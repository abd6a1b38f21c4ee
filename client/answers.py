"""Streamed answers put back together: chunks in ``sequence`` order, duplicates dropped.

A responder streams one answer as ``chat_response`` frames sharing a ``messageId`` and numbered
by ``sequence`` from 0; the last has ``done: true``. After a reconnect the sender may replay the
answer so far to the new connection (``MessageSender``'s redirect), so the same chunk can arrive
twice: a chunk is identified by (conversationId, messageId, sequence) and kept once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from runtime.messages import ChatResponse

logger = logging.getLogger(__name__)

DEFAULT_REMEMBERED_ANSWERS = 4096
DEFAULT_UNFINISHED_ANSWER_BYTES = 8 * 1024 * 1024
DEFAULT_ANSWER_BACKLOG = 64
DEFAULT_BACKLOG_CONVERSATIONS = 1024

AnswerKey = tuple[str, str]  # (conversationId, messageId)


@dataclass(frozen=True)
class Answer:
    """A complete answer: its chunks in ``sequence`` order, the ``done`` frame last."""

    conversation_id: str
    message_id: str
    chunks: tuple[ChatResponse, ...]

    @property
    def content(self) -> str:
        return "".join(chunk.content for chunk in self.chunks)

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``done`` frame's metadata (sources, usage, ... whatever the responder sends)."""
        return self.chunks[-1].metadata

    @property
    def in_reply_to(self) -> str | None:
        """The ``clientMessageId`` of the question, when the responder named it."""
        return next((c.in_reply_to for c in reversed(self.chunks) if c.in_reply_to), None)


@dataclass(frozen=True)
class ChunkOutcome:
    """What one ``chat_response`` frame changed."""

    duplicate: bool
    # Content that became contiguous from the start of the answer with this frame, in order:
    # what a terminal prints. Empty when the frame filled no gap at the front.
    text: str = ""
    answer: Answer | None = None


@dataclass
class _Partial:
    chunks: dict[int, ChatResponse] = field(default_factory=dict)
    next_sequence: int = 0
    done_sequence: int | None = None
    size: int = 0  # content bytes held


class AnswerAssembler:
    """Turns ``chat_response`` frames, in any order and with repeats, into whole answers.

    Memory is bounded: at most ``remember`` finished answers are remembered (so late duplicates
    of them are still dropped), and unfinished ones are kept while they are at most
    ``remember`` and hold at most ``max_unfinished_bytes`` of content (UTF-8) together. Beyond
    either, the oldest unfinished answer is given up: a responder that never sends ``done``,
    or answers too big to hold, cannot grow the client without end. The later chunks of an
    answer given up are not duplicates (they still reach ``frames()``) but are not kept.
    """

    def __init__(
        self,
        remember: int = DEFAULT_REMEMBERED_ANSWERS,
        *,
        max_unfinished_bytes: int = DEFAULT_UNFINISHED_ANSWER_BYTES,
    ) -> None:
        if remember < 1:
            raise ValueError(f"remember must be at least 1, got {remember}")
        if max_unfinished_bytes < 1:
            raise ValueError(f"max_unfinished_bytes must be at least 1, got {max_unfinished_bytes}")
        self._remember = remember
        self._max_unfinished_bytes = max_unfinished_bytes
        self._unfinished_bytes = 0
        self._partials: OrderedDict[AnswerKey, _Partial] = OrderedDict()
        self._finished: OrderedDict[AnswerKey, None] = OrderedDict()
        self._given_up: OrderedDict[AnswerKey, None] = OrderedDict()

    @property
    def unfinished_bytes(self) -> int:
        """Content bytes held for answers still streaming."""
        return self._unfinished_bytes

    def add(self, frame: ChatResponse) -> ChunkOutcome:
        key = (frame.conversation_id, frame.message_id)
        if key in self._finished:
            return ChunkOutcome(duplicate=True)
        if key in self._given_up:
            return ChunkOutcome(duplicate=False)
        partial = self._partials.get(key)
        if partial is None:
            partial = self._partials[key] = _Partial()
        if (
            frame.sequence in partial.chunks
            or frame.sequence < partial.next_sequence
            or (partial.done_sequence is not None and frame.sequence > partial.done_sequence)
        ):
            return ChunkOutcome(duplicate=True)
        partial.chunks[frame.sequence] = frame
        size = len(frame.content.encode("utf-8"))
        partial.size += size
        self._unfinished_bytes += size
        if frame.done:
            partial.done_sequence = frame.sequence
        released = []
        while partial.next_sequence in partial.chunks:
            released.append(partial.chunks[partial.next_sequence].content)
            partial.next_sequence += 1
        text = "".join(released)
        if partial.done_sequence is None or partial.next_sequence <= partial.done_sequence:
            while (
                len(self._partials) > self._remember
                or self._unfinished_bytes > self._max_unfinished_bytes
            ):
                self._give_up_oldest()
            return ChunkOutcome(duplicate=False, text=text)
        del self._partials[key]
        self._unfinished_bytes -= partial.size
        self._finished[key] = None
        if len(self._finished) > self._remember:
            self._finished.popitem(last=False)
        chunks = tuple(partial.chunks[s] for s in range(partial.done_sequence + 1))
        answer = Answer(frame.conversation_id, frame.message_id, chunks)
        return ChunkOutcome(duplicate=False, text=text, answer=answer)

    def _give_up_oldest(self) -> None:
        key, partial = self._partials.popitem(last=False)
        self._unfinished_bytes -= partial.size
        self._given_up[key] = None
        if len(self._given_up) > self._remember:
            self._given_up.popitem(last=False)
        logger.warning(
            "gave up assembling answer %s of conversation %s: over %d unfinished answers or "
            "%d bytes of them (ClientConfig.unfinished_answer_bytes)",
            key[1],
            key[0],
            self._remember,
            self._max_unfinished_bytes,
        )


class AnswerInbox:
    """Finished answers: to the question waiting for them, else per conversation in order.

    An answer whose ``inReplyTo`` names a question registered with ``expect`` goes to that
    question only. Any other answer goes to ``get`` callers of its conversation; answers nobody
    asked for are kept (the newest ``backlog`` per conversation, for the ``conversations`` most
    recently answered) so that an answer finishing before its caller starts waiting is not
    missed.
    """

    def __init__(
        self,
        backlog: int = DEFAULT_ANSWER_BACKLOG,
        conversations: int = DEFAULT_BACKLOG_CONVERSATIONS,
    ) -> None:
        self._backlog = backlog
        self._conversations = conversations
        self._unread: OrderedDict[str, deque[Answer]] = OrderedDict()
        self._waiters: dict[str, deque[asyncio.Future[Answer]]] = {}
        self._replies: dict[str, asyncio.Future[Answer]] = {}
        self._failure: BaseException | None = None

    def expect(self, client_message_id: str) -> asyncio.Future[Answer]:
        """The future answer to this question; ``forget`` it when no longer waiting."""
        reply: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        if self._failure is not None:
            reply.set_exception(self._failure)
        else:
            self._replies[client_message_id] = reply
        return reply

    def forget(self, client_message_id: str) -> None:
        """Stop waiting: a later answer to this question goes to its conversation."""
        self._replies.pop(client_message_id, None)

    def put(self, answer: Answer) -> None:
        reply = self._replies.pop(answer.in_reply_to or "", None)
        if reply is not None and not reply.done():
            reply.set_result(answer)
            return
        waiters = self._waiters.get(answer.conversation_id)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(answer)
                return
        unread = self._unread.setdefault(answer.conversation_id, deque(maxlen=self._backlog))
        unread.append(answer)
        self._unread.move_to_end(answer.conversation_id)
        if len(self._unread) > self._conversations:
            self._unread.popitem(last=False)

    async def get(self, conversation_id: str) -> Answer:
        unread = self._unread.get(conversation_id)
        if unread:
            answer = unread.popleft()
            if not unread:
                del self._unread[conversation_id]
            return answer
        if self._failure is not None:
            raise self._failure
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(conversation_id, deque())
        waiters.append(waiter)
        try:
            return await waiter
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(conversation_id, None)

    def fail(self, exc: BaseException) -> None:
        """Every current and later ``get`` with nothing unread raises ``exc``."""
        self._failure = exc
        waiting = [*self._replies.values()]
        waiting += [waiter for waiters in self._waiters.values() for waiter in waiters]
        for waiter in waiting:
            if not waiter.done():
                waiter.set_exception(exc)
        self._replies.clear()
        self._waiters.clear()
