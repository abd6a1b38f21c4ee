"""The one task that writes to a connection, so that no caller waits on a send or breaks one.

``send_chat`` hands a message over and returns at once; the writer sends the messages in order,
with the keep-alive ``ping`` ahead of them. A caller's cancellation never reaches a send: a send
stopped half-way through a fragmented message would leave ``websockets`` waiting for the
continuation, and every later send would fail. A send error other than a closed connection
drops the connection, so that it is replaced.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from client.delivery import Delivery, PendingMessage
from runtime.schema import MAX_FRAME_BYTES, ROUTE_PING

PING_TEXT = json.dumps({"action": ROUTE_PING})
# UTF-8 takes at most 4 bytes a character: a fragment this long fits one API Gateway frame.
FRAGMENT_CHARS = MAX_FRAME_BYTES // 4


def _fragments(text: str) -> list[str]:
    return [text[i : i + FRAGMENT_CHARS] for i in range(0, len(text), FRAGMENT_CHARS)]


class ConnectionWriter:
    """Writes one connection: everything pending when it starts, oldest first, then what comes.

    ``drop`` is called with a reason when a send fails for any reason but a closed connection.
    """

    def __init__(
        self, ws: ClientConnection, delivery: Delivery, drop: Callable[[str], None]
    ) -> None:
        self._ws = ws
        self._delivery = delivery
        self._drop = drop
        # An ordered set: a message due twice before it went out is sent once.
        self._queue = {p.client_message_id: p for p in delivery.pending()}
        self._wakeup = asyncio.Event()
        self._ping: asyncio.Future[asyncio.Future[None]] | None = None
        self._reply: asyncio.Future[None] | None = None

    def enqueue(self, pending: PendingMessage) -> None:
        self._queue.setdefault(pending.client_message_id, pending)
        self._wakeup.set()

    def frame_received(self) -> None:
        """Any frame after the ping proves the connection alive (a pong or anything else)."""
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(None)

    async def ping(self) -> None:
        """Send a ``ping`` ahead of the queue, then wait for the next frame received.

        The caller bounds the whole (``asyncio.timeout``): a peer that stopped reading blocks the
        send itself, and that must count as no answer.
        """
        written: asyncio.Future[asyncio.Future[None]] = asyncio.get_running_loop().create_future()
        self._ping = written
        self._wakeup.set()
        reply = await written
        await reply

    async def run(self) -> None:
        """Send until the connection closes or a send fails."""
        while True:
            if self._ping is not None:
                ping, self._ping = self._ping, None
                if ping.done():
                    continue  # its caller gave up waiting
                if not await self._send(PING_TEXT):
                    return
                self._reply = asyncio.get_running_loop().create_future()
                if not ping.done():
                    ping.set_result(self._reply)
            elif self._queue:
                pending = self._queue.pop(next(iter(self._queue)))
                if not self._delivery.is_pending(pending):
                    continue  # accepted or given up while it waited
                if not await self._send(pending.text):
                    return
                self._delivery.sent(pending)
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    async def _send(self, text: str) -> bool:
        """One text message (fragmented above the frame limit); False once it cannot be sent."""
        try:
            if len(text) > FRAGMENT_CHARS:
                await self._ws.send(_fragments(text))
            else:
                await self._ws.send(text)
        except ConnectionClosed:
            return False
        except Exception as exc:  # ProtocolError, ConcurrencyError: the connection is unusable
            self._drop(f"sending failed: {exc!r}")
            return False
        return True
