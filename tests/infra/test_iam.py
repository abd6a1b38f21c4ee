"""Least privilege: every policy document linted by parliament and checked action by action."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pulumi
import pytest
from parliament import analyze_policy_string

from components.iam import allow, policy_document
from tests.infra.mocks import (
    ACCOUNT,
    API_ID,
    REGION,
    ProgramRun,
    collect_abandoned_coroutines,
    policy_documents,
    trust_policies,
)

EXECUTION_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"
LOGS = f"arn:aws:logs:{REGION}:{ACCOUNT}"


def _grants(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, resource) pairs a document allows."""
    pairs: set[tuple[str, str]] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in [resources] if isinstance(resources, str) else resources:
                pairs.add((action, resource))
    return pairs


def _expected(run: ProgramRun) -> dict[str, set[tuple[str, str]]]:
    """Item 8 of the issue, as (action, resource) pairs, per policy resource."""
    table = run.one("aws:dynamodb/table:Table").state["arn"]
    index = f"{table}/index/userId-index"
    queue = run.one("aws:sqs/queue:Queue", "chat").state["arn"]
    stage = run.one("aws:apigatewayv2/stage:Stage").inputs["name"]

    def own_logs(function: str) -> set[tuple[str, str]]:
        group = f"{LOGS}:log-group:/aws/lambda/rag-websocket-{run_stack(run)}-{function}:*"
        return {("logs:CreateLogStream", group), ("logs:PutLogEvents", group)}

    expected = {
        "authorizer-policy": own_logs("authorizer"),
        "connect-policy": own_logs("connect")
        | {
            ("dynamodb:PutItem", table),
            ("dynamodb:UpdateItem", table),
            ("dynamodb:BatchGetItem", table),
            ("dynamodb:GetItem", table),  # whether a newer connection replaced this one
            ("dynamodb:DeleteItem", table),
            # DeleteConnection of the same client's previous connection.
            ("execute-api:ManageConnections", f"{EXECUTION_ARN}/{stage}/DELETE/@connections/*"),
        },
        "disconnect-policy": own_logs("disconnect")
        | {("dynamodb:DeleteItem", table), ("dynamodb:UpdateItem", table)},
        "message-policy": own_logs("message")
        | {("dynamodb:UpdateItem", table), ("sqs:SendMessage", queue)},
        # What MessageSender calls: PostToConnection, and the store's reads and 410 clean-up.
        "rag-sender": {
            ("execute-api:ManageConnections", f"{EXECUTION_ARN}/{stage}/POST/@connections/*"),
            ("dynamodb:Query", index),
            ("dynamodb:GetItem", table),
            ("dynamodb:DeleteItem", table),
            ("dynamodb:UpdateItem", table),
        },
        "rag-connection-closer": {
            ("execute-api:ManageConnections", f"{EXECUTION_ARN}/{stage}/DELETE/@connections/*")
        },
        "rag-chat-consumer": {
            (action, queue)
            for action in (
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            )
        },
    }
    return expected


def run_stack(run: ProgramRun) -> str:
    return str(run.one("aws:apigatewayv2/stage:Stage").inputs["name"]).replace("live", "prod")


@pytest.fixture(params=["dev", "prod"])
def run(request: pytest.FixtureRequest) -> ProgramRun:
    return request.getfixturevalue(f"{request.param}_run")  # type: ignore[no-any-return]


@pytest.fixture(params=["dev", "prod", "account"])
def any_run(request: pytest.FixtureRequest) -> ProgramRun:
    """Every program of the repository: both stages and the account project."""
    return request.getfixturevalue(f"{request.param}_run")  # type: ignore[no-any-return]


def test_every_policy_grants_exactly_the_listed_actions(run: ProgramRun) -> None:
    documents = policy_documents(run.resources)
    expected = _expected(run)
    assert set(documents) == set(expected)
    for name, document in documents.items():
        assert _grants(document) == expected[name], name


def test_no_wildcard_action_or_resource(any_run: ProgramRun) -> None:
    for name, document in policy_documents(any_run.resources).items():
        for action, resource in _grants(document):
            assert "*" not in action, (name, action)
            assert resource != "*", (name, resource)
            assert resource.startswith("arn:aws:"), (name, resource)


# parliament's action table says logs:DescribeLogGroups takes only Resource "*"; CloudWatch
# Logs documents "arn:aws:logs:<region>:<account>:log-group:*" for it, which is what the
# account CloudWatch role uses (the issue forbids "*"). That one finding, and only on that
# policy, is parliament's stale data, not a broad grant.
STALE_PARLIAMENT_FINDING = (
    "api-gateway-cloudwatch-policy",
    "RESOURCE_MISMATCH",
    json.dumps([{"action": "logs:DescribeLogGroups", "required_format": "*"}]),
)


