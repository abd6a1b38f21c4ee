"""Alarms that mean trouble, held to docs/deploy.md's alarm table; the outputs keep DESIGN §6."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from components.alarms import INTEGRATION_5XX_PATTERN
from components.settings import StackSettings, config_key
from runtime import schema
from tests.infra.conftest import run_stack
from tests.infra.contract import ADDED, CONTRACT, WITH_CUSTOM_DOMAIN
from tests.infra.mocks import ACCOUNT, API_ID, REGION, ProgramRun
from tests.infra.readme_tables import (
    ALARMS_END_MARKER,
    ALARMS_MARKER,
    DEPLOY_DOC,
    alarm_rows,
    section,
)
from tests.support import PROJECT_ROOT

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
HANDLERS = ("authorizer", "connect", "disconnect", "message")


FUNCTION = "aws:lambda/function:Function"


def _alarms(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {alarm.name.removeprefix("alarms-"): alarm.inputs for alarm in run.of_type(ALARM)}


def _documented_alarms() -> str:
    table = section(DEPLOY_DOC.read_text(), ALARMS_MARKER, ALARMS_END_MARKER)
    assert table, f"docs/deploy.md needs its alarm table between {ALARMS_MARKER} markers"
    return table


def _watched(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its own, or those of its metric queries."""
    if "metricQueries" in alarm:
        return [query["metric"] for query in alarm["metricQueries"] if "metric" in query]
    return [
        {
            "namespace": alarm["namespace"],
            "metricName": alarm["metricName"],
            "dimensions": alarm["dimensions"],
            "stat": alarm["statistic"],
        }
    ]


def test_outputs_keep_the_contract_and_only_add(dev_run: ProgramRun, prod_run: ProgramRun) -> None:
    """DESIGN §6: outputs may be added, never renamed."""
    assert set(dev_run.outputs) == set(CONTRACT) | set(ADDED)
    assert set(prod_run.outputs) == set(CONTRACT) | set(ADDED) | set(WITH_CUSTOM_DOMAIN)
    for run in (dev_run, prod_run):
        for name, pattern in {**CONTRACT, **ADDED}.items():
            assert re.fullmatch(pattern, str(run.outputs[name])), (name, run.outputs[name])


def test_custom_domain_target_is_an_output(prod_run: ProgramRun) -> None:
    """The name the domain's CNAME or alias record points at (item 8)."""
    domain = prod_run.one("aws:apigatewayv2/domainName:DomainName").state
    target = domain["domainNameConfiguration"]["targetDomainName"]
    assert prod_run.outputs["customDomainTarget"] == target
    assert re.fullmatch(WITH_CUSTOM_DOMAIN["customDomainTarget"], target)


def test_every_alarm_is_a_row_of_the_documented_table(dev_run: ProgramRun) -> None:
    """The deploy guide's table (alarm, metric, fires at, moved by, not moved by) IS them."""
    alarms = _alarms(dev_run)
    rows = alarm_rows(_documented_alarms())
    assert sorted(key for row in rows for key in row.keys) == sorted(alarms)
    defaults = StackSettings.model_construct()
    for row in rows:
        assert row.moved_by, row.keys
        assert row.not_moved_by, row.keys
        threshold = (
            float(row.threshold)
            if row.threshold.isdigit()
            else getattr(defaults, _setting(row.threshold))
        )
        for key in row.keys:
            alarm = alarms[key]
            assert alarm["threshold"] == threshold, key
            assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold", key
            for metric in _watched(alarm):
                assert metric["namespace"] == row.namespace, key
                assert metric["metricName"] == row.metric, key
                assert sorted(metric["dimensions"]) == sorted(row.dimensions), key
                assert metric["stat"] == row.statistic, key


def _setting(key: str) -> str:
    """The StackSettings field of config key ``key``."""
    return next(name for name in StackSettings.model_fields if config_key(name) == key)


def test_normal_client_behaviour_moves_no_alarm(dev_run: ProgramRun) -> None:
    """An expired token makes the authorizer raise Unauthorized: a Lambda Errors datapoint of
    the authorizer. A connect over the per-user limit answers 429, which API Gateway counts as
    IntegrationError ("requests that return a 4XX/5XX response from the integration",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-logging.html).
    Neither metric has an alarm; both stay on the dashboard."""
    watched = {
        (metric["namespace"], metric["metricName"], json.dumps(metric["dimensions"]))
        for alarm in _alarms(dev_run).values()
        for metric in _watched(alarm)
    }
    authorizer = json.dumps({"FunctionName": "rag-websocket-dev-authorizer"})
    assert ("AWS/Lambda", "Errors", authorizer) not in watched
    assert not [w for w in watched if w[0] == "AWS/ApiGateway"]
    body = dev_run.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"]
    assert '"IntegrationError"' in body
    assert '"rag-websocket-dev-authorizer"' in body


