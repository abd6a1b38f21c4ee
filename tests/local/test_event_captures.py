"""The local gateway's events against events captured from real API Gateway (tests/events/).

Each event a handler gets over real sockets must have the key tree of its capture: the same
keys at every level, apart from the keys AWS documents as optional (``identity.userAgent`` when
the client sent a ``User-Agent``, the query string parameters when the URL has a query,
``requestContext.authorizer`` behind an authorizer) and the maps whose keys are the client's
(headers, query, authorizer context). Header names are checked against the captures too.
Sources: tests/events/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from websockets.sync.client import connect

from local.gateway import RouteTable
from tests.local.gateway_support import Recorder, allow
from tests.support import load_event

# Maps whose keys come from the client or the authorizer: compared by their own rules.
OPEN_MAPS = frozenset(
    {
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "stageVariables",
        "requestContext.authorizer",
    }
)
USER_AGENT = "requestContext.identity.userAgent"
QUERY = {"queryStringParameters", "multiValueQueryStringParameters"}
AUTHORIZER = "requestContext.authorizer"
CAPTURED_CONNECT = "powertools/apiGatewayWebSocketApiConnect"
CAPTURED_MESSAGE = "powertools/apiGatewayWebSocketApiMessage"
CAPTURED_MESSAGE_WITH_AGENT = "aws-lambda-go/apigw-websocket-request-send-message"
CAPTURED_DISCONNECT = "powertools/apiGatewayWebSocketApiDisconnect"
CAPTURED_DISCONNECT_WITH_AGENT = "aws-lambda-go/apigw-websocket-request-disconnect"
CAPTURED_AUTHORIZER = "powertools/apiGatewayAuthorizerWebSocketEvent"
DOCUMENTED_AUTHORIZER = "aws-docs/websocketRequestAuthorizer"


def key_tree(event: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every key path of ``event`` (``requestContext.identity.sourceIp``); open maps as one."""
    for key, value in event.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, Mapping) and path not in OPEN_MAPS:
            yield from key_tree(value, f"{path}.")


def tree(event: Mapping[str, Any]) -> set[str]:
    return set(key_tree(event))


def header_names(event: Mapping[str, Any]) -> set[str]:
    return {name.lower() for name in event["headers"]}


@pytest.fixture
def events(start_gateway: Any, recorder: Recorder) -> Any:
    """Run one connection (authorizer, ``$connect``, a message, ``$disconnect``) and return
    its four events; ``user_agent`` None sends no ``User-Agent`` at all."""

    def run(user_agent: str | None, query: str = "?token=t0k") -> dict[str, dict[str, Any]]:
        recorder.events.clear()
        routes = {
            "$connect": recorder.handler(),
            "$disconnect": recorder.handler(),
            "$default": recorder.handler({"statusCode": 200, "body": "ok"}),
        }
        table = RouteTable(routes=routes, authorizer=recorder.handler(allow()))
        gateway = start_gateway(table if query else routes)
        with connect(gateway.ws_url + query, user_agent_header=user_agent) as ws:
            ws.send(json.dumps({"action": "anything"}))
            assert ws.recv(timeout=5) == "ok"
        [disconnect] = recorder.wait_for("DISCONNECT")
        authorizers = recorder.of("AUTHORIZER")
        return {
            "authorizer": authorizers[0] if authorizers else {},
            "connect": recorder.of("CONNECT")[0],
            "message": recorder.of("MESSAGE")[0],
            "disconnect": disconnect,
        }

    return run


def test_without_a_user_agent_the_events_are_the_captures_key_for_key(events):
    """Powertools' captures come from a client that sent no ``User-Agent`` and no query."""
    seen = events(None, query="")
    assert tree(seen["connect"]) == tree(load_event(CAPTURED_CONNECT))
    assert tree(seen["message"]) == tree(load_event(CAPTURED_MESSAGE))
    assert tree(seen["disconnect"]) == tree(load_event(CAPTURED_DISCONNECT))
    assert "User-Agent" not in json.dumps(seen["connect"]["headers"])


