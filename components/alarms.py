"""CloudWatch alarms on every part of the channel, an SNS topic for them, and a dashboard.

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

from runtime import schema

COMPONENT_TYPE = "rag-websocket:components:Alarms"
PERIOD_SECONDS = 300
EVALUATION_PERIODS = 1
# The operations on the connections table (handlers + MessageSender).
TABLE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "GetItem", "Query")
API_ERROR_METRICS = ("IntegrationError", "ExecutionError")
FUNCTION_METRICS = ("Errors", "Throttles")
TABLE_METRICS = ("ThrottledRequests", "SystemErrors")
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
    alarm_email: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


class Alarms(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self._tags = dict(args.tags)
        self.topic = aws.sns.Topic(f"{name}-topic", tags=self._tags, opts=self._child)
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=self._child,
            )
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}

        api = {"ApiId": args.api_id, "Stage": args.stage_name}
        for metric in API_ERROR_METRICS:
            self._alarm(
                f"api-{metric}",
                f"API Gateway {metric}: requests the handlers or API Gateway failed",
                namespace="AWS/ApiGateway",
                metric_name=metric,
                dimensions=api,
                statistic="Sum",
                threshold=1,
            )
        for key, function_name in args.function_names.items():
            for metric in FUNCTION_METRICS:
                self._alarm(
                    f"{key}-{metric}",
                    f"Lambda {metric} of the {key} handler",
                    namespace="AWS/Lambda",
                    metric_name=metric,
                    dimensions={"FunctionName": function_name},
                    statistic="Sum",
                    threshold=1,
                )
        for metric in TABLE_METRICS:
            self._table_alarm(metric, args.table_name)
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
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{pulumi.get_project()}-{pulumi.get_stack()}",
            dashboard_body=_dashboard_body(args),
            opts=self._child,
        )
        self.topic_arn = self.topic.arn
        self.dashboard_name = self.dashboard.dashboard_name
        self.register_outputs({"topicArn": self.topic_arn, "dashboardName": self.dashboard_name})

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
            opts=self._child,
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
            alarm_description=f"DynamoDB {metric} on the connections table",
            metric_queries=[*queries, total],
            evaluation_periods=EVALUATION_PERIODS,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            tags=self._tags,
            opts=self._child,
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
                            f"service=\"{schema.SERVICE_NAME}\"', 'Sum', {PERIOD_SECONDS})"
                        ),
                        "id": "channel",
                    }
                ]
            ],
            "Sum",
        ),
    ]
    return json.dumps({"widgets": widgets})
