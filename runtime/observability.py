"""Powertools logger and EMF metrics shared by every handler.

Logs are JSON keyed by connectionId / requestId / routeKey. Tokens are never logged and message
content only at DEBUG.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from runtime import schema
from runtime.config import log_level_from_env

logger = Logger(service=schema.SERVICE_NAME, level=log_level_from_env())
metrics = Metrics(namespace=schema.METRICS_NAMESPACE, service=schema.SERVICE_NAME)


class Metric(StrEnum):
    CONNECTIONS_OPENED = "ConnectionsOpened"
    CONNECTIONS_CLOSED = "ConnectionsClosed"
    MESSAGES_RECEIVED = "MessagesReceived"
    MESSAGES_RATE_LIMITED = "MessagesRateLimited"
    MESSAGES_SENT = "MessagesSent"
    STALE_CONNECTIONS_REMOVED = "StaleConnectionsRemoved"
    AUTHORIZATION_DENIED = "AuthorizationDenied"


def count(metric: Metric, value: int = 1) -> None:
    if value:
        metrics.add_metric(name=metric.value, unit=MetricUnit.Count, value=value)


def bind_request(event: dict[str, Any]) -> None:
    """Key every log line of this invocation by the event's connection, request and route."""
    context = event.get("requestContext") or {}
    logger.append_keys(
        connectionId=context.get("connectionId"),
        requestId=context.get("requestId"),
        routeKey=context.get("routeKey"),
    )