def test_unexpected_failures_alarm_watches_what_the_runtime_emits(dev_run: ProgramRun) -> None:
    """The alarm's namespace, metric and dimensions are those of the EMF line Powertools
    writes for the runtime's count, in a process with the function's environment (its
    ``service`` dimension is the stack's POWERTOOLS_SERVICE_NAME)."""
    variables = dev_run.one(FUNCTION, "message").inputs["environment"]["variables"]
    script = (
        "from runtime.observability import Metric, count, flush_metrics\n"
        "count(Metric.UNEXPECTED_FAILURES)\n"
        "flush_metrics()\n"
    )
    environment = {
        **os.environ,
        schema.ENV_POWERTOOLS_SERVICE_NAME: variables[schema.ENV_POWERTOOLS_SERVICE_NAME],
    }
    emitted_by = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    emf = json.loads(emitted_by.stdout.strip().splitlines()[-1])
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    [dimension_names] = directive["Dimensions"]
    emitted = {name: emf[name] for name in dimension_names}
    alarm = _alarms(dev_run)["unexpected-failures"]
    assert alarm["namespace"] == directive["Namespace"] == schema.METRICS_NAMESPACE
    assert [m["Name"] for m in directive["Metrics"]] == [alarm["metricName"]]
    assert alarm["dimensions"] == emitted == {"service": "rag-websocket-dev"}


def test_two_stages_never_share_the_unexpected_failures_alarm(
    dev_run: ProgramRun, prod_run: ProgramRun
) -> None:
    """Both stages may live in one account: each one's alarm watches its own service."""
    dev = _alarms(dev_run)["unexpected-failures"]["dimensions"]
    prod = _alarms(prod_run)["unexpected-failures"]["dimensions"]
    assert dev != prod


def test_integration_5xx_comes_from_the_access_log(dev_run: ProgramRun) -> None:
    """IntegrationError cannot tell a 429 from a 500; the access log can. The filter matches
    the status the client got ($context.status) or the handler's own status code
    ($context.integration.status), both written as JSON strings by the access log format. The
    pattern's form (quoted wildcards joined by ``||``) is that of the CIS AWS Foundations 4.1
    metric filter, ``{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode =
    "AccessDenied*") }`` (https://tenable.com/audits/items/CIS_Amazon_Web_Services_Foundations_v1.5.0_L1.audit:00a418b93cdf6c4fb1b143ea02d295d3);
    JSON patterns: https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/matching-terms-json-log-events.html."""
    metric_filter = dev_run.one("aws:cloudwatch/logMetricFilter:LogMetricFilter").inputs
    group = dev_run.one("aws:cloudwatch/logGroup:LogGroup", "websocket-access-logs").state
    assert metric_filter["logGroupName"] == group["name"]
    assert metric_filter["pattern"] == INTEGRATION_5XX_PATTERN
    assert metric_filter["name"] == "rag-websocket-dev-integration-5xx"
    transformation = metric_filter["metricTransformation"]
    alarm = _alarms(dev_run)["integration-5xx"]
    assert (transformation["namespace"], transformation["name"]) == (
        alarm["namespace"],
        alarm["metricName"],
    )
    assert transformation["value"] == "1"
    assert transformation["dimensions"] == {"ApiId": "$.apiId", "Stage": "$.stage"}
    assert alarm["dimensions"] == {"ApiId": API_ID, "Stage": "dev"}
    log_format = json.loads(
        dev_run.one("aws:apigatewayv2/stage:Stage").inputs["accessLogSettings"]["format"]
    )
    assert log_format["apiId"] == "$context.apiId"
    assert log_format["stage"] == "$context.stage"
    assert log_format["status"] == "$context.status"
    assert log_format["integrationStatus"] == "$context.integration.status"


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


def test_errors_of_every_handler_but_the_authorizer_and_throttles_of_all(
    dev_run: ProgramRun,
) -> None:
    alarms = _alarms(dev_run)
    for handler in HANDLERS:
        metrics = ("Throttles",) if handler == "authorizer" else ("Errors", "Throttles")
        for metric in metrics:
            alarm = alarms[f"{handler}-{metric}"]
            assert alarm["namespace"] == "AWS/Lambda"
            assert alarm["metricName"] == metric
            assert alarm["dimensions"] == {"FunctionName": f"rag-websocket-dev-{handler}"}
    assert "authorizer-Errors" not in alarms


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
            # $connect's atomic row + per-user set write, and its self-healing read
            "TransactWriteItems",
            "BatchGetItem",
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
    # unexpected failures, 3 Errors, 4 Throttles, 5xx, 2 table, DLQ, queue age
    assert len(alarms) == 1 + 3 + 4 + 1 + 2 + 2
    for name, alarm in alarms.items():
        assert alarm["alarmActions"] == [topic], name
        assert alarm["okActions"] == [topic], name
        assert alarm["treatMissingData"] == "notBreaching", name
    assert dev_run.outputs["alarmTopicArn"] == topic


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_alarm_and_topic_names_tell_the_stage(
    stack: str, dev_run: ProgramRun, prod_run: ProgramRun
) -> None:
    run = dev_run if stack == "dev" else prod_run
    assert run.one("aws:sns/topic:Topic").inputs["name"] == f"rag-websocket-{stack}-alarms"
    for key, alarm in _alarms(run).items():
        assert alarm["name"] == f"rag-websocket-{stack}-{key}"


def test_without_access_logs_there_is_no_5xx_alarm(build_dir: object) -> None:
    run = run_stack("dev", stack_outputs={}, accessLogs="false", accountStack="")
    assert "integration-5xx" not in _alarms(run)
    assert not run.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")


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
