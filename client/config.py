"""The client's knobs, checked once when the client is built."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from client.answers import DEFAULT_ANSWER_BACKLOG, DEFAULT_UNFINISHED_ANSWER_BYTES
from client.backoff import (
    DEFAULT_INITIAL_DELAY_SECONDS,
    DEFAULT_MAX_DELAY_SECONDS,
    DEFAULT_RESET_AFTER_SECONDS,
)
from client.subscriptions import DEFAULT_SUBSCRIPTION_LIMIT
from runtime.schema import IDLE_TIMEOUT_SECONDS, SQS_DEDUPLICATION_WINDOW_SECONDS

DEFAULT_PING_INTERVAL_SECONDS = 300.0  # half of API Gateway's 10-minute idle timeout
DEFAULT_PONG_TIMEOUT_SECONDS = 15.0  # a ping runs a Lambda function: allow for a cold start
DEFAULT_ACCEPT_TIMEOUT_SECONDS = 30.0
DEFAULT_RESEND_AFTER_SECONDS = 10.0
DEFAULT_OPEN_TIMEOUT_SECONDS = 10.0  # TLS, then the authorizer and $connect functions (cold starts)
DEFAULT_CLOSE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class ClientConfig:
    """Timing of keep-alive, delivery and reconnects (all in seconds).

    - ``ping_interval``: how often the ``ping`` action is sent; below the idle timeout.
    - ``pong_timeout``: a ping answered by no frame at all within this marks the connection dead.
    - ``accept_timeout``: a chat message still not accepted this long after ``send_chat`` fails
      with ``MessageNotAcceptedError``; at most SQS's deduplication window, so that every re-send
      is deduplicated by the queue.
    - ``resend_after``: a chat message with no answer (accepted or error) this long after it was
      sent is sent again with the same ``clientMessageId``.
    - ``reconnect_initial_delay`` / ``reconnect_max_delay``: the full-jitter backoff's first
      ceiling and cap. The series goes on across drops; it starts again from the first delay
      only after a connection stayed up ``backoff_reset_after``.
    - ``open_timeout``: one connection attempt (TCP, TLS, handshake, authorizer) at most this long.
    - ``answer_backlog``: finished answers kept per conversation for ``receive_answer``.
    - ``unfinished_answer_bytes``: content of answers still streaming, in total, in UTF-8 bytes;
      beyond it the oldest unfinished answer is given up (its chunks still reach ``frames()``).
    - ``subscription_limit``: unread items of one ``frames()``/``events()`` subscription; a
      consumer further behind gets ``SubscriptionOverflowError``.
    - ``proxy``: ``True`` uses the proxy of the environment (``HTTPS_PROXY``...), ``None`` none.
    """

    ping_interval: float = DEFAULT_PING_INTERVAL_SECONDS
    pong_timeout: float = DEFAULT_PONG_TIMEOUT_SECONDS
    accept_timeout: float = DEFAULT_ACCEPT_TIMEOUT_SECONDS
    resend_after: float = DEFAULT_RESEND_AFTER_SECONDS
    reconnect_initial_delay: float = DEFAULT_INITIAL_DELAY_SECONDS
    reconnect_max_delay: float = DEFAULT_MAX_DELAY_SECONDS
    backoff_reset_after: float = DEFAULT_RESET_AFTER_SECONDS
    open_timeout: float = DEFAULT_OPEN_TIMEOUT_SECONDS
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT_SECONDS
    answer_backlog: int = DEFAULT_ANSWER_BACKLOG
    unfinished_answer_bytes: int = DEFAULT_UNFINISHED_ANSWER_BYTES
    subscription_limit: int = DEFAULT_SUBSCRIPTION_LIMIT
    proxy: str | Literal[True] | None = True

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name != "proxy" and (isinstance(value, bool) or value <= 0):
                raise ValueError(f"ClientConfig.{item.name} must be a number > 0, got {value!r}")
        if self.ping_interval >= IDLE_TIMEOUT_SECONDS:
            raise ValueError(
                f"ClientConfig.ping_interval must be below the {IDLE_TIMEOUT_SECONDS} s idle "
                f"timeout or the gateway closes idle connections; got {self.ping_interval}"
            )
        if self.accept_timeout > SQS_DEDUPLICATION_WINDOW_SECONDS:
            raise ValueError(
                "ClientConfig.accept_timeout must be at most SQS's "
                f"{SQS_DEDUPLICATION_WINDOW_SECONDS} s deduplication window, or a re-sent "
                f"message could be queued twice; got {self.accept_timeout}"
            )
        if self.reconnect_max_delay < self.reconnect_initial_delay:
            raise ValueError(
                "ClientConfig.reconnect_max_delay must be at least reconnect_initial_delay; "
                f"got {self.reconnect_max_delay} < {self.reconnect_initial_delay}"
            )
