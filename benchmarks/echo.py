"""The plain Python echo handler behind every emulator of the peer benchmark.

``$connect`` and ``$disconnect`` answer 200; every other route posts the message body back to
its sender through the emulator's ``@connections`` endpoint, read from ``ECHO_MANAGEMENT_ENDPOINT``
(each emulator has its own). Architect's sandbox and serverless-offline load the very same file
as our gateway does (``--handlers benchmarks.echo:ROUTES``).

It posts with a plain boto3 client, as most handlers do. With ``ECHO_POSTING=lean`` it posts
the way rag-websocket's own handlers do instead, through ``runtime.posting``'s lean path
(imported only then, so by default this file needs nothing from the project):
``python -m benchmarks peer --echo-posting lean`` runs the comparison so.

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
POSTING_VARIABLE = "ECHO_POSTING"
POSTINGS = ("boto3", "lean")
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


@cache
def _lean_transport(endpoint_url: str) -> Any:
    os.environ.setdefault("AWS_DEFAULT_REGION", DEFAULT_REGION)  # as for the boto3 client
    from runtime.posting import lean_transport

    return lean_transport(endpoint_url)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    request_context = event.get("requestContext") or {}
    if request_context.get("eventType") in _CONNECTION_EVENTS:
        return {"statusCode": 200}
    connection_id, data = request_context["connectionId"], (event.get("body") or "").encode()
    endpoint_url = os.environ[ENDPOINT_VARIABLE]
    if os.environ.get(POSTING_VARIABLE) == "lean":
        from runtime.posting import SendStatus

        answer = _lean_transport(endpoint_url).post(connection_id, data)
        if answer.status is not SendStatus.SENT:  # any 2xx: serverless-offline answers 204
            raise RuntimeError(f"post to {connection_id} failed: {answer}")
    else:
        _management_api(endpoint_url).post_to_connection(ConnectionId=connection_id, Data=data)
    return {"statusCode": 200}


def pong(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The ``system``/``pong`` frame as the route response, like the project's ping answer."""
    return {"statusCode": 200, "body": json.dumps({"type": "system", "event": "pong"})}


# Named, not passed as callables, so ``--handler-processes`` can load them in worker processes.
ROUTES = {route: f"{__name__}:handler" for route in ("$connect", "$disconnect", "$default")}
PING_ROUTES = {"$connect": handler, "$disconnect": handler, "ping": pong}
