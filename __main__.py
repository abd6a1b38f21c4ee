"""rag-websocket: the real-time channel of the RAG chatbot (docs/deploy.md).

settings → connections table, chat queue, packages → four handlers, each with only the
permissions it uses → WebSocket API (its access logs use the account stack's CloudWatch role)
→ policies for the RAG stack → alarms → the stack outputs of DESIGN §6 (the contract the RAG
stack reads; outputs may be added, never renamed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pulumi

from components.alarms import Alarms, AlarmsArgs
from components.api_gateway_account import account_role_arn
from components.chat_queue import ChatQueue, ChatQueueArgs
from components.connection_table import ConnectionTable, ConnectionTableArgs
from components.consumer_policies import (
    CLOSER_METHODS,
    ConsumerPolicies,
    ConsumerPoliciesArgs,
    management_connection_arns,
)
from components.dependency_layer import DependencyLayer, DependencyLayerArgs
from components.handler_function import HandlerFunction, HandlerFunctionArgs
from components.iam import Statement, allow
from components.settings import load_settings
from components.websocket_api import WebSocketApi, WebSocketApiArgs
from runtime import schema

settings = load_settings()
stage_name = settings.effective_stage_name(pulumi.get_stack())
tags = {"project": pulumi.get_project(), "stack": pulumi.get_stack(), **settings.tag_map}

table = ConnectionTable(
    "connections",
    ConnectionTableArgs(
        point_in_time_recovery=settings.point_in_time_recovery,
        deletion_protection=settings.deletion_protection,
        kms_key_arn=settings.table_kms_key_arn,
        tags=tags,
    ),
)
queue = ChatQueue(
    "chat",
    ChatQueueArgs(visibility_timeout_seconds=settings.chat_visibility_timeout_seconds, tags=tags),
)
packages = DependencyLayer(
    "packages", DependencyLayerArgs(lambda_settings=settings.lambda_settings)
)

# The API's execution ARN and management endpoint, for connect: the API is created after the
# functions (its integrations need them), so both are resolved right after it. They come from
# the Api resource and the stage's name only, never the Stage: no cycle.
Resolve = Callable[[pulumi.Output[str]], None]
api_execution_arn: pulumi.Output[str]
api_management_endpoint: pulumi.Output[str]
resolve_api_execution_arn: Resolve
resolve_api_management_endpoint: Resolve
api_execution_arn, resolve_api_execution_arn = pulumi.deferred_output()
api_management_endpoint, resolve_api_management_endpoint = pulumi.deferred_output()

# Every variable a function may read, by name; each function gets only its own.
variables: dict[str, pulumi.Input[str]] = {
    schema.ENV_CONNECTIONS_TABLE: table.name,
    schema.ENV_MANAGEMENT_ENDPOINT: api_management_endpoint,
    schema.ENV_CHAT_QUEUE_URL: queue.url,
    schema.ENV_IDLE_TIMEOUT: str(settings.idle_timeout_seconds),
    schema.ENV_MAX_CONNECTIONS_PER_USER: str(settings.max_connections_per_user),
    schema.ENV_MESSAGES_PER_MINUTE: str(settings.messages_per_minute),
    schema.ENV_AUTH_ISSUER: settings.auth_issuer,
    schema.ENV_AUTH_AUDIENCE: settings.auth_audience,
    schema.ENV_AUTH_JWKS_URL: settings.jwks_url,
    schema.ENV_AUTH_TOKEN_USE: settings.auth_token_use,
}


def handler_function(
    name: str, description: str, statements: Sequence[Statement] = ()
) -> HandlerFunction:
    """Function ``name`` of ``runtime.schema``: its handler and environment, the shared packages,
    the stack's Lambda settings and tags, and only the permissions ``statements`` grant."""
    return HandlerFunction(
        name,
        HandlerFunctionArgs(
            handler=schema.lambda_handler(name),
            description=description,
            code=packages.code,
            layers=[packages.layer_arn],
            lambda_settings=settings.lambda_settings,
            environment=schema.function_environment(name, variables),
            statements=statements,
            tags=tags,
        ),
    )


