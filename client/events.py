"""What the client reports about its connection: drops, reconnect attempts, reconnects."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class ConnectionEventKind(StrEnum):
    CONNECTED = "connected"  # the first connection is open
    DISCONNECTED = "disconnected"  # the connection dropped; a reconnect follows
    RECONNECTING = "reconnecting"  # one reconnect attempt is about to start
    RECONNECT_FAILED = "reconnect_failed"  # that attempt failed; another follows
    RECONNECTED = "reconnected"  # open again; unaccepted messages are being re-sent
    AUTH_FAILED = "auth_failed"  # the token was refused: the client stops, never retried
    CLOSED = "closed"  # the client was closed by its owner


@dataclass(frozen=True)
class ConnectionEvent:
    """One change of the connection, timestamped twice.

    ``at`` is ``time.monotonic()`` (for measuring: ``downtime`` is computed from it), ``wall_time``
    is UTC (for showing). ``dropped_at`` is the monotonic time of the drop a reconnect recovers
    from; ``attempt`` counts reconnect attempts since that drop, from 1.
    """

    kind: ConnectionEventKind
    attempt: int = 0
    delay: float | None = None  # RECONNECTING: the backoff delay waited before this attempt
    close_code: int | None = None  # DISCONNECTED: the WebSocket close code (1006: no close frame)
    reason: str = ""
    dropped_at: float | None = None
    at: float = field(default_factory=time.monotonic)
    wall_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def downtime(self) -> float | None:
        """Seconds from the drop to this event (RECONNECTING, RECONNECT_FAILED, RECONNECTED)."""
        return None if self.dropped_at is None else self.at - self.dropped_at

    def describe(self) -> str:
        """One human line, as the chat CLI prints it."""
        kind = self.kind
        if kind is ConnectionEventKind.DISCONNECTED:
            code = f" (close code {self.close_code})" if self.close_code is not None else ""
            return f"connection lost{code}{': ' + self.reason if self.reason else ''}"
        if kind is ConnectionEventKind.RECONNECTING:
            return f"reconnecting, attempt {self.attempt} after {self.delay or 0.0:.2f} s"
        if kind is ConnectionEventKind.RECONNECT_FAILED:
            return f"reconnect attempt {self.attempt} failed: {self.reason}"
        if kind is ConnectionEventKind.RECONNECTED:
            return f"reconnected after {self.downtime or 0.0:.2f} s ({self.attempt} attempt(s))"
        return f"{kind.value}{': ' + self.reason if self.reason else ''}"
