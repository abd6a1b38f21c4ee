"""Handlers the gateway tests (and ``python -m local --handlers``) serve; not project code."""

from __future__ import annotations

import json
from typing import Any

from local.gateway import RouteTable


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answers every message with its body, and the function name it ran as."""
    return {
        "statusCode": 200,
        "body": json.dumps({"echo": event.get("body"), "function": context.function_name}),
    }


def allow_all(event: dict[str, Any], context: Any) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get("token", "")
    return {
        "principalId": token,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
            ],
        },
        "context": {"userId": token},
    }


ROUTES = RouteTable(routes={"$default": echo}, authorizer=allow_all)
PLAIN_ROUTES = {"$default": "tests.local.gateway_handlers:echo"}
