"""A chunked answer: typing on, numbered ``chat_response`` frames, done, typing off.

Every chunk frame carries the answer's ``messageId`` and ``sequence`` 0, 1, 2, ...; the done
frame's ``sequence`` is the number of content frames before it, so a client knows when it holds
them all. With redirect on, the frames sent so far are kept so a reconnected client gets them
replayed on its new connection.

Frames are coalesced, because API Gateway bills every frame (in 32 KB steps) and every post
costs CPU: the first chunk goes out at once (the time to the first token is unchanged), later
chunks are gathered for a window or until the next one would take the frame past 32 KB. The
window starts at ``coalesce_seconds`` and doubles with each frame up to
``max_coalesce_seconds``, so the first words flow as fast as tokens and a long answer settles
at a few frames a second. The answer's chunks are then pulled in a thread of their own, so a
window closes on time while the model is still thinking; when they end, what is gathered goes
out at once.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime import schema
from runtime.delivery import Dispatcher, serialize
from runtime.messages import MessageTooLargeError, chat_response, typing_indicator
from runtime.posting import SendStatus
from runtime.redirect import Redirector

# The done frame's size is checked before streaming starts, with the widest sequence it can get.
_WIDEST_SEQUENCE = 2**63 - 1
DEFAULT_COALESCE_SECONDS = 0.05
DEFAULT_MAX_COALESCE_SECONDS = 0.25


@dataclass(frozen=True)
class Coalescing:
    """How long later chunks are gathered into one frame; 0 sends every chunk at once."""

    seconds: float = DEFAULT_COALESCE_SECONDS
    max_seconds: float = DEFAULT_MAX_COALESCE_SECONDS

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"coalesce_seconds={self.seconds} must be >= 0")
        if self.max_seconds < self.seconds:
            raise ValueError(
                f"max_coalesce_seconds={self.max_seconds} must be >= "
                f"coalesce_seconds={self.seconds}"
            )

    def window(self, frames_before: int) -> float:
        """The window of the frame after ``frames_before`` coalesced frames."""
        return float(min(self.seconds * 2.0 ** min(frames_before, 32), self.max_seconds))


class _Timeout:
    """The window closed before the next chunk arrived."""


class _End:
    """The answer has no more chunks."""


_TIMEOUT = _Timeout()
_END = _End()
_Item = str | _Timeout | _End


class _InlineFeed:
    """Chunks pulled in the caller's thread (no coalescing: nothing waits for a window)."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self._iterator = iter(chunks)

    def next(self, timeout: float | None) -> _Item:
        return next(self._iterator, _END)

    def stop(self) -> None:
        """Nothing runs ahead of the caller."""


class _ThreadFeed:
    """Chunks pulled in a thread of their own, so the caller can wait with a timeout."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self._queue: queue.SimpleQueue[_Item | BaseException] = queue.SimpleQueue()
        self._stopped = threading.Event()
        threading.Thread(target=self._pull, args=(chunks,), name="stream-feed", daemon=True).start()

    def _pull(self, chunks: Iterable[str]) -> None:
        iterator: Iterator[str] | None = None
        try:
            iterator = iter(chunks)
            for chunk in iterator:
                self._queue.put(chunk)
                if self._stopped.is_set():
                    break
            else:
                self._queue.put(_END)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            self._queue.put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if self._stopped.is_set() and close is not None:
                close()

    def next(self, timeout: float | None) -> _Item:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return _TIMEOUT
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self._stopped.set()


def _content_bytes(text: str) -> int:
    """The bytes ``text`` takes inside a frame's JSON (escapes included)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2


@dataclass(frozen=True)
class StreamResult:
    """The outcome of ``stream``; truthy when the ``done`` frame reached a live connection.

    ``connection_ids`` are where the stream ended: after a redirect they are the user's new
    connection(s), not the one the stream started on.
    """

    message_id: str
    chunks: int
    completed: bool
    connection_ids: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.completed


@dataclass
class _StreamState:
    targets: list[str]
    user_id: str | None
    redirect: bool
    grace_seconds: float
    excluded: set[str]
    history: list[bytes] = field(default_factory=list)