def _findings(document: dict[str, Any]) -> list[tuple[str, str]]:
    analysis = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    return [(f.issue, json.dumps(f.detail)) for f in analysis.findings]


def test_parliament_finds_nothing(any_run: ProgramRun) -> None:
    for name, document in policy_documents(any_run.resources).items():
        findings = [(name, *finding) for finding in _findings(document)]
        assert [f for f in findings if f != STALE_PARLIAMENT_FINDING] == [], name


def test_the_stale_parliament_finding_is_still_the_only_exception(
    account_run: ProgramRun,
) -> None:
    """Once parliament learns the scoped form, this fails and the exception above goes."""
    document = policy_documents(account_run.resources)["api-gateway-cloudwatch-policy"]
    assert [("api-gateway-cloudwatch-policy", *f) for f in _findings(document)] == [
        STALE_PARLIAMENT_FINDING
    ]


def test_parliament_would_catch_a_mistake() -> None:
    """The lint is live: an unknown action and a resource of the wrong type are findings."""
    bad = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "dynamodb:PutItems", "Resource": f"{LOGS}:log-group:x"},
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": f"{LOGS}:log-group:x"},
        ],
    }
    issues = {f.issue for f in analyze_policy_string(json.dumps(bad)).findings}
    assert {"UNKNOWN_ACTION", "RESOURCE_MISMATCH"} <= issues


