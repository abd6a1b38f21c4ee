"""botocore clients, built once per container from one session and reused by every invocation.

botocore, not boto3: boto3's clients are botocore's, and importing boto3 imports s3transfer
(about a third of a handler's cold start; ``tests/unit/test_cold_start.py`` keeps it out).
``AWS_ENDPOINT_URL`` (read by botocore itself) points them at local mode's embedded moto, and
``AWS_READ_TIMEOUT_SECONDS`` gives moto there more time than AWS needs.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar, cast

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from runtime import schema
from runtime.config import aws_read_timeout_from_env

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

# DynamoDB and SQS answer in milliseconds: a call that has not answered in a second is stuck,
# and a second attempt is all a handler's budget (its Lambda timeout) can afford.
CONNECT_TIMEOUT_SECONDS = 1
MAX_ATTEMPTS = 2
# botocore's standard mode sleeps a random share of 2**(attempt - 1) s before a retry.
MAX_RETRY_DELAY_SECONDS = 1
# Kept back from the Lambda timeout to build the answer and flush logs and metrics.
ANSWER_MARGIN_SECONDS = 0.5
# The management API's answer for a connection it has no open connection of (HTTP 410).
GONE_CODE = "GoneException"
# Error codes that mean "slow down": the same request succeeds later (HTTP 400 or 429).
_THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "LimitExceededException",
        "TransactionConflictException",
    }
)

# MessageSender's posting threads by default (runtime.delivery.DEFAULT_MAX_WORKERS), and so the
# management API's connections: the boto3 client's pool, or the lean path's one kept-alive
# socket per thread (runtime.posting.SignedTransport).
MANAGEMENT_MAX_CONNECTIONS = 64

# The management API: our own bounded retry handles 429 (MessageSender), so botocore's is off.
_MANAGEMENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=schema.DEFAULT_AWS_READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "total_max_attempts": 1},
    max_pool_connections=MANAGEMENT_MAX_CONNECTIONS,
)


Params = ParamSpec("Params")
Built = TypeVar("Built")
# One lock for every build: a client's build reads the session and the config (reentrant), and
# botocore's session is not safe to build clients from on several threads at once.
_BUILD_LOCK = threading.RLock()


class _BuiltOnce(Generic[Params, Built]):
    """``functools.cache`` that builds each value once: concurrent first calls wait for the
    first one's value instead of building their own. Lambda runs one invocation per container
    at a time, but local mode runs a burst of them on its threads, and a botocore client takes
    tens of milliseconds of CPU to build."""

    def __init__(self, build: Callable[Params, Built]) -> None:
        self._build = build
        self._built: dict[tuple[object, ...], Built] = {}
        functools.update_wrapper(self, build)

    def __call__(self, *args: Params.args, **kwargs: Params.kwargs) -> Built:
        key = (*args, *sorted(kwargs.items()))
        try:
            return self._built[key]  # built already: no lock on the path every call takes
        except KeyError:
            pass
        with _BUILD_LOCK:
            if key not in self._built:
                self._built[key] = self._build(*args, **kwargs)
            return self._built[key]

    def cache_clear(self) -> None:
        with _BUILD_LOCK:
            self._built.clear()


@_BuiltOnce
def _read_timeout_seconds() -> int:
    return aws_read_timeout_from_env()


@_BuiltOnce
def _config() -> Config:
    # A pool as large as the management API's: where invocations share the client (local mode's
    # 64 handler threads), botocore's default of 10 makes every call past the 10th open and
    # close a connection.
    return Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=_read_timeout_seconds(),
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        max_pool_connections=64,
    )


def call_worst_case_seconds() -> float:
    """The longest one DynamoDB or SQS call can take, every attempt hitting a timeout. A
    handler makes a call only with this much time left (plus ``ANSWER_MARGIN_SECONDS``): with
    the default timeouts, 5 s, well inside the stack's 10 s Lambda timeout."""
    attempt = CONNECT_TIMEOUT_SECONDS + _read_timeout_seconds()
    return MAX_ATTEMPTS * attempt + MAX_RETRY_DELAY_SECONDS


class OutOfTime(Exception):
    """Too little of the invocation is left for another AWS call to finish before the Lambda
    times out; nothing was sent."""


@dataclass(frozen=True)
class Deadline:
    """When an invocation must have answered: Lambda's timeout less ``ANSWER_MARGIN_SECONDS``,
    on ``time.monotonic()``."""

    at: float

    @classmethod
    def of(cls, context: object) -> Deadline:
        """From ``context.get_remaining_time_in_millis()``; unbounded without a Lambda context."""
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if not callable(remaining_ms):
            return cls(math.inf)
        return cls(time.monotonic() + int(remaining_ms()) / 1000 - ANSWER_MARGIN_SECONDS)

    def seconds_left(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        """Raise ``OutOfTime`` unless one more call can finish, all its attempts timing out."""
        left = self.seconds_left()
        needed = call_worst_case_seconds()
        if left < needed:
            raise OutOfTime(
                f"{max(0.0, left):.1f} s left before the Lambda timeout, "
                f"an AWS call may take {needed} s"
            )


UNBOUNDED = Deadline(math.inf)


def error_code(exc: ClientError) -> str:
    """The AWS error code botocore parsed from the answer (``Error.Code``), or ""."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    """Whether the same request can succeed later: throttling, a 5xx, a timeout or a broken
    connection. Anything else (a validation error, access denied) fails again on retry."""
    if isinstance(exc, OutOfTime | HTTPClientError | BotoConnectionError):
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return error_code(exc) in _THROTTLING_CODES or status == 429 or status >= 500
    return False


@_BuiltOnce
def _session() -> botocore.session.Session:
    # One session for every client: credentials are resolved, and the endpoint data loaded, once.
    return botocore.session.get_session()


@_BuiltOnce
def dynamodb() -> DynamoDBClient:
    return cast("DynamoDBClient", _session().create_client("dynamodb", config=_config()))


@_BuiltOnce
def sqs() -> SQSClient:
    return cast("SQSClient", _session().create_client("sqs", config=_config()))


@_BuiltOnce
def management_api(endpoint_url: str) -> ApiGatewayManagementApiClient:
    client = _session().create_client(
        "apigatewaymanagementapi", endpoint_url=endpoint_url, config=_MANAGEMENT_CONFIG
    )
    return cast("ApiGatewayManagementApiClient", client)


def session() -> botocore.session.Session:
    """The container's session: credentials and region for posting without a client."""
    return _session()


def management_config() -> Config:
    """The management API's timeouts and pool size, for the client and the lean posting path."""
    return _MANAGEMENT_CONFIG


def reset_clients() -> None:
    """Forget the cached clients (tests that switch between moto and stubs)."""
    for cached in (_session, _read_timeout_seconds, _config, dynamodb, sqs, management_api):
        cached.cache_clear()
