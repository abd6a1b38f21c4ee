"""$connect over real sockets: the authorizer (401/403/500), the $connect function's status,
the events' shapes (DESIGN §5) and the authorizer context carried into every later event."""

from __future__ import annotations

import json
import re
import socket
import threading
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from local.gateway import RouteTable
from tests.local.gateway_support import Recorder, allow
from tests.support import wait_until

CLF_TIME = re.compile(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000")
ACCOUNT_ARN = re.compile(r"arn:aws:execute-api:us-east-1:\d{12}:[a-z0-9]{10}/dev/\$connect")


def _rejected(url: str) -> tuple[int, bytes, Headers]:
    with pytest.raises(InvalidStatus) as rejected, connect(url, open_timeout=10):
        pass
    response = rejected.value.response
    return response.status_code, bytes(response.body or b""), response.headers


def _raises(error: Exception) -> Any:
    def fail(event: dict[str, Any]) -> Any:
        raise error

    return fail


def _guarded(recorder: Recorder, answer: Any = None, **routes: Any) -> RouteTable:
    """Routes recording every event, behind an authorizer answering ``answer``."""
    table = {"$connect": recorder.handler(), "$default": recorder.handler(), **routes}
    return RouteTable(routes=table, authorizer=recorder.handler(answer or allow()))


def test_no_token_is_401_without_invoking_the_authorizer(start_gateway, recorder, access_log):
    gateway = start_gateway(_guarded(recorder))
    assert _rejected(gateway.ws_url)[0] == 401
    assert _rejected(gateway.ws_url + "?token=")[0] == 401
    assert _rejected(gateway.ws_url + "?other=1")[0] == 401
    assert recorder.events == []
    assert [(r.eventType, r.status) for r in access_log] == [("CONNECT", 401)] * 3


class Unauthorized(Exception):
    """An authorizer's own exception class: Lambda reports its name as the error type."""


class Forbidden(Exception):
    pass


@pytest.mark.parametrize("error", [Exception, Unauthorized, PermissionError])
def test_authorizer_unauthorized_exception_is_401(start_gateway, recorder, access_log, error):
    """API Gateway answers 401 for an authorizer that fails with the message "Unauthorized",
    whatever the error's type: AWS's authorizer example does it with Node's
    ``callback("Unauthorized"); // Return a 401 Unauthorized response``
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-use-lambda-authorizer.html),
    whose type is no Python ``Exception``; a Python class of one's own has its own name."""

    def unauthorized(event: dict[str, Any]) -> Any:
        raise error("Unauthorized")

    gateway = start_gateway(_guarded(recorder, unauthorized))
    status, body, headers = _rejected(gateway.ws_url + "?token=bad")
    assert status == 401
    assert json.loads(body) == {"message": "Unauthorized"}
    assert headers["x-amzn-ErrorType"] == "UnauthorizedException"
    assert len(recorder.of("AUTHORIZER")) == 1
    assert recorder.of("CONNECT") == []  # $connect never ran
    assert access_log[-1].status == 401


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(allow(effect="Deny"), id="explicit-deny"),
        pytest.param(
            allow(resource="arn:aws:execute-api:us-east-1:123456789012:local00dev/*/*/*"),
            id="rest-shaped-wildcard",
        ),
        pytest.param(
            allow(resource="arn:aws:execute-api:us-east-1:123456789012:local00dev/prod/$connect"),
            id="other-stage",
        ),
    ],
)
def test_deny_or_a_policy_not_matching_method_arn_is_403(
    start_gateway, recorder, access_log, answer
):
    gateway = start_gateway(_guarded(recorder, answer))
    status, body, _ = _rejected(gateway.ws_url + "?token=t")
    assert status == 403
    assert json.loads(body) == {"message": "Forbidden"}
    assert access_log[-1].status == 403


def test_wildcards_that_cover_method_arn_are_allowed(start_gateway, recorder):
    resource = "arn:aws:execute-api:us-east-1:123456789012:local00dev/*"
    gateway = start_gateway(_guarded(recorder, allow(resource=resource)))
    with connect(gateway.ws_url + "?token=t"):
        pass


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda event: {"policyDocument": {}}, id="no-principal"),
        pytest.param(lambda event: "Allow", id="not-an-object"),
        pytest.param(allow(context={"nested": {"a": 1}}), id="object-in-context"),
        pytest.param(lambda event: 1 / 0, id="authorizer-crash"),
        pytest.param(_raises(Forbidden("Forbidden")), id="another-message"),
    ],
)
def test_a_broken_authorizer_is_500(start_gateway, recorder, answer):
    gateway = start_gateway(_guarded(recorder, answer))
    assert _rejected(gateway.ws_url + "?token=t")[0] == 500