authorizer = handler_function(
    "authorizer", "$connect REQUEST authorizer: verifies the JWT of ?token="
)
connect = handler_function(
    "connect",
    "$connect: stores the connection row, closes the same client's previous one",
    statements=[
        # One transaction: the row (PutItem) and the user's connection set (UpdateItem);
        # at the limit, the set's rows are read and the gone ones dropped from it (an
        # emptied set's item is deleted). The client instance's items are put, and a
        # connection replaced while its $connect ran is found (GetItem) and removed.
        allow(
            "AddConnection",
            [
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:DeleteItem",
            ],
            [table.arn],
        ),
        # A client's reconnect closes the connection the same client instance opened before
        # (DeleteConnection): one it gave up on may still be open at API Gateway.
        allow(
            "ClosePreviousConnection",
            ["execute-api:ManageConnections"],
            management_connection_arns(api_execution_arn, stage_name, CLOSER_METHODS),
        ),
    ],
)
disconnect = handler_function(
    "disconnect",
    "$disconnect: deletes the connection row",
    statements=[
        allow("RemoveConnection", ["dynamodb:DeleteItem", "dynamodb:UpdateItem"], [table.arn])
    ],
)
message = handler_function(
    "message",
    "chat_message, ping and $default: rate limit, queue, answer",
    statements=[
        allow("TouchConnection", ["dynamodb:UpdateItem"], [table.arn]),
        allow("QueueChatMessage", ["sqs:SendMessage"], [queue.arn]),
    ],
)

api = WebSocketApi(
    "websocket",
    WebSocketApiArgs(
        authorizer=authorizer,
        connect=connect,
        disconnect=disconnect,
        message=message,
        stage_name=stage_name,
        throttle_burst_limit=settings.throttle_burst_limit,
        throttle_rate_limit=settings.throttle_rate_limit,
        log_retention_days=settings.log_retention_days,
        account_role_arn=account_role_arn(settings.account_stack) if settings.access_logs else None,
        custom_domain_name=settings.custom_domain_name,
        certificate_arn=settings.certificate_arn,
        tags=tags,
    ),
)
resolve_api_execution_arn(api.execution_arn)
resolve_api_management_endpoint(api.handler_management_endpoint)
policies = ConsumerPolicies(
    "rag",
    ConsumerPoliciesArgs(
        execution_arn=api.execution_arn,
        stage_name=api.stage_name,
        table_arn=table.arn,
        user_index_arn=table.user_index_arn,
        queue_arn=queue.arn,
    ),
)
alarms = Alarms(
    "alarms",
    AlarmsArgs(
        api_id=api.api_id,
        stage_name=api.stage_name,
        region=api.region,
        function_names={
            "authorizer": authorizer.function_name,
            "connect": connect.function_name,
            "disconnect": disconnect.function_name,
            "message": message.function_name,
        },
        table_name=table.name,
        queue_name=queue.name,
        dead_letter_queue_name=queue.dead_letter_name,
        oldest_message_alarm_seconds=settings.oldest_message_alarm_seconds,
        access_log_group_name=api.access_log_group_name,
        alarm_email=settings.alarm_email,
        tags=tags,
    ),
)

pulumi.export("websocketUrl", api.websocket_url)
pulumi.export("managementEndpoint", api.management_endpoint)
pulumi.export("apiId", api.api_id)
pulumi.export("apiExecutionArn", api.execution_arn)
pulumi.export("stageName", api.stage_name)
pulumi.export("connectionsTableName", table.name)
pulumi.export("connectionsTableArn", table.arn)
pulumi.export("userIndexName", table.user_index_name)
pulumi.export("chatQueueUrl", queue.url)
pulumi.export("chatQueueArn", queue.arn)
pulumi.export("chatDeadLetterQueueUrl", queue.dead_letter_url)
pulumi.export("senderPolicyArn", policies.sender_policy_arn)
pulumi.export("chatConsumerPolicyArn", policies.chat_consumer_policy_arn)
pulumi.export("runtimeLayerArn", packages.runtime_layer_arn)
pulumi.export("alarmTopicArn", alarms.topic_arn)
# Added after DESIGN §6's first list; the names above never change.
pulumi.export("chatVisibilityTimeoutSeconds", queue.visibility_timeout_seconds)
pulumi.export("connectionCloserPolicyArn", policies.connection_closer_policy_arn)
if api.domain_target is not None:
    pulumi.export("customDomainTarget", api.domain_target)
