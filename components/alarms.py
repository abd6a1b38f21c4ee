"""CloudWatch alarms that mean trouble, an SNS topic for them, and a dashboard.

Normal client behaviour never fires an alarm: an expired token makes the authorizer raise
``Unauthorized`` (a Lambda ``Errors`` datapoint), and a connect over the per-user limit answers
429 (an API Gateway ``IntegrationError``, which counts every 4XX and 5XX the integration
returns). So the authorizer's ``Errors`` and ``IntegrationError`` stay on the dashboard, and the
alarms watch what is not normal: the runtime's ``UnexpectedFailures`` (EMF), the other
handlers' errors, throttles, 5xx answers (a metric filter on the access log), the table, the
dead-letter queue and the age of the oldest chat message. docs/deploy.md's alarm table says which
events move each one; tests/infra pins the two together.

DynamoDB publishes ThrottledRequests and SystemErrors per ``TableName`` AND ``Operation``; an
alarm on the table dimension alone watches a metric that does not exist and never fires, so
those alarms sum the operations the handlers and MessageSender use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.naming import physical_name
from runtime import schema

COMPONENT_TYPE = "rag-websocket:components:Alarms"
PERIOD_SECONDS = 300
EVALUATION_PERIODS = 1
MAX_ALARM_NAME_LENGTH = 255
MAX_TOPIC_NAME_LENGTH = 256
MAX_FILTER_NAME_LENGTH = 512
# The operations on the connections table (handlers + MessageSender).
TABLE_OPERATIONS = (
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "GetItem",
    "Query",
    "TransactWriteItems",
    "BatchGetItem",
)
API_ERROR_METRICS = ("IntegrationError", "ExecutionError")
TABLE_METRICS = ("ThrottledRequests", "SystemErrors")
# 5xx answers, counted from the access log: what the client got ($context.status) or what the
# handler returned ($context.integration.status). IntegrationError cannot tell them from 4XX.
INTEGRATION_5XX_METRIC = "Integration5xx"
INTEGRATION_5XX_PATTERN = '{ ($.status = "5*") || ($.integrationStatus = "5*") }'
DASHBOARD_WIDTH = 12
DASHBOARD_HEIGHT = 6


@dataclass(frozen=True)
class AlarmsArgs:
    api_id: pulumi.Input[str]
    stage_name: pulumi.Input[str]
    region: pulumi.Input[str]
    function_names: Mapping[str, pulumi.Input[str]]  # handler key → Lambda function name
    table_name: pulumi.Input[str]
    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    oldest_message_alarm_seconds: int
    # Handlers whose Errors include normal denials: the authorizer raises Unauthorized.
    denying_functions: frozenset[str] = frozenset({"authorizer"})
    # The stage's access log group; None (access logs off) leaves out the 5xx alarm.
    access_log_group_name: pulumi.Input[str] | None = None
    alarm_email: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


class Alarms(pulumi.ComponentResource):
    """Every alarm and the topic are named ``<project>-<stack>-…``: dev's page says dev."""

    topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        # Fixed names: a replacement deletes the old resource before creating its successor.
        self._fixed_name = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self._tags = dict(args.tags)
        self._add_topic(args)
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}

        self._alarm(
            "unexpected-failures",
            "the runtime failed where the client did nothing wrong: JWKS unreachable, a "
            "DynamoDB or SQS error, a crash (EMF UnexpectedFailures)",
            namespace=schema.METRICS_NAMESPACE,
            metric_name=schema.UNEXPECTED_FAILURES_METRIC,
            # Powertools' EMF: the runtime's Metrics(namespace, service) publishes with one
            # dimension, the stack's service name (the function's POWERTOOLS_SERVICE_NAME).
            dimensions={"service": schema.service_name(pulumi.get_stack())},
            statistic="Sum",
            threshold=1,
        )
        self._add_function_alarms(args)
        if args.access_log_group_name is not None:
            self._integration_5xx(args.access_log_group_name, args.api_id, args.stage_name)
        for metric in TABLE_METRICS:
            self._table_alarm(metric, args.table_name)
        self._add_queue_alarms(args)
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{pulumi.get_project()}-{pulumi.get_stack()}",
            dashboard_body=_dashboard_body(args),
            opts=self._fixed_name,
        )
        self.topic_arn = self.topic.arn
        self.dashboard_name = self.dashboard.dashboard_name
        self.register_outputs({"topicArn": self.topic_arn, "dashboardName": self.dashboard_name})

    def _add_topic(self, args: AlarmsArgs) -> None:
        self.topic = aws.sns.Topic(
            f"{self._name}-topic",
            name=physical_name("alarms", max_length=MAX_TOPIC_NAME_LENGTH),
            tags=self._tags,
            opts=self._fixed_name,
        )
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{self._name}-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=self._child,
            )

    def _add_function_alarms(self, args: AlarmsArgs) -> None:
        for metric, description in (
            ("Errors", "the {} handler raised, timed out or ran out of memory"),
            ("Throttles", "Lambda throttled the {} handler (account or reserved concurrency)"),
        ):
            for key, function_name in args.function_names.items():
                if metric == "Errors" and key in args.denying_functions:
                    continue
                self._alarm(
                    f"{key}-{metric}",
                    description.format(key),
                    namespace="AWS/Lambda",
                    metric_name=metric,
                    dimensions={"FunctionName": function_name},
                    statistic="Sum",
                    threshold=1,
                )

    def _add_queue_alarms(self, args: AlarmsArgs) -> None:
        self._alarm(
            "dlq-depth",
            "chat messages in the dead-letter queue: the RAG consumer failed them 5 times",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": args.dead_letter_queue_name},
            statistic="Maximum",
            threshold=1,
        )
        self._alarm(
            "queue-age",
            "the oldest chat message waits too long: is the RAG consumer running?",
            namespace="AWS/SQS",
            metric_name="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": args.queue_name},
            statistic="Maximum",
            threshold=args.oldest_message_alarm_seconds,
        )

    def _integration_5xx(
        self,
        log_group_name: pulumi.Input[str],
        api_id: pulumi.Input[str],
        stage_name: pulumi.Input[str],
    ) -> None:
        aws.cloudwatch.LogMetricFilter(
            f"{self._name}-integration-5xx",
            name=physical_name("integration-5xx", max_length=MAX_FILTER_NAME_LENGTH),
            log_group_name=log_group_name,
            pattern=INTEGRATION_5XX_PATTERN,
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                namespace=schema.METRICS_NAMESPACE,
                name=INTEGRATION_5XX_METRIC,
                value="1",
                unit="Count",
                # From the access log's own fields: each stack's API gets its own series.
                dimensions={"ApiId": "$.apiId", "Stage": "$.stage"},
            ),
            opts=self._fixed_name,
        )
        self._alarm(
            "integration-5xx",
            "a route answered 5xx: a handler crashed or timed out, or API Gateway could not "
            "invoke it (4XX answers such as an over-limit connect's 429 do not count)",
            namespace=schema.METRICS_NAMESPACE,
            metric_name=INTEGRATION_5XX_METRIC,
            dimensions={"ApiId": api_id, "Stage": stage_name},
            statistic="Sum",
            threshold=1,
        )

    def _alarm(
        self,
        key: str,
        description: str,
        *,
        namespace: str,
        metric_name: str,
        dimensions: Mapping[str, pulumi.Input[str]],
        statistic: str,
        threshold: float,
    ) -> None:
        self.alarms[key] = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}",
            name=physical_name(key, max_length=MAX_ALARM_NAME_LENGTH),
            alarm_description=description,
            namespace=namespace,
            metric_name=metric_name,
            dimensions=dict(dimensions),
            statistic=statistic,
            period=PERIOD_SECONDS,
            evaluation_periods=EVALUATION_PERIODS,
            threshold=threshold,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            tags=self._tags,
            opts=self._fixed_name,
        )

    def _table_alarm(self, metric: str, table_name: pulumi.Input[str]) -> None:
        queries = [
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=f"m{index}",
                return_data=False,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace="AWS/DynamoDB",
                    metric_name=metric,
                    dimensions={"TableName": table_name, "Operation": operation},
                    period=PERIOD_SECONDS,
                    stat="Sum",
                ),
            )
            for index, operation in enumerate(TABLE_OPERATIONS)
        ]
        total = aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="total",
            expression=f"SUM([{', '.join(f'm{index}' for index in range(len(queries)))}])",
            label=f"{metric} (all operations)",
            return_data=True,
        )
        key = f"table-{metric}"
        self.alarms[key] = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}",
            name=physical_name(key, max_length=MAX_ALARM_NAME_LENGTH),
            alarm_description=f"DynamoDB {metric} on the connections table",
            metric_queries=[*queries, total],
            evaluation_periods=EVALUATION_PERIODS,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            tags=self._tags,
            opts=self._fixed_name,
        )


