"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads the reconnects of
many clients dropped at the same moment, which matters against API Gateway's account-wide limit
of new connections per second. The first ceiling is small so that the first attempt comes almost
at once, and the cap is small so that a client is back within seconds of the server returning.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

DEFAULT_INITIAL_DELAY_SECONDS = 0.25
DEFAULT_MAX_DELAY_SECONDS = 2.0
# A connection that stayed up this long starts the series again from the first delay.
DEFAULT_RESET_AFTER_SECONDS = 5.0


@dataclass
class Backoff:
    """An endless series of delays: attempt ``n`` waits ``uniform(0, min(cap, initial * 2**n))``."""

    initial: float = DEFAULT_INITIAL_DELAY_SECONDS
    cap: float = DEFAULT_MAX_DELAY_SECONDS
    rng: random.Random = field(default_factory=random.SystemRandom)

    def __post_init__(self) -> None:
        if self.initial <= 0:
            raise ValueError(f"initial delay must be > 0 seconds, got {self.initial}")
        if self.cap < self.initial:
            raise ValueError(
                f"maximum delay ({self.cap} s) must be at least "
                f"the initial delay ({self.initial} s)"
            )

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` (0-based) can draw."""
        # min() before the power would overflow: the ceiling stops growing at the cap anyway.
        return min(self.cap, self.initial * 2.0 ** min(attempt, 64))

    def delays(self) -> Iterator[float]:
        attempt = 0
        while True:
            yield self.rng.uniform(0.0, self.ceiling(attempt))
            attempt += 1
