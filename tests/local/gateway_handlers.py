"""Handlers the gateway tests (and ``python -m local --handlers``) serve; not project code."""

from __future__ import annotations

import json
import os
import sys
import time
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


def _scheduled_as_batch() -> bool | None:
    """Whether the calling thread runs under Linux's ``SCHED_BATCH`` (None: not Linux)."""
    if sys.platform != "linux":
        return None
    return os.sched_getscheduler(0) == os.SCHED_BATCH


def describe(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answers with what a handler sees of its process and its Lambda context; ``sleep`` in the
    body holds the invocation that long first, ``exit`` ends the process, ``sys.exit`` raises
    SystemExit, ``set`` returns a value JSON cannot hold, ``raise`` fails."""
    body = event.get("body") or ""
    if body.startswith("sleep "):
        time.sleep(float(body.removeprefix("sleep ")))
    if body == "exit":
        os._exit(3)
    if body == "sys.exit":
        sys.exit(3)
    if body == "set":
        return {"statusCode": 200, "body": {1, 2}}
    if body == "raise":
        raise ValueError("bug")
    return {
        "statusCode": 200,
        "body": json.dumps(
            {
                "body": body,
                "pid": os.getpid(),
                "loaded_in": _LOADED_IN,
                "function": context.function_name,
                "request_id": context.aws_request_id,
                "remaining": context.get_remaining_time_in_millis(),
                "memory": context.memory_limit_in_mb,
                "batch": _scheduled_as_batch(),
            }
        ),
    }


_LOADED_IN = os.getpid()  # module state: each worker process loads its own copy (a cold start)
PROCESS_ROUTES = {"$default": "tests.local.gateway_handlers:describe"}
