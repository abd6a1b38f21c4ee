"""One frame to one connection: the management API's answer, mapped, with a bounded retry.

The AWS facts of DESIGN §4 are handled here and nowhere else: 410 ``GoneException`` (a
``ClientError`` subclass, so caught first, and a 410 without the ``x-amzn-ErrorType`` header
too) is ``GONE``; 429 ``LimitExceededException`` (also "the client's buffer is full") is retried
with exponential backoff and jitter, then ``FAILED``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from runtime.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

DEFAULT_MAX_RETRIES = 3
DEFAULT_BASE_BACKOFF_SECONDS = 0.05

_GONE_STATUS = 410
_THROTTLED_STATUS = 429
_THROTTLING_CODES = frozenset(
    {"LimitExceededException", "ThrottlingException", "TooManyRequestsException"}
)


class SendStatus(Enum):
    SENT = "sent"
    GONE = "gone"  # 410: the connection no longer exists (its row has been removed)
    FAILED = "failed"  # throttled past the retries, forbidden, 5xx, network: logged


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before posting a throttled frame again."""

    max_retries: int = DEFAULT_MAX_RETRIES
    base_backoff_seconds: float = DEFAULT_BASE_BACKOFF_SECONDS

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries={self.max_retries} must be >= 0")
        if self.base_backoff_seconds < 0:
            raise ValueError(f"base_backoff_seconds={self.base_backoff_seconds} must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = self.base_backoff_seconds * 2.0**attempt
        # Jitter only spreads retries out; it needs no cryptographic randomness.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311


class Poster:
    """Posts frames through the boto3 ``apigatewaymanagementapi`` client, retrying 429s."""

    def __init__(
        self,
        client: ApiGatewayManagementApiClient,
        policy: RetryPolicy,
        sleep: Callable[[float], None],
        closed: threading.Event,
    ) -> None:
        self.client = client
        self.policy = policy
        self._sleep = sleep
        self._closed = closed

    def post(self, connection_id: str, data: bytes) -> SendStatus:
        """One frame to one connection with the bounded 429 retry; no metrics (caller tallies)."""
        exceptions = self.client.exceptions
        attempt = 0
        while True:
            try:
                self.client.post_to_connection(ConnectionId=connection_id, Data=data)
                return SendStatus.SENT
            except exceptions.GoneException:
                return SendStatus.GONE
            except ClientError as exc:
                code, status = _error_code(exc), _http_status(exc)
                if status == _GONE_STATUS:
                    # A 410 without the x-amzn-ErrorType header is not mapped to GoneException.
                    return SendStatus.GONE
                throttled = code in _THROTTLING_CODES or status == _THROTTLED_STATUS
                if throttled and attempt < self.policy.max_retries and not self._closed.is_set():
                    self._sleep(self.policy.backoff(attempt))
                    attempt += 1
                    continue
                logger.warning(
                    "post_to_connection failed",
                    extra={
                        "connectionId": connection_id,
                        "errorCode": code,
                        "httpStatus": status,
                        "attempts": attempt + 1,
                    },
                )
                return SendStatus.FAILED
            except BotoCoreError as exc:
                logger.warning(
                    "post_to_connection failed",
                    extra={"connectionId": connection_id, "error": type(exc).__name__},
                )
                return SendStatus.FAILED
