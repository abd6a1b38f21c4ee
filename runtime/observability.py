"""Powertools logger and EMF metrics shared by every handler.

Logs are JSON keyed by connectionId / requestId / routeKey. Tokens are never logged and message
content only at DEBUG.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from runtime import schema
from runtime.config import log_level_from_env

# The stack sets POWERTOOLS_SERVICE_NAME per stage (schema.service_name); its alarms watch it.
_service = os.environ.get(schema.ENV_POWERTOOLS_SERVICE_NAME) or schema.SERVICE_NAME
logger = Logger(service=_service, level=log_level_from_env())
metrics = Metrics(namespace=schema.METRICS_NAMESPACE, service=_service)


class Metric(StrEnum):
    CONNECTIONS_OPENED = "ConnectionsOpened"
    CONNECTIONS_CLOSED = "ConnectionsClosed"
    MESSAGES_RECEIVED = "MessagesReceived"
    MESSAGES_RATE_LIMITED = "MessagesRateLimited"
    MESSAGES_SENT = "MessagesSent"
    STALE_CONNECTIONS_REMOVED = "StaleConnectionsRemoved"
    GONE_WHILE_CONNECTING = "GoneWhileConnecting"  # a 410 during $connect: the row is kept
    # $connect closed the connection the same client instance had opened before, one that was
    # still open (a half-open one, or one the client abandoned); already closed ones not counted
    REPLACED_CONNECTIONS_CLOSED = "ReplacedConnectionsClosed"
    # $connect refused (409) a handshake a newer connection of the same client instance had
    # replaced: one that finished after the newer one, or was replaced while it ran
    SUPERSEDED_CONNECTIONS_REFUSED = "SupersededConnectionsRefused"
    AUTHORIZATION_DENIED = "AuthorizationDenied"
    UNEXPECTED_FAILURES = schema.UNEXPECTED_FAILURES_METRIC


# Powertools' metric set is a plain dict. Lambda runs one invocation per container at a time,
# but local mode and the benchmarks run many handlers in one process on a thread pool.
_metrics_lock = threading.Lock()
Result = TypeVar("Result")
Context = TypeVar("Context")


def count(metric: Metric, value: int = 1) -> None:
    if value:
        with _metrics_lock:
            metrics.add_metric(name=metric.value, unit=MetricUnit.Count, value=value)


def flush_metrics() -> None:
    """Write the recorded metrics as one EMF line; nothing when none were recorded."""
    with _metrics_lock:
        if metrics.metric_set:
            metrics.flush_metrics()


def handles_invocation(
    handler: Callable[[dict[str, Any], Context], Result],
) -> Callable[[dict[str, Any], Context], Result]:
    """A handler's invocation, logged and measured: what Powertools' ``inject_lambda_context``
    puts on every log line (cold start, function name, memory, ARN and request id) and the
    event's connection, request and route (``bind_request``), and the metrics flushed when it
    returns or raises (``log_metrics``, thread-safe).

    The keys are the thread's own (Powertools' thread-safe keys), where
    ``inject_lambda_context``'s are the logger's: Lambda runs one invocation per container at
    a time, but local mode runs many at once on its threads, and shared keys put one
    invocation's ids on another's log lines. Each decorated handler is its own function, so
    its first invocation is its cold start, as in its own Lambda container.
    """
    first = [True]

    @functools.wraps(handler)
    def wrapper(event: dict[str, Any], context: Context) -> Result:
        try:
            cold_start = first.pop()  # atomic: one invocation alone gets the cold start
        except IndexError:
            cold_start = False
        bind_request(
            event,
            cold_start=cold_start,
            function_name=getattr(context, "function_name", None),
            function_memory_size=getattr(context, "memory_limit_in_mb", None),
            function_arn=getattr(context, "invoked_function_arn", None),
            function_request_id=getattr(context, "aws_request_id", None),
        )
        try:
            return handler(event, context)
        finally:
            flush_metrics()

    return wrapper


def bind_request(event: dict[str, Any], **invocation: object) -> None:
    """Key every log line of this invocation, on this thread, by the event's connection,
    request and route (and ``invocation``'s keys); the thread's earlier keys are dropped."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    if not isinstance(context, dict):
        context = {}
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(
        **invocation,
        connectionId=context.get("connectionId"),
        requestId=context.get("requestId"),
        routeKey=context.get("routeKey"),
    )
