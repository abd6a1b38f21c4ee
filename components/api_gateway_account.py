"""The API Gateway CloudWatch role: one per account AND region, owned by the ``account/`` stack.

API Gateway writes every stage's access logs in the region with the role in its account
settings; a stage that turns access logs on where none is set fails to create ("CloudWatch Logs
role ARN must be set in account settings to enable logging"). Since pulumi-aws 7, deleting an
``aws.apigateway.Account`` resets that setting for the whole region, so these resources are
retained on delete: destroying the account stack never takes logging away from another API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_aws as aws

from components.iam import API_GATEWAY_SERVICE, allow, assume_role_policy, policy_document

COMPONENT_TYPE = "rag-websocket:components:ApiGatewayAccount"
# What API Gateway needs to write access logs anywhere in the account and region (the same
# permissions as the AWS managed AmazonAPIGatewayPushToCloudWatchLogs, minus its "*").
ACCOUNT_LOG_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
)
# The stage stacks read the role through a StackReference under this name.
ROLE_ARN_OUTPUT = "cloudWatchRoleArn"
ACCOUNT_PROJECT = "rag-websocket-account"


class AccountSettingsError(RuntimeError):
    """Access logs are on, but the account stack has not set the CloudWatch role."""


def account_role_arn(account_stack: str) -> pulumi.Output[str]:
    """The CloudWatch role the account stack ``account_stack`` set; fails the preview with the
    fix when that stack has not been deployed (API Gateway would refuse the stage later, with
    "CloudWatch Logs role ARN must be set in account settings to enable logging")."""
    reference = pulumi.StackReference(account_stack)
    return reference.get_output(ROLE_ARN_OUTPUT).apply(partial(_require_role, account_stack))


def _require_role(account_stack: str, role_arn: object) -> str:
    if not isinstance(role_arn, str) or not role_arn:
        raise AccountSettingsError(
            f"access logs need the API Gateway CloudWatch role of this account and region, and "
            f"the account stack {account_stack} has no {ROLE_ARN_OUTPUT} output: deploy it "
            f"first (cd account && pulumi stack select {account_stack} && pulumi up), or turn "
            "access logs off for this stage (pulumi config set rag-websocket:accessLogs false)"
        )
    return role_arn


@dataclass(frozen=True)
class ApiGatewayAccountArgs:
    partition: pulumi.Input[str]
    region: pulumi.Input[str]
    account_id: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)


class ApiGatewayAccount(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ApiGatewayAccountArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        # Retained: the setting outlives this stack, and so must the role it names.
        retained = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        role = aws.iam.Role(
            f"{name}-cloudwatch-role",
            assume_role_policy=assume_role_policy(API_GATEWAY_SERVICE),
            description="API Gateway account settings: write API access logs to CloudWatch Logs",
            tags=dict(args.tags),
            opts=retained,
        )
        logs = pulumi.Output.all(args.partition, args.region, args.account_id).apply(
            lambda parts: f"arn:{parts[0]}:logs:{parts[1]}:{parts[2]}"
        )
        self.policy_document = policy_document(
            [
                allow(
                    "ApiGatewayAccessLogs",
                    ACCOUNT_LOG_ACTIONS,
                    [
                        logs.apply(lambda prefix: f"{prefix}:log-group:*"),
                        logs.apply(lambda prefix: f"{prefix}:log-group:*:log-stream:*"),
                    ],
                )
            ]
        )
        policy = aws.iam.RolePolicy(
            f"{name}-cloudwatch-policy",
            role=role.id,
            policy=self.policy_document,
            opts=retained,
        )
        self.account = aws.apigateway.Account(
            f"{name}-settings",
            cloudwatch_role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, depends_on=[policy]),
        )
        self.role_arn = self.account.cloudwatch_role_arn.apply(lambda arn: arn or "")
        self.register_outputs({ROLE_ARN_OUTPUT: self.role_arn})