class Streamer:
    def __init__(
        self, dispatcher: Dispatcher, redirector: Redirector, coalescing: Coalescing
    ) -> None:
        self.dispatcher = dispatcher
        self.redirector = redirector
        self.coalescing = coalescing

    def stream(
        self,
        connection_id: str,
        conversation_id: str,
        chunks: Iterable[str],
        *,
        message_id: str,
        metadata: Mapping[str, Any],
        user_id: str | None,
        redirect: bool,
        grace_seconds: float,
        in_reply_to: str | None = None,
    ) -> StreamResult:
        """See ``MessageSender.stream``."""
        done_metadata = dict(metadata)
        # Fail on oversized metadata now, not after the answer has been sent.
        chat_response(
            conversation_id,
            "",
            message_id=message_id,
            done=True,
            sequence=_WIDEST_SEQUENCE,
            metadata=done_metadata,
            in_reply_to=in_reply_to,
        ).to_json()
        if redirect and user_id is None:
            # Read now, while the row still exists: after a drop, $disconnect deletes it.
            user_id = self.redirector.owner(connection_id)
        state = _StreamState(
            targets=[connection_id],
            user_id=user_id,
            redirect=redirect,
            grace_seconds=grace_seconds,
            excluded={connection_id},
        )

        def result(chunks_sent: int, completed: bool) -> StreamResult:
            return StreamResult(message_id, chunks_sent, completed, tuple(state.targets))

        typing_on = typing_indicator(conversation_id, True, in_reply_to=in_reply_to)
        if not self._send(state, serialize(typing_on)):
            return result(0, False)
        frames = _Frames(conversation_id, message_id, done_metadata, in_reply_to)
        feed = _ThreadFeed(chunks) if self.coalescing.seconds > 0 else _InlineFeed(chunks)
        try:
            if not self._send_chunks(state, frames, feed):
                return result(frames.sequence, False)
        except Exception:
            self._typing_off(state, conversation_id, in_reply_to)
            raise
        finally:
            feed.stop()
        completed = self._send(state, frames.done())
        if completed:
            self._typing_off(state, conversation_id, in_reply_to)
        return result(frames.sequence, completed)

    def _send_chunks(
        self, state: _StreamState, frames: _Frames, feed: _ThreadFeed | _InlineFeed
    ) -> bool:
        """Every chunk in frames: the first at once, later ones gathered for the coalescing
        window within one frame's room; False when no connection is left."""
        coalescing = self.coalescing
        gathered: list[str] = []
        size = 0
        deadline: float | None = None
        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                item = feed.next(timeout)
                if isinstance(item, str) and item:
                    chunk_size = _content_bytes(item)
                    if gathered and size + chunk_size > frames.room:
                        if not self._flush(state, frames, gathered):
                            return False
                        gathered, size, deadline = [], 0, None
                    gathered.append(item)
                    size += chunk_size
                    if frames.sequence == 0 or coalescing.seconds == 0:
                        deadline = time.monotonic()  # the first chunk goes out at once
                    elif deadline is None:
                        deadline = time.monotonic() + coalescing.window(frames.sequence - 1)
                    if deadline > time.monotonic():
                        continue
                elif not isinstance(item, _Timeout | _End):
                    continue  # an empty chunk
                if gathered and not self._flush(state, frames, gathered):
                    return False
                gathered, size, deadline = [], 0, None
                if isinstance(item, _End):
                    return True
        except Exception:
            # What was gathered before the answer failed still goes out (then typing off).
            if gathered:
                self._flush(state, frames, gathered)
            raise

    def _flush(self, state: _StreamState, frames: _Frames, gathered: list[str]) -> bool:
        """The gathered chunks as one frame (more if over 128 KB); False when none is left."""
        for data in frames.content("".join(gathered)):
            if not self._send(state, data):
                return False
            frames.sequence += 1
        return True

    def _send(self, state: _StreamState, data: bytes) -> bool:
        """One stream frame to the stream's current targets; False when none is left."""
        if state.redirect:
            state.history.append(data)
        deliveries = self.dispatcher.fan_out_counted(state.targets, [data])
        state.targets = [d.connection_id for d in deliveries if d.status is SendStatus.SENT]
        if state.targets:
            return True
        if not state.redirect or not any(d.status is SendStatus.GONE for d in deliveries):
            return False
        state.excluded.update(d.connection_id for d in deliveries)
        gone = [d.connection_id for d in deliveries if d.status is SendStatus.GONE]
        # The new connection missed everything so far: replay it (clients drop duplicates).
        state.targets = self.redirector.redirect(
            state.user_id, state.history, state.excluded, state.grace_seconds, gone
        )
        return bool(state.targets)

    def _typing_off(
        self, state: _StreamState, conversation_id: str, in_reply_to: str | None
    ) -> None:
        if state.targets:
            data = serialize(typing_indicator(conversation_id, False, in_reply_to=in_reply_to))
            self.dispatcher.fan_out_counted(state.targets, [data])


class _Frames:
    """The numbered ``chat_response`` frames of one answer."""

    def __init__(
        self,
        conversation_id: str,
        message_id: str,
        metadata: dict[str, Any],
        in_reply_to: str | None,
    ) -> None:
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.metadata = metadata
        self.in_reply_to = in_reply_to
        self.sequence = 0
        empty = chat_response(
            conversation_id,
            "",
            message_id=message_id,
            sequence=_WIDEST_SEQUENCE,
            in_reply_to=in_reply_to,
        )
        # Content bytes a coalesced frame may hold and stay one 32 KB frame.
        self.room = schema.MAX_FRAME_BYTES - len(serialize(empty))

    def content(self, text: str) -> list[bytes]:
        return chunk_frames(
            self.conversation_id, self.message_id, text, self.sequence, self.in_reply_to
        )

    def done(self) -> bytes:
        return serialize(
            chat_response(
                self.conversation_id,
                "",
                message_id=self.message_id,
                done=True,
                sequence=self.sequence,
                metadata=self.metadata,
                in_reply_to=self.in_reply_to,
            )
        )


def chunk_frames(
    conversation_id: str,
    message_id: str,
    text: str,
    first_sequence: int,
    in_reply_to: str | None = None,
) -> list[bytes]:
    """A chunk's ``chat_response`` frames, halving the text until each fits in 128 KB."""
    frames: list[bytes] = []
    pending = [text] if text else []
    while pending:
        piece = pending.pop()
        frame = chat_response(
            conversation_id,
            piece,
            message_id=message_id,
            sequence=first_sequence + len(frames),
            in_reply_to=in_reply_to,
        )
        try:
            frames.append(serialize(frame))
        except MessageTooLargeError:
            if len(piece) < 2:
                raise  # the ids alone fill the message: no split can help
            middle = len(piece) // 2
            pending.extend((piece[middle:], piece[:middle]))
    return frames