def _widget(
    title: str, region: str, metrics: Sequence[Sequence[object]], stat: str
) -> dict[str, object]:
    return {
        "type": "metric",
        "width": DASHBOARD_WIDTH,
        "height": DASHBOARD_HEIGHT,
        "properties": {
            "title": title,
            "region": region,
            "stat": stat,
            "period": PERIOD_SECONDS,
            "view": "timeSeries",
            "metrics": [list(metric) for metric in metrics],
        },
    }


def _dashboard_body(args: AlarmsArgs) -> pulumi.Output[str]:
    return pulumi.Output.all(
        args.region,
        args.api_id,
        args.stage_name,
        args.table_name,
        args.queue_name,
        args.dead_letter_queue_name,
        *args.function_names.values(),
    ).apply(lambda values: _render_dashboard([str(value) for value in values]))


def _render_dashboard(values: list[str]) -> str:
    region, api_id, stage, table, queue, dead_letter, *functions = values
    api = ["ApiId", api_id, "Stage", stage]
    lambda_metrics = [
        ["AWS/Lambda", metric, "FunctionName", function]
        for function in functions
        for metric in ("Invocations", "Errors", "Throttles")
    ]
    widgets = [
        _widget(
            "WebSocket traffic",
            region,
            [["AWS/ApiGateway", metric, *api] for metric in ("ConnectCount", "MessageCount")],
            "Sum",
        ),
        _widget(
            "WebSocket errors",
            region,
            [["AWS/ApiGateway", metric, *api] for metric in (*API_ERROR_METRICS, "ClientError")],
            "Sum",
        ),
        _widget("Handlers", region, lambda_metrics, "Sum"),
        _widget(
            "Handler duration (p99)",
            region,
            [["AWS/Lambda", "Duration", "FunctionName", function] for function in functions],
            "p99",
        ),
        _widget(
            "Connections table",
            region,
            [
                ["AWS/DynamoDB", metric, "TableName", table, "Operation", operation]
                for metric in TABLE_METRICS
                for operation in TABLE_OPERATIONS
            ],
            "Sum",
        ),
        _widget(
            "Chat queue",
            region,
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue],
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue],
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dead_letter],
            ],
            "Maximum",
        ),
        _widget(
            "Channel (handler metrics)",
            region,
            # Every metric the handlers publish, whatever its name: a SEARCH over the namespace.
            [
                [
                    {
                        "expression": (
                            f"SEARCH('{{{schema.METRICS_NAMESPACE},service}} "
                            f'service="{schema.service_name(pulumi.get_stack())}"\', '
                            f"'Sum', {PERIOD_SECONDS})"
                        ),
                        "id": "channel",
                    }
                ]
            ],
            "Sum",
        ),
    ]
    return json.dumps({"widgets": widgets})
