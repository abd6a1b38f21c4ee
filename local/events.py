"""Lambda events shaped like API Gateway's WebSocket events (DESIGN §5), and AWS-shaped ids.

The gateway builds every event here, so a handler receives locally exactly the keys it gets in
AWS (the captures under ``tests/events/`` are the reference): ``$connect`` with headers and
(only when the URL has one) the query string, message routes with ``messageId`` and ``body`` but
no headers, ``$disconnect`` with ``disconnectStatusCode`` and ``disconnectReason``, and the
REQUEST authorizer event with ``methodArn``. ``extendedRequestId`` equals ``requestId``, and
``identity.userAgent`` is there only when the client sent a ``User-Agent``.
"""

from __future__ import annotations

import base64
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

EVENT_CONNECT = "CONNECT"
EVENT_MESSAGE = "MESSAGE"
EVENT_DISCONNECT = "DISCONNECT"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# API Gateway sends these (mostly empty) headers with $disconnect, whatever the client sent.
_DISCONNECT_HEADERS = ("x-api-key", "X-Forwarded-For", "x-restapi")
# Hop-by-hop headers of the upgrade: the authorizer sees them, the $connect function does not.
_HOP_BY_HOP = frozenset({"connection", "upgrade"})


# Request and message ids only need to be unique; a connection id is what the management API
# takes to reach a socket, so it comes from the OS's randomness. A ping needs three ids, and
# ``os.urandom`` is a system call each.
_ids = random.Random(os.urandom(16))  # noqa: S311 - unique ids, not secrets


def _aws_id(size: int, random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """URL-safe base64 of random bytes, like AWS's ``BFaT_fALIAMCKug=`` or ``JC1dgf9yoAMCK-g=``
    (captured events: Powertools' ``tests/events/apiGatewayWebSocketApi*.json``): letters, digits,
    ``-`` and ``_``, ending in ``=``; never ``+`` or ``/``."""
    return base64.urlsafe_b64encode(random_bytes(size)).decode("ascii")


def new_connection_id() -> str:
    return _aws_id(11)


def new_request_id() -> str:
    return _aws_id(11, _ids.randbytes)


def new_event_message_id() -> str:
    """``requestContext.messageId``, API Gateway's id of an inbound frame (not a ChatResponse's)."""
    return _aws_id(11, _ids.randbytes)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def clf_time(epoch_ms: int) -> str:
    """``requestTime`` in Common Log Format, ``25/Nov/2026:18:00:00 +0000`` (locale-free)."""
    return _clf_second(epoch_ms // 1000)


@lru_cache(maxsize=4)  # every event and access record of the same second: formatted once
def _clf_second(epoch_seconds: int) -> str:
    t = time.gmtime(epoch_seconds)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def method_arn(region: str, account_id: str, api_id: str, stage: str, route_key: str) -> str:
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{route_key}"


@dataclass(frozen=True)
class ConnectionFacts:
    """What API Gateway knows of a connection from its upgrade request."""

    connection_id: str
    connected_at_ms: int
    api_id: str
    stage: str
    domain_name: str
    source_ip: str
    user_agent: str | None  # None: the client sent no User-Agent
    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()


def _single_and_multi(
    pairs: tuple[tuple[str, str], ...],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _request_context(
    facts: ConnectionFacts,
    route_key: str,
    event_type: str,
    request_id: str,
    request_time_ms: int,
    authorizer: Mapping[str, Any] | None,
) -> dict[str, Any]:
    identity = {"sourceIp": facts.source_ip}
    if facts.user_agent is not None:
        identity["userAgent"] = facts.user_agent
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": clf_time(request_time_ms),
        "messageDirection": "IN",
        "stage": facts.stage,
        "connectedAt": facts.connected_at_ms,
        "requestTimeEpoch": request_time_ms,
        "identity": identity,
        "requestId": request_id,
        "domainName": facts.domain_name,
        "connectionId": facts.connection_id,
        "apiId": facts.api_id,
    }
    if authorizer is not None:
        context["authorizer"] = dict(authorizer)
    return context


def _with_request(
    event: dict[str, Any], facts: ConnectionFacts, headers_in: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    headers, multi_headers = _single_and_multi(headers_in)
    event["headers"] = headers
    event["multiValueHeaders"] = multi_headers
    if facts.query:
        query, multi_query = _single_and_multi(facts.query)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = multi_query
    return event


def authorizer_event(
    facts: ConnectionFacts, arn: str, request_id: str, request_time_ms: int
) -> dict[str, Any]:
    """The REQUEST authorizer's event for a ``$connect``."""
    event: dict[str, Any] = {"type": "REQUEST", "methodArn": arn}
    # As AWS's example shows it: the upgrade's own headers, and an empty body's length.
    headers = facts.headers
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers = (*headers, ("content-length", "0"))
    _with_request(event, facts, headers)
    event["stageVariables"] = {}
    event["requestContext"] = _request_context(
        facts, "$connect", EVENT_CONNECT, request_id, request_time_ms, None
    )
    return event


def connect_event(
    facts: ConnectionFacts,
    authorizer: Mapping[str, Any] | None,
    request_id: str,
    request_time_ms: int,
) -> dict[str, Any]:
    headers = tuple(
        (name, value) for name, value in facts.headers if name.lower() not in _HOP_BY_HOP
    )
    event = _with_request({}, facts, headers)
    event["requestContext"] = _request_context(
        facts, "$connect", EVENT_CONNECT, request_id, request_time_ms, authorizer
    )
    event["isBase64Encoded"] = False
    return event


def message_event(
    facts: ConnectionFacts,
    route_key: str,
    body: str,
    authorizer: Mapping[str, Any] | None,
    request_id: str,
    request_time_ms: int,
) -> dict[str, Any]:
    context = _request_context(
        facts, route_key, EVENT_MESSAGE, request_id, request_time_ms, authorizer
    )
    context["messageId"] = new_event_message_id()
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(
    facts: ConnectionFacts,
    authorizer: Mapping[str, Any] | None,
    status_code: int,
    reason: str,
    request_id: str,
    request_time_ms: int,
) -> dict[str, Any]:
    host = next((v for k, v in facts.headers if k.lower() == "host"), facts.domain_name)
    headers = {"Host": host, **dict.fromkeys(_DISCONNECT_HEADERS, "")}
    context = _request_context(
        facts, "$disconnect", EVENT_DISCONNECT, request_id, request_time_ms, authorizer
    )
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
