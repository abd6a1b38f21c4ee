"""One Lambda handler: its role, its log group, its least-privilege policy and the function.

The log group is created first under ``/aws/lambda/<function name>`` with the configured
retention (otherwise Lambda creates it on first use, kept forever), and the role may write only
to it. Everything else the handler may do is the caller's explicit list of statements. The
function and its log group have fixed names, so a replacement deletes the old one first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.iam import LAMBDA_SERVICE, Statement, allow, assume_role_policy, policy_document
from components.naming import physical_name
from components.settings import LambdaSettings
from runtime import schema

COMPONENT_TYPE = "rag-websocket:components:HandlerFunction"
MAX_FUNCTION_NAME_LENGTH = 64
API_GATEWAY_PRINCIPAL = "apigateway.amazonaws.com"


@dataclass(frozen=True)
class HandlerFunctionArgs:
    handler: str  # e.g. runtime.handlers.connect.handler
    description: str
    code: pulumi.Archive
    layers: Sequence[pulumi.Input[str]]
    lambda_settings: LambdaSettings
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    statements: Sequence[Statement] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


def log_group_name(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


class HandlerFunction(pulumi.ComponentResource):
    function_name: str
    arn: pulumi.Output[str]
    invoke_arn: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: HandlerFunctionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        settings = args.lambda_settings
        tags = dict(args.tags)
        self.function_name = physical_name(name, max_length=MAX_FUNCTION_NAME_LENGTH)

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=log_group_name(self.function_name),
            retention_in_days=settings.log_retention_days,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=assume_role_policy(LAMBDA_SERVICE),
            description=f"{self.function_name}: {args.description}",
            tags=tags,
            opts=child,
        )
        logs = allow(
            "WriteOwnLogGroup",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [self.log_group.arn.apply(lambda arn: f"{arn}:*")],
        )
        self.policy_document = policy_document([logs, *args.statements])
        self.policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=self.policy_document,
            opts=child,
        )
        environment: dict[str, pulumi.Input[str]] = {
            **schema.common_environment(
                settings.log_level, schema.service_name(pulumi.get_stack())
            ),
            **args.environment,
        }
        self.function = aws.lambda_.Function(
            name,
            name=self.function_name,
            description=args.description,
            role=self.role.arn,
            handler=args.handler,
            runtime=settings.runtime,
            architectures=[settings.architecture],
            memory_size=settings.memory_mb,
            timeout=settings.timeout_seconds,
            code=args.code,
            layers=list(args.layers),
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=self.log_group.name
            ),
            tags=tags,
            # The role's policy and the log group first: the first invocation can already log.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.policy, self.log_group], delete_before_replace=True
            ),
        )
        self.arn = self.function.arn
        self.invoke_arn = self.function.invoke_arn
        self.role_arn = self.role.arn
        self.log_group_name = self.log_group.name
        self.register_outputs(
            {
                "functionName": self.function.name,
                "arn": self.arn,
                "roleArn": self.role_arn,
                "logGroupName": self.log_group_name,
            }
        )

    def allow_api_gateway(self, suffix: str, source_arn: pulumi.Input[str]) -> None:
        """Let API Gateway invoke this function, from ``source_arn`` only (DESIGN §4)."""
        aws.lambda_.Permission(
            f"{self._name}-invoke-{suffix}",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal=API_GATEWAY_PRINCIPAL,
            source_arn=source_arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
