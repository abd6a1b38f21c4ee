"""The plain Python echo handler behind every emulator of the peer benchmark.

``$connect`` and ``$disconnect`` answer 200; every other route posts the message body back to
its sender through the emulator's ``@connections`` endpoint, read from ``ECHO_MANAGEMENT_ENDPOINT``
(each emulator has its own). It imports nothing from this project, so Architect's sandbox and
serverless-offline load the very same file as our gateway does (``--handlers
benchmarks.echo:ROUTES``).

``pong`` answers ``ping`` with a route response and no AWS call: behind ``PING_ROUTES`` the
gateway load benchmark measures the emulator alone, without the handlers' moto round trips.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

ENDPOINT_VARIABLE = "ECHO_MANAGEMENT_ENDPOINT"
DEFAULT_REGION = "us-east-1"
_CONNECTION_EVENTS = frozenset({"CONNECT", "DISCONNECT"})


@cache
def _management_api(endpoint_url: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        # Emulators do not all pass AWS_REGION to the handler; the region only names the signer.
        region_name=os.environ.get("AWS_REGION") or DEFAULT_REGION,
        config=Config(retries={"mode": "standard", "max_attempts": 1}, max_pool_connections=32),
    )


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    request_context = event.get("requestContext") or {}
    if request_context.get("eventType") in _CONNECTION_EVENTS:
        return {"statusCode": 200}
    body = event.get("body") or ""
    _management_api(os.environ[ENDPOINT_VARIABLE]).post_to_connection(
        ConnectionId=request_context["connectionId"], Data=body.encode("utf-8")
    )
    return {"statusCode": 200}


def pong(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The ``system``/``pong`` frame as the route response, like the project's ping answer."""
    return {"statusCode": 200, "body": json.dumps({"type": "system", "event": "pong"})}


# Named, not passed as callables, so ``--handler-processes`` can load them in worker processes.
ROUTES = {route: f"{__name__}:handler" for route in ("$connect", "$disconnect", "$default")}
PING_ROUTES = {"$connect": handler, "$disconnect": handler, "ping": pong}
