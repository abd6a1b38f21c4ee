"""The access log's two formats, and IAM policy evaluation of authorizer answers."""

from __future__ import annotations

import io
import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from local.gateway import AccessRecord, RouteTable, StreamAccessLog
from local.gateway.exceptions import AuthorizerConfigurationException, ForbiddenException
from local.gateway.policy import evaluate, stringify
from tests.local.gateway_support import allow
from tests.support import wait_until

ARN = "arn:aws:execute-api:us-east-1:123456789012:abcde12345/dev/$connect"
FIELDS = {"time", "connectionId", "eventType", "routeKey", "status", "latency"}
RECORD = AccessRecord("25/Nov/2026:18:00:00 +0000", "Qk+/x=", "MESSAGE", "chat_message", 200, 7)


def test_json_records_have_exactly_the_access_log_fields():
    stream = io.StringIO()
    StreamAccessLog("json", stream)(RECORD)
    line = stream.getvalue()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    record = json.loads(line)
    assert set(record) == FIELDS
    assert record["status"] == 200
    assert record["latency"] == 7


def test_text_records_are_one_marked_line():
    stream = io.StringIO()
    StreamAccessLog("text", stream)(RECORD)
    assert stream.getvalue() == (
        "ACCESS [25/Nov/2026:18:00:00 +0000] Qk+/x= MESSAGE chat_message 200 7ms\n"
    )


def test_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="text, json"):
        StreamAccessLog("yaml")  # type: ignore[arg-type]


def test_every_event_and_rejected_connect_is_logged(start_gateway, recorder, access_log):
    table = RouteTable(
        routes={
            "$connect": recorder.handler(),
            "$disconnect": recorder.handler(),
            "$default": recorder.handler({"statusCode": 200, "body": "ok"}),
        },
        authorizer=recorder.handler(allow()),
    )
    gateway = start_gateway(table)
    with pytest.raises(InvalidStatus):
        connect(gateway.ws_url)
    with connect(gateway.ws_url + "?token=t") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "ok"
    wait_until(lambda: len(access_log) == 4)  # $disconnect is logged once it has run
    kinds = [(r.eventType, r.routeKey, r.status) for r in access_log]
    assert kinds[0] == ("CONNECT", "$connect", 401)
    assert kinds[1:] == [
        ("CONNECT", "$connect", 200),
        ("MESSAGE", "$default", 200),
        ("DISCONNECT", "$disconnect", 200),
    ]
    assert len({r.connectionId for r in access_log[1:]}) == 1
    assert all(r.latency >= 0 for r in access_log)


def _policy(*statements: dict[str, object], context: object = None) -> dict[str, object]:
    answer: dict[str, object] = {
        "principalId": "p",
        "policyDocument": {"Version": "2012-10-17", "Statement": list(statements)},
    }
    if context is not None:
        answer["context"] = context
    return answer


def _statement(resource: object, effect: str = "Allow", action: object = "execute-api:Invoke"):
    return {"Effect": effect, "Action": action, "Resource": resource}


@pytest.mark.parametrize(
    "resource",
    [
        ARN,
        "arn:aws:execute-api:us-east-1:123456789012:abcde12345/*",
        "arn:aws:execute-api:us-east-1:123456789012:abcde12345/dev/*",
        "arn:aws:execute-api:*:*:abcde12345/*/$connect",
        "arn:aws:execute-api:us-east-1:123456789012:abcde12345/?ev/$connect",
        "*",
        ["arn:aws:s3:::bucket", ARN],
    ],
)
def test_allowed_resources(resource):
    assert evaluate(_policy(_statement(resource)), ARN).principal_id == "p"


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:execute-api:us-east-1:123456789012:abcde12345/*/*/*",  # REST-shaped
        "arn:aws:execute-api:us-east-1:123456789012:abcde12345/dev/GET/*",
        "arn:aws:execute-api:us-east-1:123456789012:abcde12345/prod/$connect",
        "arn:aws:execute-api:us-east-1:999999999999:abcde12345/dev/$connect",
    ],
)
def test_resources_not_matching_the_method_arn_are_forbidden(resource):
    with pytest.raises(ForbiddenException):
        evaluate(_policy(_statement(resource)), ARN)


def test_deny_wins_and_actions_must_cover_invoke():
    with pytest.raises(ForbiddenException):
        evaluate(_policy(_statement("*"), _statement(ARN, effect="Deny")), ARN)
    with pytest.raises(ForbiddenException):
        evaluate(_policy(_statement(ARN, action="execute-api:ManageConnections")), ARN)
    assert evaluate(_policy(_statement(ARN, action="execute-api:*")), ARN)
    assert evaluate(_policy(_statement(ARN, action=["s3:GetObject", "*"])), ARN)


def test_context_values_are_stringified_and_objects_refused():
    granted = evaluate(_policy(_statement(ARN), context={"a": 1, "b": False, "c": "x"}), ARN)
    assert granted.context == {"a": "1", "b": "false", "c": "x"}
    assert stringify(True) == "true"
    with pytest.raises(AuthorizerConfigurationException, match="'l'"):
        evaluate(_policy(_statement(ARN), context={"l": [1]}), ARN)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        {"policyDocument": {"Statement": []}},
        {"principalId": "p"},
        {"principalId": "p", "policyDocument": {"Statement": "Allow"}},
        _policy(_statement(7)),
    ],
)
def test_malformed_answers_are_configuration_errors(answer):
    with pytest.raises(AuthorizerConfigurationException):
        evaluate(answer, ARN)
