"""rag-consumer: how the RAG stack plugs into rag-websocket.

Every output of the rag-websocket stack is read (a missing one fails the preview); the answering
function gets the runtime layer, the two managed policies and an SQS event source on the chat
queue sized to the queue's visibility timeout, and its errors page the same alarm topic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pulumi_aws as aws

# DESIGN §6 of rag-websocket: the names this stack relies on.
CONTRACT = (
    "websocketUrl",
    "managementEndpoint",
    "apiId",
    "apiExecutionArn",
    "stageName",
    "connectionsTableName",
    "connectionsTableArn",
    "userIndexName",
    "chatQueueUrl",
    "chatQueueArn",
    "chatDeadLetterQueueUrl",
    "senderPolicyArn",
    "chatConsumerPolicyArn",
    "runtimeLayerArn",
    "alarmTopicArn",
    # Added to the contract later (outputs are added, never renamed).
    "chatVisibilityTimeoutSeconds",
)
# The variables MessageSender.from_env reads (runtime.schema ENV_CONNECTIONS_TABLE and
# ENV_MANAGEMENT_ENDPOINT in the rag-websocket repository).
CONNECTIONS_TABLE = "CONNECTIONS_TABLE"
MANAGEMENT_ENDPOINT = "WEBSOCKET_MANAGEMENT_ENDPOINT"
APP = Path(__file__).resolve().parent / "app"
# Lambda refuses an SQS event source whose function timeout exceeds the queue's visibility
# timeout; AWS recommends the visibility timeout be at least six times the function timeout
# (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html).
VISIBILITY_PER_FUNCTION_TIMEOUT = 6
MAX_LAMBDA_TIMEOUT_SECONDS = 900
MAX_FIFO_BATCH_SIZE = 10

config = pulumi.Config()
websocket = pulumi.StackReference(config.require("websocketStack"))
channel = {name: websocket.require_output(name) for name in CONTRACT}
answer_seconds = config.get_int("answerSecondsPerMessage") or 120


class QueueTooShortError(ValueError):
    """The chat queue's visibility timeout cannot fit one answer with AWS's margin."""


def function_timeout(visibility_seconds: int) -> int:
    """A sixth of the visibility timeout, within Lambda's 15 minutes, at least one answer."""
    timeout = min(visibility_seconds // VISIBILITY_PER_FUNCTION_TIMEOUT, MAX_LAMBDA_TIMEOUT_SECONDS)
    if timeout < answer_seconds:
        raise QueueTooShortError(
            f"the chat queue's visibility timeout ({visibility_seconds} s) fits a consumer of "
            f"{timeout} s, less than answerSecondsPerMessage ({answer_seconds} s): raise "
            "chatVisibilityTimeoutSeconds on the rag-websocket stack to at least "
            f"{answer_seconds * VISIBILITY_PER_FUNCTION_TIMEOUT}, or lower answerSecondsPerMessage"
        )
    return timeout


def batch_size(timeout_seconds: int) -> int:
    """As many messages as the timeout has answers' time for (a FIFO event source takes 10 at
    most, and no batching window: Lambda supports none for FIFO queues)."""
    return max(1, min(timeout_seconds // answer_seconds, MAX_FIFO_BATCH_SIZE))


timeout = channel["chatVisibilityTimeoutSeconds"].apply(
    lambda seconds: function_timeout(int(seconds))
)

function_name = f"{pulumi.get_project()}-{pulumi.get_stack()}-answer"
log_group = aws.cloudwatch.LogGroup(
    "answer-logs", name=f"/aws/lambda/{function_name}", retention_in_days=14
)
role = aws.iam.Role(
    "answer-role",
    assume_role_policy=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    ),
)
logs = aws.iam.RolePolicy(
    "answer-logs-policy",
    role=role.id,
    policy=log_group.arn.apply(
        lambda arn: json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                        "Resource": f"{arn}:*",
                    }
                ],
            }
        )
    ),
)
sender = aws.iam.RolePolicyAttachment(
    "answer-sender", role=role.name, policy_arn=channel["senderPolicyArn"]
)
consumer = aws.iam.RolePolicyAttachment(
    "answer-chat-consumer", role=role.name, policy_arn=channel["chatConsumerPolicyArn"]
)

answer = aws.lambda_.Function(
    "answer",
    name=function_name,
    runtime="python3.13",
    architectures=["arm64"],
    handler="answer.handler",
    code=pulumi.AssetArchive({"answer.py": pulumi.FileAsset(str(APP / "answer.py"))}),
    layers=[channel["runtimeLayerArn"]],
    role=role.arn,
    timeout=timeout,
    memory_size=512,
    environment=aws.lambda_.FunctionEnvironmentArgs(
        variables={
            CONNECTIONS_TABLE: channel["connectionsTableName"],
            MANAGEMENT_ENDPOINT: channel["managementEndpoint"],
        }
    ),
    logging_config=aws.lambda_.FunctionLoggingConfigArgs(
        log_format="Text", log_group=log_group.name
    ),
    opts=pulumi.ResourceOptions(depends_on=[logs, sender, consumer]),
)
aws.lambda_.EventSourceMapping(
    "answer-chat-queue",
    event_source_arn=channel["chatQueueArn"],
    function_name=answer.arn,
    batch_size=timeout.apply(batch_size),
    function_response_types=["ReportBatchItemFailures"],
)
aws.cloudwatch.MetricAlarm(
    "answer-errors",
    alarm_description="the RAG answering function fails",
    namespace="AWS/Lambda",
    metric_name="Errors",
    dimensions={"FunctionName": answer.name},
    statistic="Sum",
    period=300,
    evaluation_periods=1,
    threshold=1,
    comparison_operator="GreaterThanOrEqualToThreshold",
    treat_missing_data="notBreaching",
    alarm_actions=[channel["alarmTopicArn"]],
)

pulumi.export("answerFunctionName", answer.name)
# What the chat front end needs, passed through from the channel.
pulumi.export("websocketUrl", channel["websocketUrl"])
pulumi.export("channel", channel)
