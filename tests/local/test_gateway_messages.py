"""Messages over real sockets: route selection, route responses, errors API Gateway answers
itself, concurrency, the 1003 / 1009 / 1001 closes and $disconnect on every way a socket ends."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from local.background import Background
from local.gateway import Gateway, GatewaySettings, RouteTable
from runtime import schema
from tests.local.gateway_handlers import PLAIN_ROUTES
from tests.local.gateway_support import Recorder


def _echo(route: str) -> Any:
    return lambda event: {"statusCode": 200, "body": f"{route}:{event['body']}"}


def _read_until_closed(ws: Any, send: str | None = None) -> None:
    while True:
        if send is not None:
            ws.send(send)
        ws.recv(timeout=10)


def _closed(ws: Any, send: str | None = None) -> ConnectionClosed:
    """How the server closed ``ws`` (sending ``send`` before each read, if given)."""
    with pytest.raises(ConnectionClosed) as closed:
        _read_until_closed(ws, send)
    return closed.value


@pytest.fixture
def routes(recorder: Recorder) -> dict[str, Any]:
    return {
        "$connect": recorder.handler(),
        "$disconnect": recorder.handler(),
        "$default": recorder.handler(_echo("$default")),
        "chat_message": recorder.handler(_echo("chat_message")),
    }


def test_route_selection_by_action_with_default_fallback(start_gateway, routes, recorder):
    gateway = start_gateway(routes)
    with connect(gateway.ws_url) as ws:
        chat = json.dumps({"action": "chat_message", "content": "hi"})
        ws.send(chat)
        assert ws.recv(timeout=5) == f"chat_message:{chat}"
        for body in ('{"action":"nope"}', "not json", '["action"]', '{"action":7}'):
            ws.send(body)
            assert ws.recv(timeout=5) == f"$default:{body}"
    assert [e["requestContext"]["routeKey"] for e in recorder.of("MESSAGE")] == [
        "chat_message",
        *["$default"] * 4,
    ]


def test_no_matching_route_and_no_default_answers_forbidden(start_gateway, access_log):
    gateway = start_gateway({"ping": lambda event, context: {"statusCode": 200, "body": "pong"}})
    with connect(gateway.ws_url) as ws:
        ws.send('{"action":"other"}')
        frame = ws.recv(timeout=5)
    answer = json.loads(frame)
    # API Gateway's own wording and spacing, byte for byte.
    assert frame == (
        f'{{"message": "Forbidden", "connectionId":"{answer["connectionId"]}", '
        f'"requestId":"{answer["requestId"]}"}}'
    )
    assert any(r.eventType == "MESSAGE" and r.status == 403 for r in access_log)


def test_handler_crash_answers_internal_server_error(start_gateway, access_log):
    def crash(event: dict[str, Any], context: Any) -> Any:
        raise ValueError("bug")

    gateway = start_gateway({"$default": crash})
    with connect(gateway.ws_url) as ws:
        ws.send("x")
        frame = ws.recv(timeout=5)
        answer = json.loads(frame)
        assert frame == (
            f'{{"message": "Internal server error", "connectionId":"{answer["connectionId"]}", '
            f'"requestId":"{answer["requestId"]}"}}'
        )
        ws.send("again")  # the connection survives a crashing handler
        assert json.loads(ws.recv(timeout=5))["message"] == "Internal server error"
    assert [r.status for r in access_log if r.eventType == "MESSAGE"] == [502, 502]


def test_integration_timeout_answers_endpoint_request_timed_out(start_gateway):
    release = threading.Event()

    def stuck(event: dict[str, Any], context: Any) -> Any:
        release.wait(10)
        return {"statusCode": 200, "body": "late"}

    gateway = start_gateway({"$default": stuck}, integration_timeout_seconds=0.2)
    try:
        with connect(gateway.ws_url) as ws:
            ws.send("x")
            assert json.loads(ws.recv(timeout=5))["message"] == "Endpoint request timed out"
    finally:
        release.set()


def test_a_slow_handler_blocks_neither_other_connections_nor_other_messages(start_gateway):
    release = threading.Event()
    started = threading.Event()

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["body"] == "slow":
            started.set()
            assert release.wait(10)
        return {"statusCode": 200, "body": event["body"]}

    gateway = start_gateway({"$default": handle})
    with connect(gateway.ws_url) as slow, connect(gateway.ws_url) as fast:
        slow.send("slow")
        assert started.wait(5)
        fast.send("fast")
        assert fast.recv(timeout=5) == "fast"  # answered while "slow" still runs
        slow.send("same-connection")
        assert slow.recv(timeout=5) == "same-connection"
        release.set()
        assert slow.recv(timeout=5) == "slow"


def test_handlers_named_by_module_path_are_loaded_at_start(start_gateway):
    gateway = start_gateway(PLAIN_ROUTES)
    with connect(gateway.ws_url) as ws:
        ws.send("hello")
        answer = json.loads(ws.recv(timeout=5))
    assert answer == {"echo": "hello", "function": "tests-local-gateway_handlers-echo"}


def test_route_table_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\$connnect"):
        RouteTable(routes={"$connnect": print})
    with pytest.raises(TypeError, match="RouteTable"):
        RouteTable.coerce(["$default"])


def test_binary_frame_closes_1003_and_runs_disconnect(start_gateway, routes, recorder):
    gateway = start_gateway(routes)
    with connect(gateway.ws_url) as ws:
        ws.send(b"\x00\x01")
        closed = _closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == schema.CLOSE_UNSUPPORTED_DATA
    [event] = recorder.wait_for("DISCONNECT")
    assert event["requestContext"]["disconnectStatusCode"] == schema.CLOSE_UNSUPPORTED_DATA
    assert recorder.of("MESSAGE") == []


def test_message_over_128_kb_closes_1009_and_exactly_128_kb_passes(start_gateway, routes, recorder):
    gateway = start_gateway(routes)
    with connect(gateway.ws_url, max_size=None) as ws:
        exact = "x" * schema.MAX_MESSAGE_BYTES
        ws.send(exact)
        assert ws.recv(timeout=5) == f"$default:{exact}"
        ws.send("y" * (schema.MAX_MESSAGE_BYTES + 1))
        closed = _closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == schema.CLOSE_MESSAGE_TOO_BIG
    [event] = recorder.wait_for("DISCONNECT")
    assert event["requestContext"]["disconnectStatusCode"] == schema.CLOSE_MESSAGE_TOO_BIG
    assert len(recorder.of("MESSAGE")) == 1


def test_idle_timeout_closes_1001_and_runs_disconnect(start_gateway, routes, recorder):
    gateway = start_gateway(routes, idle_timeout_seconds=0.5)
    with connect(gateway.ws_url) as ws:
        closed = _closed(ws)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (schema.CLOSE_GOING_AWAY, "Going away")
    [event] = recorder.wait_for("DISCONNECT")
    context = event["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")


def test_messages_keep_a_connection_from_idling(start_gateway, routes):
    gateway = start_gateway(routes, idle_timeout_seconds=0.6)
    with connect(gateway.ws_url) as ws:
        for index in range(6):
            ws.send(str(index))
            assert ws.recv(timeout=5) == f"$default:{index}"
            threading.Event().wait(0.2)  # 1.2 s in all: twice the idle timeout
        ws.send("still open")
        assert ws.recv(timeout=5) == "$default:still open"


def test_maximum_duration_closes_1001_even_when_active(start_gateway, routes, recorder):
    gateway = start_gateway(routes, max_duration_seconds=0.5)
    with connect(gateway.ws_url) as ws:
        closed = _closed(ws, send="busy")
    assert closed.rcvd is not None
    assert closed.rcvd.code == schema.CLOSE_GOING_AWAY
    assert recorder.wait_for("DISCONNECT")[0]["requestContext"]["disconnectStatusCode"] == 1001


@pytest.mark.parametrize(
    ("code", "reason", "expected_code", "expected_reason"),
    [
        (1000, "bye", 1000, "bye"),
        (4001, "app reason", 4001, "app reason"),
        (1001, "", 1001, ""),
    ],
)
def test_client_close_codes_reach_disconnect(
    start_gateway, routes, recorder, code, reason, expected_code, expected_reason
):
    gateway = start_gateway(routes)
    with connect(gateway.ws_url) as ws:
        ws.close(code, reason)
    [event] = recorder.wait_for("DISCONNECT")
    context = event["requestContext"]
    assert context["disconnectStatusCode"] == expected_code
    assert context["disconnectReason"] == expected_reason


def test_dropped_tcp_connection_is_1006(start_gateway, routes, recorder):
    gateway = start_gateway(routes)
    with connect(gateway.ws_url) as ws:
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the network went away
        [event] = recorder.wait_for("DISCONNECT")
    assert event["requestContext"]["disconnectStatusCode"] == 1006


def test_stopping_the_gateway_closes_1001_and_runs_disconnect(start_gateway, routes, recorder):
    background = Background(Gateway(routes, GatewaySettings(port=0)))
    gateway = background.__enter__()
    with connect(gateway.ws_url) as ws:
        background.__exit__(None, None, None)
        closed = _closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    # $disconnect ran before stop() returned.
    assert recorder.of("DISCONNECT")[0]["requestContext"]["disconnectStatusCode"] == 1001


def test_handlers_get_the_function_timeout_and_memory_not_the_integration_timeout(start_gateway):
    def budget(event: dict[str, Any], context: Any) -> dict[str, Any]:
        body = {"remaining": context.get_remaining_time_in_millis(), "memory": 0}
        body["memory"] = context.memory_limit_in_mb
        return {"statusCode": 200, "body": json.dumps(body)}

    gateway = start_gateway(
        {"$default": budget}, function_timeout_seconds=7, function_memory_mb=512
    )
    with connect(gateway.ws_url) as ws:
        ws.send("x")
        answer = json.loads(ws.recv(timeout=5))
    assert 5000 < answer["remaining"] <= 7000  # counts down from 7 s, not from 29 s
    assert answer["memory"] == 512


def test_a_handler_past_its_function_timeout_fails_like_a_lambda_timeout(start_gateway, access_log):
    """Behind API Gateway a Lambda timeout is a function error: the client gets API Gateway's
    ``Internal server error`` frame, not ``Endpoint request timed out`` (the 29 s bound)."""
    release = threading.Event()

    def slow(event: dict[str, Any], context: Any) -> Any:
        release.wait(10)
        return {"statusCode": 200, "body": "late"}

    gateway = start_gateway({"$default": slow}, function_timeout_seconds=0.3)
    try:
        with connect(gateway.ws_url) as ws:
            ws.send("x")
            assert json.loads(ws.recv(timeout=5))["message"] == "Internal server error"
    finally:
        release.set()
    assert [r.status for r in access_log if r.eventType == "MESSAGE"] == [502]