def test_with_a_user_agent_identity_carries_it_as_in_the_browser_captures(events):
    seen = events("capture-test/1.0", query="")
    for kind in ("connect", "message", "disconnect"):
        assert seen[kind]["requestContext"]["identity"]["userAgent"] == "capture-test/1.0"
    assert tree(seen["message"]) == tree(load_event(CAPTURED_MESSAGE_WITH_AGENT))
    assert tree(seen["disconnect"]) == tree(load_event(CAPTURED_DISCONNECT_WITH_AGENT))
    assert tree(seen["connect"]) == tree(load_event(CAPTURED_CONNECT)) | {USER_AGENT}
    assert seen["connect"]["headers"]["User-Agent"] == "capture-test/1.0"


def test_behind_an_authorizer_only_the_documented_optional_keys_are_added(events):
    seen = events("capture-test/1.0")
    optional = {USER_AGENT, AUTHORIZER}
    assert tree(seen["connect"]) == tree(load_event(CAPTURED_CONNECT)) | optional | QUERY
    assert tree(seen["message"]) == tree(load_event(CAPTURED_MESSAGE)) | optional
    assert tree(seen["disconnect"]) == tree(load_event(CAPTURED_DISCONNECT)) | optional
    assert tree(seen["authorizer"]) == tree(load_event(CAPTURED_AUTHORIZER)) | {USER_AGENT}
    assert tree(seen["authorizer"]) == tree(load_event(DOCUMENTED_AUTHORIZER)) | {USER_AGENT}


def test_connect_headers_are_what_api_gateway_forwards_without_the_hop_by_hop_ones(events):
    """The client's own headers, ``Host``, ``Sec-WebSocket-*``, ``X-Amzn-Trace-Id`` and
    ``X-Forwarded-*``; never ``Connection`` or ``Upgrade`` (Powertools' ``$connect``)."""
    seen = events(None, query="")
    captured = header_names(load_event(CAPTURED_CONNECT))
    assert header_names(seen["connect"]) == captured
    assert set(seen["connect"]["multiValueHeaders"]) == set(seen["connect"]["headers"])
    assert header_names(seen["disconnect"]) == header_names(load_event(CAPTURED_DISCONNECT))


def test_the_authorizer_gets_the_upgrade_headers_as_in_aws_example(events):
    """AWS's example authorizer input carries ``Connection``, ``Upgrade`` and
    ``content-length: 0`` (its ``HeaderAuth1`` is that client's own header)."""
    seen = events(None)
    documented = header_names(load_event(DOCUMENTED_AUTHORIZER)) - {"headerauth1"}
    assert header_names(seen["authorizer"]) == documented
    assert seen["authorizer"]["headers"]["content-length"] == "0"


def test_extended_request_id_equals_request_id_in_every_event(events):
    seen = events("capture-test/1.0")
    for event in seen.values():
        context = event["requestContext"]
        assert context["extendedRequestId"] == context["requestId"]


@pytest.mark.parametrize(
    ("project_event", "capture"),
    [
        ("connect", CAPTURED_CONNECT),
        ("chat_message", CAPTURED_MESSAGE),
        ("disconnect", CAPTURED_DISCONNECT),
        ("authorizer_request", CAPTURED_AUTHORIZER),
    ],
)
def test_the_project_fixtures_have_the_captures_shape(project_event, capture):
    """The handlers' unit tests use these: same key tree as the capture, plus the documented
    optional keys they carry (a browser's ``userAgent``, a token query, the authorizer)."""
    extra = tree(load_event(project_event)) - tree(load_event(capture))
    missing = tree(load_event(capture)) - tree(load_event(project_event))
    assert missing == set()
    assert extra <= {USER_AGENT, AUTHORIZER} | QUERY
    context = load_event(project_event)["requestContext"]
    assert context["extendedRequestId"] == context["requestId"]
