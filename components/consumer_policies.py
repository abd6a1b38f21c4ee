"""The managed policies this stack hands to the RAG stack (``senderPolicyArn``,
``chatConsumerPolicyArn``, ``connectionCloserPolicyArn``): what a RAG function needs to stream
answers back, to consume the chat queue and (only if it must) to close a client's connection,
and nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_aws as aws

from components.iam import allow, policy_document

COMPONENT_TYPE = "rag-websocket:components:ConsumerPolicies"
# MessageSender only posts (PostToConnection); a 410 tells it a connection is gone.
SENDER_METHODS = ("POST",)
# DeleteConnection: closing a client's socket is a separate grant the RAG stack opts into.
CLOSER_METHODS = ("DELETE",)
CHAT_CONSUMER_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)


@dataclass(frozen=True)
class ConsumerPoliciesArgs:
    execution_arn: pulumi.Input[str]
    stage_name: pulumi.Input[str]
    table_arn: pulumi.Input[str]
    user_index_arn: pulumi.Input[str]
    queue_arn: pulumi.Input[str]


def management_connection_arns(
    execution_arn: pulumi.Input[str], stage_name: pulumi.Input[str], methods: Sequence[str]
) -> list[pulumi.Output[str]]:
    """``{executionArn}/{stage}/{METHOD}/@connections/*`` for each method (DESIGN §4)."""

    def arn(method: str, parts: list[str]) -> str:
        return f"{parts[0]}/{parts[1]}/{method}/@connections/*"

    base = pulumi.Output.all(execution_arn, stage_name)
    return [base.apply(partial(arn, method)) for method in methods]


class ConsumerPolicies(pulumi.ComponentResource):
    sender_policy_arn: pulumi.Output[str]
    chat_consumer_policy_arn: pulumi.Output[str]
    connection_closer_policy_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ConsumerPoliciesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.sender_document = policy_document(
            [
                allow(
                    "PostToConnections",
                    ["execute-api:ManageConnections"],
                    management_connection_arns(args.execution_arn, args.stage_name, SENDER_METHODS),
                ),
                allow("FindUserConnections", ["dynamodb:Query"], [args.user_index_arn]),
                # A gone connection's row is deleted and its id taken out of the user's set.
                allow(
                    "ReadAndRemoveConnections",
                    ["dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"],
                    [args.table_arn],
                ),
            ]
        )
        self.sender_policy = aws.iam.Policy(
            f"{name}-sender",
            description="rag-websocket MessageSender: post to connections, find and clean them",
            policy=self.sender_document,
            opts=child,
        )
        self.chat_consumer_document = policy_document(
            [allow("ConsumeChatQueue", CHAT_CONSUMER_ACTIONS, [args.queue_arn])]
        )
        self.chat_consumer_policy = aws.iam.Policy(
            f"{name}-chat-consumer",
            description="rag-websocket chat queue consumer (e.g. a Lambda SQS event source)",
            policy=self.chat_consumer_document,
            opts=child,
        )
        self.connection_closer_document = policy_document(
            [
                allow(
                    "CloseConnections",
                    ["execute-api:ManageConnections"],
                    management_connection_arns(args.execution_arn, args.stage_name, CLOSER_METHODS),
                )
            ]
        )
        self.connection_closer_policy = aws.iam.Policy(
            f"{name}-connection-closer",
            description="rag-websocket: close a client's connection (DeleteConnection)",
            policy=self.connection_closer_document,
            opts=child,
        )
        self.sender_policy_arn = self.sender_policy.arn
        self.chat_consumer_policy_arn = self.chat_consumer_policy.arn
        self.connection_closer_policy_arn = self.connection_closer_policy.arn
        self.register_outputs(
            {
                "senderPolicyArn": self.sender_policy_arn,
                "chatConsumerPolicyArn": self.chat_consumer_policy_arn,
                "connectionCloserPolicyArn": self.connection_closer_policy_arn,
            }
        )