def test_connect_function_status_rejects_the_handshake(start_gateway, recorder, access_log):
    too_many = recorder.handler({"statusCode": 429, "body": "Too many connections"})
    gateway = start_gateway(_guarded(recorder, **{"$connect": too_many}))
    status, body, _ = _rejected(gateway.ws_url + "?token=t")
    assert (status, body) == (429, b"Too many connections")
    assert (access_log[-1].eventType, access_log[-1].status) == ("CONNECT", 429)
    assert recorder.of("DISCONNECT") == []  # no connection, so no $disconnect


def test_connect_function_crash_is_502(start_gateway, recorder):
    def crash(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    gateway = start_gateway(_guarded(recorder, **{"$connect": recorder.handler(crash)}))
    assert _rejected(gateway.ws_url + "?token=t")[0] == 502


def test_connect_and_authorizer_past_the_function_timeout_fail_like_lambda_timeouts(
    start_gateway, recorder
):
    """A timed-out ``$connect`` function fails the handshake like any function error (502);
    a timed-out authorizer is API Gateway's 500, never the 29 s integration timeout's 504."""
    release = threading.Event()

    def slow(event: dict[str, Any]) -> Any:
        release.wait(10)
        return allow()(event) if event.get("type") == "REQUEST" else {"statusCode": 200}

    try:
        slow_connect = start_gateway(
            _guarded(recorder, **{"$connect": recorder.handler(slow)}),
            function_timeout_seconds=0.3,
        )
        assert _rejected(slow_connect.ws_url + "?token=t")[0] == 502
        slow_authorizer = start_gateway(_guarded(recorder, slow), function_timeout_seconds=0.3)
        assert _rejected(slow_authorizer.ws_url + "?token=t")[0] == 500
    finally:
        release.set()


def test_connect_without_status_code_is_accepted(start_gateway, recorder):
    gateway = start_gateway({"$connect": recorder.handler(None)})
    with connect(gateway.ws_url):
        pass


def test_event_shapes_and_authorizer_context_in_every_event(start_gateway, recorder):
    context = {"userId": "alice", "admin": True, "level": 3, "ratio": 0.5}
    table = _guarded(
        recorder,
        allow(principal="alice", context=context),
        **{
            "$disconnect": recorder.handler(),
            "ask": recorder.handler({"statusCode": 200, "body": "answer"}),
        },
    )
    gateway = start_gateway(table)
    url = gateway.ws_url + "?token=t0k&lang=en&lang=fr"
    with connect(url, user_agent_header="shape-test/1.0") as ws:
        ws.send(json.dumps({"action": "ask"}))
        assert ws.recv(timeout=5) == "answer"
    [authorizer_event] = recorder.of("AUTHORIZER")
    [connect_event] = recorder.of("CONNECT")
    [message_event] = recorder.of("ask")
    [disconnect_event] = recorder.wait_for("DISCONNECT")

    assert authorizer_event["type"] == "REQUEST"
    assert ACCOUNT_ARN.fullmatch(authorizer_event["methodArn"])
    assert authorizer_event["queryStringParameters"] == {"token": "t0k", "lang": "fr"}
    assert authorizer_event["multiValueQueryStringParameters"]["lang"] == ["en", "fr"]
    assert authorizer_event["stageVariables"] == {}
    assert "authorizer" not in authorizer_event["requestContext"]

    expected_authorizer = {
        "principalId": "alice",
        "userId": "alice",
        "admin": "true",
        "level": "3",
        "ratio": "0.5",
    }
    connect_context = connect_event["requestContext"]
    for event in (connect_event, message_event, disconnect_event):
        authorizer = dict(event["requestContext"]["authorizer"])
        assert isinstance(authorizer.pop("integrationLatency"), int)
        assert authorizer == expected_authorizer
        context_ = event["requestContext"]
        assert context_["connectionId"] == connect_context["connectionId"]
        assert context_["connectedAt"] == connect_context["connectedAt"]
        assert context_["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "shape-test/1.0"}
        assert context_["stage"] == "dev"
        assert context_["apiId"] == "local00dev"
        assert context_["messageDirection"] == "IN"
        assert re.fullmatch(
            r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", context_["requestTime"]
        )
        assert isinstance(context_["requestTimeEpoch"], int)
        assert context_["requestId"]
        assert context_["extendedRequestId"]
        assert event["isBase64Encoded"] is False

    assert connect_context["eventType"] == "CONNECT"
    assert connect_context["routeKey"] == "$connect"
    assert "messageId" not in connect_context
    assert connect_event["headers"]["User-Agent"] == "shape-test/1.0"
    assert connect_event["multiValueHeaders"]["User-Agent"] == ["shape-test/1.0"]
    assert connect_event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert connect_event["queryStringParameters"]["token"] == "t0k"

    assert message_event["requestContext"]["eventType"] == "MESSAGE"
    assert message_event["requestContext"]["messageId"]
    assert message_event["body"] == '{"action": "ask"}'
    assert "headers" not in message_event

    assert disconnect_event["requestContext"]["eventType"] == "DISCONNECT"
    assert disconnect_event["requestContext"]["disconnectStatusCode"] == 1000
    assert "disconnectReason" in disconnect_event["requestContext"]


def test_connection_ids_are_url_safe_base64_like_aws(start_gateway, recorder):
    """AWS's ids (``BFaT_fALIAMCKug=``, ``JC1dgf9yoAMCK-g=`` in Powertools' captured events)
    are 16 characters of URL-safe base64 ending in ``=``: never ``+`` or ``/``."""
    gateway = start_gateway({"$connect": recorder.handler()})
    for _ in range(40):
        with connect(gateway.ws_url):
            pass
    ids = [e["requestContext"]["connectionId"] for e in recorder.of("CONNECT")]
    assert len(set(ids)) == 40
    for connection_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{15}=", connection_id), connection_id


def test_no_query_string_means_no_query_parameters(start_gateway, recorder):
    gateway = start_gateway({"$connect": recorder.handler()})
    with connect(gateway.ws_url):
        pass
    [event] = recorder.of("CONNECT")
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event
    assert "authorizer" not in event["requestContext"]


def test_new_connections_over_the_rate_are_429(start_gateway, recorder, access_log):
    gateway = start_gateway({"$connect": recorder.handler()}, new_connections_per_second=1)
    with connect(gateway.ws_url):
        pass
    assert _rejected(gateway.ws_url)[0] == 429
    assert [r.status for r in access_log if r.eventType == "CONNECT"][-1] == 429


def test_subprotocol_chosen_by_connect_is_negotiated(start_gateway):
    def choose(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat.v1"}}

    gateway = start_gateway({"$connect": choose})
    with connect(gateway.ws_url, subprotocols=["chat.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v1"


def _url_of_length(gateway: Any, characters: int) -> str:
    url = gateway.ws_url + "?token=t&pad="
    return url + "p" * (characters - len(url))


def test_a_handshake_url_over_4096_characters_is_a_414_clients_can_read(start_gateway, recorder):
    """API Gateway's quota: "Length, in characters, of the URL for a WebSocket API: 4096"
    (apigateway-execution-service-websocket-limits-table). The websockets client reads the
    answer; aiohttp's own HTTP/1.0 400 for lines over 8,190 bytes it could not."""
    gateway = start_gateway(_guarded(recorder))
    with connect(_url_of_length(gateway, 4096)):
        pass
    for characters in (4097, 9000):
        status, body, _ = _rejected(_url_of_length(gateway, characters))
        assert status == 414
        assert json.loads(body) == {"message": "URI Too Long"}
    assert len(recorder.of("AUTHORIZER")) == 1  # only the URL within the quota got that far


def test_a_request_line_aiohttp_cannot_read_is_logged_without_any_of_it(start_gateway, caplog):
    gateway = start_gateway({"$connect": lambda event, context: {"statusCode": 200}})
    token = "SECRET-TOKEN-" + "s" * 100
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as raw:
        raw.sendall(f"GET /dev?token={token}{'x' * 70_000} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        assert raw.recv(100).startswith(b"HTTP/1.")
    wait_until(lambda: "Error handling request" in caplog.text)
    assert "SECRET-TOKEN" not in caplog.text


def test_an_authorizer_answer_over_8_kb_is_500(start_gateway, recorder):
    """API Gateway's quota: "AWS Lambda authorizer result size: 8 KB" (same table)."""
    small = start_gateway(_guarded(recorder, allow(context={"userId": "u", "pad": "p" * 7000})))
    with connect(small.ws_url + "?token=t"):
        pass
    big = start_gateway(_guarded(recorder, allow(context={"userId": "u", "pad": "p" * 9000})))
    assert _rejected(big.ws_url + "?token=t")[0] == 500
