"""A chunked answer: typing on, numbered ``chat_response`` frames, done, typing off.

Every chunk frame carries the answer's ``messageId`` and ``sequence`` 0, 1, 2, ...; the done
frame's ``sequence`` is the number of content frames before it, so a client knows when it holds
them all. With redirect on, the frames sent so far are kept so a reconnected client gets them
replayed on its new connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.delivery import Dispatcher, serialize
from runtime.messages import MessageTooLargeError, chat_response, typing_indicator
from runtime.posting import SendStatus
from runtime.redirect import Redirector

# The done frame's size is checked before streaming starts, with the widest sequence it can get.
_WIDEST_SEQUENCE = 2**63 - 1


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
    def __init__(self, dispatcher: Dispatcher, redirector: Redirector) -> None:
        self.dispatcher = dispatcher
        self.redirector = redirector

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

        if not self._send(state, serialize(typing_indicator(conversation_id, True))):
            return result(0, False)
        sequence = 0
        try:
            for chunk in chunks:
                for frame in chunk_frames(conversation_id, message_id, chunk, sequence):
                    if not self._send(state, frame):
                        return result(sequence, False)
                    sequence += 1
        except Exception:
            self._typing_off(state, conversation_id)
            raise
        done = chat_response(
            conversation_id,
            "",
            message_id=message_id,
            done=True,
            sequence=sequence,
            metadata=done_metadata,
        )
        completed = self._send(state, serialize(done))
        if completed:
            self._typing_off(state, conversation_id)
        return result(sequence, completed)

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
        # The new connection missed everything so far: replay it (clients drop duplicates).
        state.targets = self.redirector.redirect(
            state.user_id, state.history, state.excluded, state.grace_seconds
        )
        return bool(state.targets)

    def _typing_off(self, state: _StreamState, conversation_id: str) -> None:
        if state.targets:
            data = serialize(typing_indicator(conversation_id, False))
            self.dispatcher.fan_out_counted(state.targets, [data])


def chunk_frames(
    conversation_id: str, message_id: str, text: str, first_sequence: int
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
        )
        try:
            frames.append(serialize(frame))
        except MessageTooLargeError:
            if len(piece) < 2:
                raise  # the ids alone fill the message: no split can help
            middle = len(piece) // 2
            pending.extend((piece[middle:], piece[:middle]))
    return frames
