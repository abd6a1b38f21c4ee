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


def emits_metrics(
    handler: Callable[[dict[str, Any], Context], Result],
) -> Callable[[dict[str, Any], Context], Result]:
    """Flush the invocation's metrics when the handler returns or raises (``log_metrics``,
    thread-safe)."""

    @functools.wraps(handler)
    def wrapper(event: dict[str, Any], context: Context) -> Result:
        try:
            return handler(event, context)
        finally:
            flush_metrics()

    return wrapper


def bind_request(event: dict[str, Any]) -> None:
    """Key every log line of this invocation by the event's connection, request and route."""
    context = event.get("requestContext") or {}
    logger.append_keys(
        connectionId=context.get("connectionId"),
        requestId=context.get("requestId"),
        routeKey=context.get("routeKey"),
    )