def test_roles_trust_exactly_one_service(any_run: ProgramRun) -> None:
    # parliament lints identity policies; a trust policy has no Resource, so it is checked here.
    for name, document in trust_policies(any_run.resources).items():
        [statement] = document["Statement"]
        service = "apigateway" if "cloudwatch" in name else "lambda"
        assert statement == {
            "Effect": "Allow",
            "Principal": {"Service": f"{service}.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }, name


def test_managed_policies_are_what_the_outputs_name(dev_run: ProgramRun) -> None:
    policies = {p.name: p.state["arn"] for p in dev_run.of_type("aws:iam/policy:Policy")}
    assert dev_run.outputs["senderPolicyArn"] == policies["rag-sender"]
    assert dev_run.outputs["chatConsumerPolicyArn"] == policies["rag-chat-consumer"]
    assert dev_run.outputs["connectionCloserPolicyArn"] == policies["rag-connection-closer"]


def _management_api_calls() -> dict[str, set[str]]:
    """The management API's operations each runtime module calls, by path under runtime/."""
    import runtime

    root = Path(runtime.__file__).parent
    calls = {
        path.relative_to(root).as_posix(): set(
            # The three operations (socket.create_connection is none of them).
            re.findall(r"\.((?:post_to|get|delete)_connection)\(", path.read_text())
        )
        for path in root.rglob("*.py")
    }
    return {path: found for path, found in calls.items() if found}


def test_the_sender_may_post_and_nothing_else_on_connections(dev_run: ProgramRun) -> None:
    """MessageSender calls PostToConnection only (a 410 is how it learns a connection is
    gone); GetConnection and DeleteConnection are not in its policy. Closing a connection is
    the separately named, opt-in connectionCloserPolicyArn. The one DeleteConnection of the
    runtime is the $connect handler's own (its policy, below)."""
    assert _management_api_calls() == {
        "posting.py": {"post_to_connection"},
        "handlers/connect.py": {"delete_connection"},
    }
    documents = policy_documents(dev_run.resources)
    connections = {
        resource
        for action, resource in _grants(documents["rag-sender"])
        if action == "execute-api:ManageConnections"
    }
    assert connections == {f"{EXECUTION_ARN}/dev/POST/@connections/*"}


def test_only_connect_may_manage_connections_and_only_delete(run: ProgramRun) -> None:
    """$connect closes the same client's previous connection (DeleteConnection) on this API's
    stage: no POST, no other method or stage. No other function touches execute-api."""
    stage = run.one("aws:apigatewayv2/stage:Stage").inputs["name"]
    documents = policy_documents(run.resources)
    execute_api = {
        function: {
            (action, resource)
            for action, resource in _grants(documents[f"{function}-policy"])
            if action.startswith("execute-api:")
        }
        for function in ("authorizer", "connect", "disconnect", "message")
    }
    assert execute_api == {
        "authorizer": set(),
        "connect": {
            ("execute-api:ManageConnections", f"{EXECUTION_ARN}/{stage}/DELETE/@connections/*")
        },
        "disconnect": set(),
        "message": set(),
    }
    assert run.outputs["apiExecutionArn"] == EXECUTION_ARN


@pytest.mark.parametrize(
    ("actions", "resources"),
    [
        (["dynamodb:*"], ["arn:aws:dynamodb:us-east-1:123456789012:table/t"]),
        (["*"], ["arn:aws:dynamodb:us-east-1:123456789012:table/t"]),
        (["PutItem"], ["arn:aws:dynamodb:us-east-1:123456789012:table/t"]),
        ([], ["arn:aws:dynamodb:us-east-1:123456789012:table/t"]),
    ],
)
def test_a_wildcard_or_unscoped_action_is_refused(actions: list[str], resources: list[str]) -> None:
    with pytest.raises(ValueError, match="statement Bad"):
        allow("Bad", actions, resources)


def test_a_bare_star_resource_is_refused() -> None:
    with pytest.raises(ValueError, match="not a scoped ARN"):
        allow("Bad", ["dynamodb:PutItem"], ["*"])


def test_a_star_resource_from_an_output_is_refused_when_rendered() -> None:
    @pulumi.runtime.test
    def render() -> pulumi.Output[str]:
        statement = allow("Bad", ["dynamodb:PutItem"], [pulumi.Output.from_input("*")])
        return policy_document([statement])

    with pytest.raises(ValueError, match="not a scoped ARN"):
        render()
    collect_abandoned_coroutines()


# TransactWriteItems is no IAM action: each of its items is authorized as its own action
# (DynamoDB developer guide, "Using IAM with DynamoDB transactions").
_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _record_actions(*services: str) -> list[tuple[str, dict[str, Any]]]:
    """From now on, every call the runtime's botocore clients make to ``services``, as
    (IAM action, the call's parameters), a TransactWriteItems as one entry per item. Registered
    on the runtime's session before its clients exist: they inherit it (the ``aws`` fixture
    drops session and clients after the test)."""
    from runtime import aws as runtime_aws

    calls: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        names = (
            [_TRANSACT_ITEM_ACTIONS[next(iter(item))] for item in params["TransactItems"]]
            if model.name == "TransactWriteItems"
            else [model.name]
        )
        calls.extend((f"{service}:{name}", params) for name in names)

    for service in services:
        runtime_aws.session().register(f"before-parameter-build.{service}", record)
    return calls


def _actions_the_handlers_call(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Every DynamoDB and SQS action each handler calls, recorded from botocore as the handlers
    run through each of their paths against moto: a first connect and a reconnect of a client
    instance, a connect at the per-user limit refused and one that finds a gone connection
    there, a handshake replaced while its $connect ran, a chat message, a ping and the
    disconnects of a user's connections, the last one emptying the user's set."""
    import boto3
    from botocore.stub import Stubber

    from local.events import now_ms
    from runtime import aws as runtime_aws
    from runtime import schema
    from runtime.config import StoreConfig
    from runtime.handlers import connect, disconnect, message
    from tests.support import chat_event, chat_message, lambda_context, load_event
    from tests.unit.test_handlers import instance_connect_event

    recorded = _record_actions("dynamodb", "sqs")
    calls: dict[str, set[str]] = {}
    management = runtime_aws.session().create_client(
        "apigatewaymanagementapi", endpoint_url="https://example.invalid/live"
    )
    monkeypatch.setattr(connect.aws, "management_api", lambda endpoint_url: management)
    monkeypatch.setattr(connect.time, "sleep", lambda seconds: None)

    def run(function: str, event: dict[str, Any]) -> int:
        module = {"connect": connect, "disconnect": disconnect, "message": message}[function]
        start = len(recorded)  # a handler run inside another is the same function: connect
        status: int = module.handler(event, lambda_context(function))["statusCode"]
        calls.setdefault(function, set()).update(action for action, _ in recorded[start:])
        return status

    table = connect.STORE.config.table_name
    monkeypatch.setattr(connect.STORE, "config", StoreConfig(table, max_connections_per_user=2))
    original_add = connect.STORE.add

    def add_then_replaced(connection_id: str, *args: Any, **kwargs: Any) -> Any:
        """D's handshake is replaced by E's while D's $connect runs (410: D is not open)."""
        stored = original_add(connection_id, *args, **kwargs)
        if connection_id == "D=":
            for _ in range(2):  # D's row is young: E tries once more, D still in $connect
                stub.add_client_error("delete_connection", "GoneException", 410)
            assert run("connect", instance_connect_event("tab-4", "E=")) == 200
        return stored

    with Stubber(management) as stub:
        assert run("connect", instance_connect_event("tab-1", "A=")) == 200
        stub.add_response("delete_connection", {}, {"ConnectionId": "A="})
        assert run("connect", instance_connect_event("tab-1", "B=")) == 200
        assert run("connect", instance_connect_event("tab-2", "C=")) == 429
        row = {key: {"S": schema.connection_key("A=")} for key in ("PK", "SK")}
        boto3.client("dynamodb").delete_item(TableName=table, Key=row)  # expired: the TTL
        assert run("connect", instance_connect_event("tab-2", "C=")) == 200
        monkeypatch.setattr(connect.STORE, "config", StoreConfig(table, max_connections_per_user=5))
        monkeypatch.setattr(connect.STORE, "add", add_then_replaced)
        assert run("connect", instance_connect_event("tab-4", "D=")) == 409
        assert run("connect", instance_connect_event("tab-3", "F=")) == 200
        stub.assert_no_pending_responses()
    for connection_id in ("B=", "C=", "E="):
        event = load_event("disconnect", connectionId=connection_id)
        assert run("disconnect", event) == 200
    for body in (chat_message()["body"], '{"action":"ping"}'):
        route = json.loads(body)["action"]
        event = chat_event(body, routeKey=route, connectionId="F=", connectedAt=now_ms())
        assert run("message", event) == 200
    assert run("disconnect", load_event("disconnect", connectionId="F=")) == 200
    return calls


def test_each_function_may_call_exactly_what_its_code_calls(
    dev_run: ProgramRun, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policies above are lists written by hand; this runs the handlers and compares. A
    call the policy lacks fails in AWS only (moto checks no IAM), and a grant no call uses is
    more than least privilege."""
    called = _actions_the_handlers_call(monkeypatch)
    documents = policy_documents(dev_run.resources)
    granted = {
        function: {
            action
            for action, _ in _grants(documents[f"{function}-policy"])
            if action.startswith(("dynamodb:", "sqs:"))
        }
        for function in ("connect", "disconnect", "message")
    }
    assert called == granted


def test_the_sender_policy_allows_exactly_the_table_calls_message_sender_makes(
    dev_run: ProgramRun, aws: Any
) -> None:
    """``senderPolicyArn`` is what the RAG stack's answering function gets: recorded as above,
    ``MessageSender`` broadcasts to a user (a ``Query`` of ``userId-index``), meets a gone
    connection (410: its row deleted, its id released, the emptied set of a user's last one
    deleted) and replays an answer on the connection that replaced a gone one (``GetItem`` of
    ``REPLACED#``). Its posts go through the management API (the test above)."""
    import boto3

    from runtime.config import StoreConfig
    from runtime.connections import ConnectionStore
    from runtime.sender import MessageSender
    from tests.unit.fake_management_api import FakeManagementApi, serve

    recorded = _record_actions("dynamodb")
    store = ConnectionStore(StoreConfig(aws.table_name))
    hour_ago_ms = int((time.time() - 3600) * 1000)  # past $connect: a 410 removes the row
    for connection_id, user_id in [
        ("live=", "u1"),
        ("old=", "u1"),
        ("new=", "u1"),
        ("solo=", "u2"),
    ]:
        store.add(connection_id, user_id, hour_ago_ms)
    store.record_replacement("old=", "new=")
    del recorded[:]  # the set-up's calls
    api = FakeManagementApi(lambda: boto3.session.Session().get_credentials(), REGION)
    api.gone.update({"old=", "solo="})
    with serve(api), MessageSender(store, api.endpoint, coalesce_seconds=0) as sender:
        result = sender.broadcast_to_user("u1", {"type": "system", "event": "notice", "text": "hi"})
        assert (result.sent, result.gone) == (2, 1)
        streamed = sender.stream("old=", "conv", ["a"], user_id="u1", redirect_gone_to_user=True)
        assert [c for c, _ in api.delivered].count("new=") >= 2, streamed
        assert not sender.send_message("solo=", {"type": "system", "event": "pong"})
    documents = policy_documents(dev_run.resources)
    table = dev_run.one("aws:dynamodb/table:Table").state["arn"]
    granted = {
        (action, "index" if resource.endswith("/index/userId-index") else "table")
        for action, resource in _grants(documents["rag-sender"])
        if action.startswith("dynamodb:") and resource.startswith(table)
    }
    called = {
        (action, "index" if params.get("IndexName") == "userId-index" else "table")
        for action, params in recorded
    }
    assert called == granted
