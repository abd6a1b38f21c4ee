"""The inbound chat queue: SQS FIFO in high-throughput mode with SSE, and its dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.naming import physical_name
from runtime import schema

COMPONENT_TYPE = "rag-websocket:components:ChatQueue"
MAX_QUEUE_NAME_LENGTH = 80


@dataclass(frozen=True)
class ChatQueueArgs:
    # How long the RAG consumer may hold a message (the chatVisibilityTimeoutSeconds config).
    visibility_timeout_seconds: int
    tags: Mapping[str, str] = field(default_factory=dict)


def redrive_policy(dead_letter_arn: str) -> str:
    # maxReceiveCount as a JSON number: SQS returns it as one, and a string would show as a
    # change on every refresh.
    return json.dumps(
        {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": schema.DLQ_MAX_RECEIVE_COUNT}
    )


class ChatQueue(pulumi.ComponentResource):
    """Chat messages in per-conversation order (MessageGroupId: the user and conversation).

    Both queues have fixed names (the FIFO ``.fifo`` suffix needs one), so a replacement deletes
    the old queue first: SQS refuses a second queue of the same name.
    """

    url: pulumi.Output[str]
    arn: pulumi.Output[str]
    name: pulumi.Output[str]
    dead_letter_url: pulumi.Output[str]
    dead_letter_arn: pulumi.Output[str]
    dead_letter_name: pulumi.Output[str]
    visibility_timeout_seconds: pulumi.Output[int]

    def __init__(
        self, name: str, args: ChatQueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The attributes local mode creates the queue with: one statement of the queue's shape.
        # The visibility timeout alone is the stack's: it fits the deployed consumer.
        attributes = schema.fifo_queue_attributes()
        tags = dict(args.tags)
        fixed_name = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dlq",
            name=physical_name(
                f"{name}{schema.DLQ_NAME_SUFFIX}",
                max_length=MAX_QUEUE_NAME_LENGTH,
                suffix=schema.FIFO_SUFFIX,
            ),
            fifo_queue=True,
            sqs_managed_sse_enabled=True,
            message_retention_seconds=schema.DLQ_RETENTION_SECONDS,
            tags=tags,
            opts=fixed_name,
        )
        self.queue = aws.sqs.Queue(
            name,
            name=physical_name(name, max_length=MAX_QUEUE_NAME_LENGTH, suffix=schema.FIFO_SUFFIX),
            fifo_queue=attributes["FifoQueue"] == "true",
            content_based_deduplication=attributes["ContentBasedDeduplication"] == "true",
            deduplication_scope=attributes["DeduplicationScope"],
            fifo_throughput_limit=attributes["FifoThroughputLimit"],
            sqs_managed_sse_enabled=attributes["SqsManagedSseEnabled"] == "true",
            visibility_timeout_seconds=args.visibility_timeout_seconds,
            message_retention_seconds=int(attributes["MessageRetentionPeriod"]),
            redrive_policy=self.dead_letter_queue.arn.apply(redrive_policy),
            tags=tags,
            opts=fixed_name,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-allow",
            queue_url=self.dead_letter_queue.url,
            redrive_allow_policy=self.queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        self.url = self.queue.url
        self.arn = self.queue.arn
        self.name = self.queue.name
        self.dead_letter_url = self.dead_letter_queue.url
        self.dead_letter_arn = self.dead_letter_queue.arn
        self.dead_letter_name = self.dead_letter_queue.name
        self.visibility_timeout_seconds = pulumi.Output.from_input(args.visibility_timeout_seconds)
        self.register_outputs(
            {
                "url": self.url,
                "arn": self.arn,
                "deadLetterUrl": self.dead_letter_url,
                "deadLetterArn": self.dead_letter_arn,
            }
        )
