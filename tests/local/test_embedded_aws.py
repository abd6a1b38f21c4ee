"""Embedded AWS: moto on loopback with the table and queues built from runtime/schema.py."""

from __future__ import annotations

import http.client
import json
import os
import threading

import pytest
from botocore.exceptions import ClientError

from local.aws import EmbeddedAws, dead_letter_queue_name
from runtime import schema


def test_table_and_queues_match_the_schema_and_only_moto_is_reachable():
    with EmbeddedAws() as aws:
        assert aws.endpoint_url.startswith("http://127.0.0.1:")
        table = aws.dynamodb().describe_table(TableName=aws.table_name)["Table"]
        assert [k["AttributeName"] for k in table["KeySchema"]] == [
            schema.PARTITION_KEY,
            schema.SORT_KEY,
        ]
        [index] = table["GlobalSecondaryIndexes"]
        assert index["IndexName"] == schema.USER_INDEX_NAME
        ttl = aws.dynamodb().describe_time_to_live(TableName=aws.table_name)
        assert ttl["TimeToLiveDescription"]["AttributeName"] == schema.TTL_ATTRIBUTE

        attributes = aws.sqs().get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])[
            "Attributes"
        ]
        assert attributes["FifoQueue"] == "true"
        assert attributes["QueueArn"] == aws.queue_arn
        redrive = json.loads(attributes["RedrivePolicy"])
        dlq_arn = aws.sqs().get_queue_attributes(
            QueueUrl=aws.dead_letter_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        assert redrive["deadLetterTargetArn"] == dlq_arn
        assert int(redrive["maxReceiveCount"]) == schema.DLQ_MAX_RECEIVE_COUNT
        environment = aws.environment()
    assert environment["AWS_ENDPOINT_URL"] == aws.endpoint_url
    assert environment["AWS_PROFILE"] is None
    assert environment["AWS_CONFIG_FILE"] == os.devnull
    assert environment["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull


@pytest.mark.usefixtures("over_1024_files")
def test_embedded_aws_starts_in_a_process_holding_over_1024_files():
    """The wait for moto's READY line must not use ``select.select()``, which raises
    ``ValueError: filedescriptor out of range`` for a pipe numbered 1024 or more."""
    with EmbeddedAws() as aws:
        assert aws.dynamodb().describe_table(TableName=aws.table_name)["Table"]


def test_a_second_start_begins_empty():
    with EmbeddedAws() as aws:
        aws.sqs().send_message(
            QueueUrl=aws.queue_url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d"
        )
    with EmbeddedAws() as aws:
        messages = aws.sqs().receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=0)
        assert messages.get("Messages", []) == []


def test_fifo_deduplication_outlives_the_first_copy_like_aws():
    """AWS refuses a re-sent deduplication id for 5 minutes, even after the first copy was
    received and deleted; plain moto would queue it again."""
    with EmbeddedAws() as aws:
        sqs = aws.sqs()

        def send(dedup_id: str, group: str = "conv") -> None:
            sqs.send_message(
                QueueUrl=aws.queue_url,
                MessageBody=dedup_id,
                MessageGroupId=group,
                MessageDeduplicationId=dedup_id,
            )

        def drain() -> list[str]:
            bodies = []
            while batch := sqs.receive_message(
                QueueUrl=aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", []):
                for message in batch:
                    bodies.append(message["Body"])
                    sqs.delete_message(
                        QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
            return bodies

        send("client-message-1")
        assert drain() == ["client-message-1"]
        send("client-message-1")  # the client's re-send after a reconnect
        send("client-message-2")
        assert drain() == ["client-message-2"]


def test_moto_sqs_deletes_under_the_queue_lock_like_aws_never_losing_a_send():
    """moto's ``Queue.delete_message`` rebuilt the message list without the lock
    ``add_message`` appends under: a racing ``SendMessage`` could be dropped and a deleted
    message come back. ``local.fidelity.patch_moto`` (applied by ``local.moto_process``, so by
    ``python -m local``, the tests and the soak) makes it wait for that lock."""
    from moto.sqs.models import Queue

    from local.fidelity import patch_moto

    patch_moto()
    queue = Queue("lock-test.fifo", "us-east-1", "123456789012", FifoQueue="true")
    finished = threading.Event()

    def delete() -> None:
        try:
            queue.delete_message("no-such-receipt-handle")
        except Exception:  # noqa: S110 - moto refuses the handle; only the wait matters here
            pass
        finally:
            finished.set()

    with queue._messages_lock:
        worker = threading.Thread(target=delete)
        worker.start()
        assert not finished.wait(0.3)  # held back while a send holds the lock
    assert finished.wait(5)
    worker.join()


def test_embedded_aws_runs_in_its_own_process_and_stops_with_it():
    embedded = EmbeddedAws()
    with embedded as aws:
        process = embedded._process
        assert process is not None
        assert process.pid != os.getpid()
        assert aws.dynamodb().list_tables()["TableNames"] == [aws.table_name]
    assert process.poll() is not None


def test_moto_keeps_connections_alive():
    """moto's werkzeug server closed the connection after every answer; waitress keeps it."""
    with EmbeddedAws() as aws:
        host, port = aws.endpoint_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            for _ in range(3):
                connection.request(
                    "POST",
                    "/",
                    body="{}",
                    headers={
                        "X-Amz-Target": "DynamoDB_20120810.ListTables",
                        "Content-Type": "application/x-amz-json-1.0",
                        "Authorization": (
                            "AWS4-HMAC-SHA256 Credential=testing/20260101/"
                            f"{aws.region}/dynamodb/aws4_request, SignedHeaders=host, "
                            "Signature=0"
                        ),
                    },
                )
                response = connection.getresponse()
                assert json.loads(response.read()) == {"TableNames": [aws.table_name]}
                assert response.getheader("Connection", "").lower() != "close"
                assert not response.will_close
        finally:
            connection.close()


def test_cached_expression_parses_still_refuse_conditions_and_apply_each_requests_values():
    """moto in its process parses each expression string once (``local.moto_process``): the same
    strings sent again with other values must still be evaluated against those values, a failed
    condition still refused, and an expression with an error refused every time, not once."""
    with EmbeddedAws() as aws:
        dynamodb = aws.dynamodb()
        key = {schema.PARTITION_KEY: {"S": "k"}, schema.SORT_KEY: {"S": "k"}}
        dynamodb.put_item(TableName=aws.table_name, Item={**key, "n": {"N": "0"}})

        def bump(by: int, below: int) -> bool:
            try:
                dynamodb.update_item(
                    TableName=aws.table_name,
                    Key=key,
                    UpdateExpression="SET #n = if_not_exists(#n, :zero) + :by REMOVE #gone",
                    ConditionExpression="attribute_exists(#pk) AND #n < :below",
                    ExpressionAttributeNames={
                        "#n": "n",
                        "#pk": schema.PARTITION_KEY,
                        "#gone": "gone",
                    },
                    ExpressionAttributeValues={
                        ":zero": {"N": "0"},
                        ":by": {"N": str(by)},
                        ":below": {"N": str(below)},
                    },
                )
            except dynamodb.exceptions.ConditionalCheckFailedException:
                return False
            return True

        assert [bump(1, 10), bump(5, 10), bump(7, 10), bump(1, 6), bump(100, 7)] == [
            True,
            True,
            True,
            False,
            False,
        ]
        item = dynamodb.get_item(TableName=aws.table_name, Key=key, ConsistentRead=True)["Item"]
        assert item["n"] == {"N": "13"}
        for _ in range(2):
            with pytest.raises(ClientError, match='The "SET" section can only be used once'):
                dynamodb.update_item(
                    TableName=aws.table_name,
                    Key=key,
                    UpdateExpression="SET n = :v SET m = :v",
                    ExpressionAttributeValues={":v": {"N": "1"}},
                )
            with pytest.raises(ClientError, match="ValidationException"):
                dynamodb.update_item(
                    TableName=aws.table_name,
                    Key=key,
                    UpdateExpression="SET n = = :v",
                    ExpressionAttributeValues={":v": {"N": "1"}},
                )
            with pytest.raises(ClientError, match="ValidationException"):
                dynamodb.update_item(
                    TableName=aws.table_name,
                    Key=key,
                    UpdateExpression="SET n = :v",
                    ConditionExpression="n < :v",
                    ExpressionAttributeValues={":v": {"N": "1"}, ":unused": {"N": "2"}},
                )


def test_the_dead_letter_queue_is_named_after_its_queue_as_the_stack_names_it() -> None:
    """One convention for local mode, the tests and the benchmarks: ``<name>-dlq.fifo``, the
    name ``components.chat_queue`` gives it (before its physical-name suffix)."""
    assert dead_letter_queue_name("rag-websocket-local-chat.fifo") == (
        "rag-websocket-local-chat-dlq.fifo"
    )
