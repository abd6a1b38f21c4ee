"""Alarms on every part of the channel; the stack outputs are exactly DESIGN §6."""

from __future__ import annotations

import json
import re

from runtime import schema
from tests.infra.contract import CONTRACT
from tests.infra.mocks import ACCOUNT, API_ID, REGION, ProgramRun

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
HANDLERS = ("authorizer", "connect", "disconnect", "message")


def _alarms(run: ProgramRun) -> dict[str, dict[str, object]]:
    return {alarm.name.removeprefix("alarms-"): alarm.inputs for alarm in run.of_type(ALARM)}


def test_outputs_are_exactly_the_contract(dev_run: ProgramRun, prod_run: ProgramRun) -> None:
    for run in (dev_run, prod_run):
        assert set(run.outputs) == set(CONTRACT)
        for name, pattern in CONTRACT.items():
            assert re.fullmatch(pattern, str(run.outputs[name])), (name, run.outputs[name])


def test_urls_point_at_the_stage(dev_run: ProgramRun, prod_run: ProgramRun) -> None:
    host = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
    assert dev_run.outputs["websocketUrl"] == f"wss://{host}/dev"
    assert dev_run.outputs["managementEndpoint"] == f"https://{host}/dev"
    assert dev_run.outputs["stageName"] == "dev"
    assert dev_run.outputs["apiExecutionArn"] == f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"
    # A custom domain serves the clients; the management API stays on execute-api.
    assert prod_run.outputs["managementEndpoint"] == f"https://{host}/live"


def test_runtime_layer_carries_the_runtime_package_and_its_dependencies(
    dev_run: ProgramRun,
) -> None:
    layers = {r.name: r for r in dev_run.of_type("aws:lambda/layerVersion:LayerVersion")}
    runtime_layer = layers["packages-runtime"]
    assert dev_run.outputs["runtimeLayerArn"] == runtime_layer.state["arn"]
    assets = runtime_layer.inputs["code"].assets
    assert set(assets) == {"python", "python/runtime"}
    assert assets["python"].path == layers["packages-dependencies"].inputs["code"].path + "/python"
    assert assets["python/runtime"].path.endswith("/runtime")
    for layer in layers.values():
        assert layer.inputs["compatibleRuntimes"] == ["python3.13"]
        assert layer.inputs["compatibleArchitectures"] == ["arm64"]


def test_api_gateway_error_alarms(dev_run: ProgramRun) -> None:
    alarms = _alarms(dev_run)
    for metric in ("IntegrationError", "ExecutionError"):
        alarm = alarms[f"api-{metric}"]
        assert alarm["namespace"] == "AWS/ApiGateway"
        assert alarm["metricName"] == metric
        assert alarm["dimensions"] == {"ApiId": API_ID, "Stage": "dev"}


def test_errors_and_throttles_of_every_function(dev_run: ProgramRun) -> None:
    alarms = _alarms(dev_run)
    for handler in HANDLERS:
        for metric in ("Errors", "Throttles"):
            alarm = alarms[f"{handler}-{metric}"]
            assert alarm["namespace"] == "AWS/Lambda"
            assert alarm["metricName"] == metric
            assert alarm["dimensions"] == {"FunctionName": f"rag-websocket-dev-{handler}"}


def test_table_alarms_sum_every_operation(dev_run: ProgramRun) -> None:
    alarms = _alarms(dev_run)
    table = dev_run.one("aws:dynamodb/table:Table").state["name"]
    for metric in ("ThrottledRequests", "SystemErrors"):
        queries = alarms[f"table-{metric}"]["metricQueries"]
        assert isinstance(queries, list)
        metrics = [q["metric"] for q in queries if "metric" in q]
        assert {m["dimensions"]["Operation"] for m in metrics} == {
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "GetItem",
            "Query",
        }
        for m in metrics:
            assert (m["namespace"], m["metricName"]) == ("AWS/DynamoDB", metric)
            assert m["dimensions"]["TableName"] == table
        [total] = [q for q in queries if q.get("returnData")]
        assert total["expression"].startswith("SUM([m0")


def test_queue_alarms(dev_run: ProgramRun) -> None:
    alarms = _alarms(dev_run)
    dead_letter = dev_run.one("aws:sqs/queue:Queue", "chat-dlq").state["name"]
    queue = dev_run.one("aws:sqs/queue:Queue", "chat").state["name"]
    depth = alarms["dlq-depth"]
    assert (depth["metricName"], depth["dimensions"]) == (
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": dead_letter},
    )
    assert depth["threshold"] == 1  # > 0 messages
    assert depth["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    age = alarms["queue-age"]
    assert (age["metricName"], age["dimensions"]) == (
        "ApproximateAgeOfOldestMessage",
        {"QueueName": queue},
    )
    assert age["threshold"] == 300


def test_every_alarm_notifies_the_topic(dev_run: ProgramRun) -> None:
    topic = dev_run.one("aws:sns/topic:Topic").state["arn"]
    alarms = _alarms(dev_run)
    assert len(alarms) == 2 + 2 * len(HANDLERS) + 2 + 2
    for name, alarm in alarms.items():
        assert alarm["alarmActions"] == [topic], name
        assert alarm["okActions"] == [topic], name
        assert alarm["treatMissingData"] == "notBreaching", name
    assert dev_run.outputs["alarmTopicArn"] == topic


def test_email_subscription_only_when_configured(dev_run: ProgramRun, prod_run: ProgramRun) -> None:
    assert not dev_run.of_type("aws:sns/topicSubscription:TopicSubscription")
    subscription = prod_run.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert subscription["protocol"] == "email"
    assert subscription["endpoint"] == "oncall@example.com"
    assert subscription["topic"] == prod_run.one("aws:sns/topic:Topic").state["arn"]


def test_dashboard_shows_every_part(dev_run: ProgramRun) -> None:
    dashboard = dev_run.one("aws:cloudwatch/dashboard:Dashboard").inputs
    assert dashboard["dashboardName"] == "rag-websocket-dev"
    body = json.loads(dashboard["dashboardBody"])
    widgets = body["widgets"]
    assert {w["properties"]["region"] for w in widgets} == {REGION}
    text = json.dumps(body)
    for needle in (
        "AWS/ApiGateway",
        "AWS/Lambda",
        "AWS/DynamoDB",
        "AWS/SQS",
        schema.METRICS_NAMESPACE,
        "rag-websocket-dev-message",
    ):
        assert needle in text, needle
