"""ConnectionTable is DESIGN §2 exactly; ChatQueue is FIFO, high throughput, SSE, with a DLQ."""

from __future__ import annotations

import json

import pytest

from components.settings import (
    DEFAULT_CHAT_VISIBILITY_TIMEOUT_SECONDS,
    SettingsError,
    parse_settings,
)
from runtime import schema
from tests.infra.conftest import run_stack
from tests.infra.mocks import ProgramRun
from tests.infra.test_settings import VALID

TABLE = "aws:dynamodb/table:Table"
QUEUE = "aws:sqs/queue:Queue"


def test_table_matches_the_schema_definition(dev_run: ProgramRun) -> None:
    table = dev_run.one(TABLE).inputs
    definition = schema.table_definition("ignored")
    assert table["billingMode"] == definition["BillingMode"] == "PAY_PER_REQUEST"
    assert (table["hashKey"], table["rangeKey"]) == ("PK", "SK")
    assert sorted((a["name"], a["type"]) for a in table["attributes"]) == sorted(
        (a["AttributeName"], a["AttributeType"])
        for a in definition["AttributeDefinitions"]  # type: ignore[attr-defined]
    )
    [index] = table["globalSecondaryIndexes"]
    assert index["name"] == schema.USER_INDEX_NAME == "userId-index"
    assert index["keySchemas"] == [
        {"attributeName": "userId", "keyType": "HASH"},
        {"attributeName": "SK", "keyType": "RANGE"},
    ]
    assert "hashKey" not in index
    assert "rangeKey" not in index
    [defined] = definition["GlobalSecondaryIndexes"]  # type: ignore[misc]
    assert index["projectionType"] == defined["Projection"]["ProjectionType"] == "INCLUDE"
    assert (
        index["nonKeyAttributes"]
        == defined["Projection"]["NonKeyAttributes"]
        == ["connectionId", "connectedAt", "ttl"]
    )
    assert table["ttl"] == {"attributeName": "ttl", "enabled": True}


def test_table_uses_the_aws_owned_key_unless_a_customer_key_is_set(
    dev_run: ProgramRun, build_dir: object
) -> None:
    """DynamoDB always encrypts at rest. Per the provider's docs for ``server_side_encryption``,
    ``enabled = false`` means the AWS-owned key (no charge) and ``enabled = true`` without a key
    ARN the AWS managed key ``aws/dynamodb`` (billed KMS requests)."""
    assert dev_run.one(TABLE).inputs["serverSideEncryption"] == {"enabled": False}
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    run = run_stack("dev", tableKmsKeyArn=key)
    assert run.one(TABLE).inputs["serverSideEncryption"] == {"enabled": True, "kmsKeyArn": key}


def test_a_malformed_kms_key_is_refused_with_its_fix() -> None:
    with pytest.raises(SettingsError, match="tableKmsKeyArn: must be a KMS key ARN") as caught:
        parse_settings({**VALID, "tableKmsKeyArn": "alias/mine"})
    assert "fix: pulumi config set rag-websocket:tableKmsKeyArn" in str(caught.value)


def test_table_protection_follows_the_stage(dev_run: ProgramRun, prod_run: ProgramRun) -> None:
    dev = dev_run.one(TABLE).inputs
    prod = prod_run.one(TABLE).inputs
    assert dev["pointInTimeRecovery"] == {"enabled": False}
    assert dev["deletionProtectionEnabled"] is False
    assert prod["pointInTimeRecovery"] == {"enabled": True}
    assert prod["deletionProtectionEnabled"] is True


def test_table_outputs(dev_run: ProgramRun) -> None:
    table = dev_run.one(TABLE).state
    assert dev_run.outputs["connectionsTableName"] == table["name"]
    assert dev_run.outputs["connectionsTableArn"] == table["arn"]
    assert dev_run.outputs["userIndexName"] == "userId-index"


def test_chat_queue_is_fifo_high_throughput_encrypted(dev_run: ProgramRun) -> None:
    queue = dev_run.one(QUEUE, "chat").inputs
    assert queue["name"] == "rag-websocket-dev-chat.fifo"
    assert queue["fifoQueue"] is True
    assert queue["contentBasedDeduplication"] is False  # dedup id = clientMessageId
    assert queue["deduplicationScope"] == "messageGroup"
    assert queue["fifoThroughputLimit"] == "perMessageGroupId"
    assert queue["sqsManagedSseEnabled"] is True
    assert queue["visibilityTimeoutSeconds"] == DEFAULT_CHAT_VISIBILITY_TIMEOUT_SECONDS
    assert queue["messageRetentionSeconds"] == schema.QUEUE_RETENTION_SECONDS


def test_dead_letter_queue_after_five_receives(dev_run: ProgramRun) -> None:
    queue = dev_run.one(QUEUE, "chat").inputs
    dead_letter = dev_run.one(QUEUE, "chat-dlq")
    redrive = json.loads(queue["redrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dead_letter.state["arn"], "maxReceiveCount": 5}
    assert dead_letter.inputs["name"].endswith(".fifo")
    assert dead_letter.inputs["fifoQueue"] is True
    assert dead_letter.inputs["sqsManagedSseEnabled"] is True
    assert dead_letter.inputs["messageRetentionSeconds"] == schema.DLQ_RETENTION_SECONDS
    allow = dev_run.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy").inputs
    assert allow["queueUrl"] == dead_letter.state["url"]
    assert json.loads(allow["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [dev_run.one(QUEUE, "chat").state["arn"]],
    }


def test_queue_outputs(dev_run: ProgramRun) -> None:
    assert dev_run.outputs["chatQueueUrl"] == dev_run.one(QUEUE, "chat").state["url"]
    assert dev_run.outputs["chatQueueArn"] == dev_run.one(QUEUE, "chat").state["arn"]
    assert dev_run.outputs["chatDeadLetterQueueUrl"] == dev_run.one(QUEUE, "chat-dlq").state["url"]


def test_visibility_timeout_fits_a_consumer_of_several_minutes(dev_run: ProgramRun) -> None:
    """Lambda refuses an SQS event source whose function timeout exceeds the queue's visibility
    timeout, and AWS recommends at least six times the function timeout
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html)."""
    visibility = dev_run.one(QUEUE, "chat").inputs["visibilityTimeoutSeconds"]
    assert visibility >= 6 * 5 * 60  # a 5-minute RAG answer, with AWS's margin
    assert dev_run.outputs["chatVisibilityTimeoutSeconds"] == visibility


def test_visibility_timeout_is_stack_config(build_dir: object) -> None:
    run = run_stack("dev", chatVisibilityTimeoutSeconds="3600")
    assert run.one(QUEUE, "chat").inputs["visibilityTimeoutSeconds"] == 3600
    assert run.outputs["chatVisibilityTimeoutSeconds"] == 3600


@pytest.mark.parametrize("value", ["59", "43201", "soon"])
def test_visibility_timeout_out_of_sqs_bounds_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings({**VALID, "chatVisibilityTimeoutSeconds": value})
    message = str(caught.value)
    assert "rag-websocket:chatVisibilityTimeoutSeconds:" in message
    assert "fix: pulumi config set rag-websocket:chatVisibilityTimeoutSeconds 1800" in message
