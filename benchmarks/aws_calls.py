"""AWS calls per event, counted by hooking botocore's event system, and what they cost.

Every API call a botocore client makes emits ``before-call.<service>.<Operation>`` once (retries
are below that layer), so a handler registered on the ``runtime.aws`` clients' ``meta.events``
counts exactly the calls the handlers make. The handlers run in this process against moto
(``mock_aws``); the authorizer fetches its JWKS from a loopback server, which is not an AWS call.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from benchmarks.environment import create_resources, patched_environ
from benchmarks.events import DOMAIN_NAME, STAGE, ConnectionEvents
from benchmarks.jwks import serve_issuer
from benchmarks.mode import Mode
from benchmarks.pricing import Assumptions, CallCounts, cost_per_million_chat_messages
from benchmarks.report import STATUS_FAILED, Section
from local.events import now_ms
from local.gateway import LambdaContext

NAME = "aws_calls"
TARGET_CHAT_MESSAGE_CALLS = 2
TARGET_PING_CALLS = 1
MANAGEMENT_ENDPOINT = f"https://{DOMAIN_NAME}/{STAGE}"
FUNCTION_TIMEOUT_MS = 10_000  # the stack's default lambdaTimeoutSeconds


class CallCounter:
    """Counts ``before-call`` events of the clients it is attached to, by operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call.*.*", self._count)

    def _count(self, event_name: str, **kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls[f"{service}.{operation}"] += 1

    @contextmanager
    def measure(self) -> Iterator[Counter[str]]:
        """The calls made inside the block."""
        before = self.calls.copy()
        measured: Counter[str] = Counter()
        yield measured
        measured.update(self.calls - before)


def _lambda_memory_mb() -> int:
    """The stack's default function memory, where the Pulumi settings state it."""
    from components.settings import StackSettings

    default = StackSettings.model_fields["lambda_memory_mb"].default
    return int(default)


def run(mode: Mode) -> Section:
    from moto import mock_aws

    fanout_sizes = (1, 10) if mode is Mode.SMOKE else (1, 10, 100)
    with serve_issuer() as issuer, mock_aws():
        resources = create_resources(None)
        env = {
            **resources.handler_environment(LOG_LEVEL="WARNING"),
            **issuer.auth_environment(),
        }
        # The handlers' EMF metrics and Powertools' empty-metrics warning would garble the table.
        with (
            patched_environ(env),
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            measured = _measure(issuer.token, fanout_sizes)
    return _section(measured, fanout_sizes)


def _measure(token: Any, fanout_sizes: tuple[int, ...]) -> dict[str, Any]:
    from runtime import aws
    from runtime.config import StoreConfig
    from runtime.connections import ConnectionStore
    from runtime.sender import MessageSender

    aws.reset_clients()
    handlers = {
        name: importlib.import_module(f"runtime.handlers.{name}")
        for name in ("authorizer", "connect", "disconnect", "message")
    }
    counter = CallCounter()
    counter.attach(aws.dynamodb())
    counter.attach(aws.sqs())
    counter.attach(aws.management_api(MANAGEMENT_ENDPOINT))
    user_id = "calls-user"
    # As both clients connect: with their instance id (its first connect closes nothing).
    connection = ConnectionEvents.new(user_id, token(user_id), instance_id=uuid.uuid4().hex)
    measured: dict[str, Any] = {}
    answers: dict[str, Any] = {}

    def count(name: str, handler: str, event: dict[str, Any]) -> None:
        context = LambdaContext(
            function_name=handler,
            aws_request_id=str(uuid.uuid4()),
            invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{handler}",
            log_group_name=f"/aws/lambda/{handler}",
            log_stream_name="benchmark",
            deadline_ms=now_ms() + FUNCTION_TIMEOUT_MS,
        )
        with counter.measure() as calls:
            answers[name] = handlers[handler].handler(event, context)
        measured[name] = dict(calls)

    count("authorizer", "authorizer", connection.authorizer())
    count("connect", "connect", connection.connect())
    count("chat_message", "message", connection.chat_message())
    count("ping", "message", connection.ping())
    count("disconnect", "disconnect", connection.disconnect())
    _check_answers(answers)

    # Past the per-user connection limit: a broadcast's calls are measured up to 100 connections.
    store = ConnectionStore(replace(StoreConfig.from_env(), max_connections_per_user=0))
    # The boto3 path: its calls pass botocore's hooks (the lean path makes the same posts).
    with MessageSender(store, MANAGEMENT_ENDPOINT, posting="boto3") as sender:
        for size in fanout_sizes:
            fan_user = f"fanout-user-{size}"
            for _ in range(size):
                store.add(ConnectionEvents.new(fan_user).connection_id, fan_user)
            with counter.measure() as calls:
                result = sender.broadcast_to_user(fan_user, {"type": "system", "event": "notice"})
            if result.sent != size:
                raise RuntimeError(f"broadcast to {size} connections delivered {result.sent}")
            measured[f"broadcast_to_{size}"] = dict(calls)
    aws.reset_clients()
    return measured


def _check_answers(answers: dict[str, Any]) -> None:
    """A count is only meaningful if the handler did its job."""
    problems = []
    if answers["authorizer"]["policyDocument"]["Statement"][0]["Effect"] != "Allow":
        problems.append("authorizer did not allow")
    for name in ("connect", "disconnect"):
        if answers[name].get("statusCode") != 200:
            problems.append(f"{name} answered {answers[name]!r}")
    for name, event in (("chat_message", "accepted"), ("ping", "pong")):
        frame = json.loads(answers[name].get("body") or "{}")
        if frame.get("event") != event:
            problems.append(f"{name} answered {frame!r}, not {event}")
    if problems:
        raise RuntimeError("; ".join(problems))


def _total(calls: dict[str, int]) -> int:
    return sum(calls.values())


def _section(measured: dict[str, Any], fanout_sizes: tuple[int, ...]) -> Section:
    section = Section(NAME)
    events = {
        name: {"calls": _total(calls), "by_operation": calls} for name, calls in measured.items()
    }
    chat_calls = events["chat_message"]["calls"]
    ping_calls = events["ping"]["calls"]
    targets = {
        "chat_message_max_calls": TARGET_CHAT_MESSAGE_CALLS,
        "ping_max_calls": TARGET_PING_CALLS,
        "chat_message_met": chat_calls <= TARGET_CHAT_MESSAGE_CALLS,
        "ping_met": ping_calls <= TARGET_PING_CALLS,
    }
    cost = cost_per_million_chat_messages(
        CallCounts(
            connect=measured["connect"],
            disconnect=measured["disconnect"],
            chat_message=measured["chat_message"],
        ),
        Assumptions(lambda_memory_mb=_lambda_memory_mb()),
    )
    largest = max(fanout_sizes)
    events_per_post = events[f"broadcast_to_{largest}"]["calls"] / largest
    section.data = {
        "method": "botocore before-call hook on the runtime.aws clients; handlers against moto",
        "events": events,
        "targets": targets,
        "broadcast_calls_per_connection_ratio": round(events_per_post, 3),
        "cost": cost,
    }
    for name in ("authorizer", "connect", "chat_message", "ping", "disconnect"):
        operations = ", ".join(f"{op} x{n}" for op, n in sorted(measured[name].items())) or "none"
        target = ""
        if name == "chat_message":
            target = f"target <= {TARGET_CHAT_MESSAGE_CALLS}: " + (
                "met" if targets["chat_message_met"] else "MISSED"
            )
        elif name == "ping":
            target = f"target <= {TARGET_PING_CALLS}: " + (
                "met" if targets["ping_met"] else "MISSED"
            )
        section.row(
            f"{name}: AWS calls",
            str(events[name]["calls"]),
            "; ".join(filter(None, [operations, target])),
        )
    for size in fanout_sizes:
        name = f"broadcast_to_{size}"
        section.row(
            f"broadcast to {size}: AWS calls",
            str(events[name]["calls"]),
            ", ".join(f"{op} x{n}" for op, n in sorted(measured[name].items())),
        )
    chunks = cost["assumptions"]["streamed_answer_chunks"]
    section.row(
        "cost per million chat messages",
        f"${cost['usd_per_million_chat_messages']:.2f}",
        f"${cost['with_streamed_answer_usd']:.2f} with a {chunks}-chunk streamed answer "
        "(assumptions in results.json)",
    )
    if not (targets["chat_message_met"] and targets["ping_met"]):
        section.status = STATUS_FAILED
        section.reason = f"chat_message {chat_calls} calls, ping {ping_calls} calls: over target"
    return section
