"""The cost model's DynamoDB write units, from the items each event writes (no timings).

Units as DynamoDB bills them
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html):
"one write request unit represents one write for an item up to 1 KB", "transactional write
requests require 2 write request units"; a table write that adds, deletes or changes a projected
attribute also writes the index item
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations.Writes).
The call counts are those ``benchmarks/aws_calls.py`` measures against the handlers.
"""

from __future__ import annotations

import pytest

from benchmarks.pricing import (
    DYNAMODB_WRITE_REQUEST_UNIT_USD,
    PER_MILLION,
    Assumptions,
    CallCounts,
    cost_per_million_chat_messages,
    write_units_per_event,
)
from runtime import schema

MEASURED = CallCounts(
    connect={"dynamodb.PutItem": 1, "dynamodb.TransactWriteItems": 1},
    disconnect={"dynamodb.DeleteItem": 2, "dynamodb.UpdateItem": 1},
    chat_message={"dynamodb.UpdateItem": 1, "sqs.SendMessage": 1},
)


def test_connect_is_the_instance_item_and_a_transaction_of_two_items_and_an_index_item() -> None:
    units = write_units_per_event(MEASURED, Assumptions(lambda_memory_mb=256))
    # The client instance's item (no userId: no index item), then the transaction.
    assert units["connect"] == 1 + 2 * 2 + 1


def test_disconnect_deletes_the_row_and_its_index_item_and_empties_the_users_set() -> None:
    units = write_units_per_event(MEASURED, Assumptions(lambda_memory_mb=256))
    # DeleteItem of the row (2 with its index item), UpdateItem of the set, DeleteItem of it.
    assert units["disconnect"] == 2 + 1 + 1
    other_connections_left = Assumptions(
        lambda_memory_mb=256, disconnects_closing_the_users_last_connection=0.0
    )
    assert write_units_per_event(MEASURED, other_connections_left)["disconnect"] == 3


def test_a_touch_writes_the_index_item_at_most_once_a_ttl_step() -> None:
    # One message a minute on 60 s steps: every touch may move ttl into the next step.
    steady = Assumptions(lambda_memory_mb=256)
    assert steady.ttl_step_seconds == schema.TTL_STEP_SECONDS
    assert steady.touches_moving_ttl == 1.0
    assert write_units_per_event(MEASURED, steady)["chat_message"] == 2
    # Ten messages in two minutes: at most two of them move ttl, the others cost one unit.
    chatty = Assumptions(lambda_memory_mb=256, connection_minutes_per_chat_message=0.2)
    assert chatty.touches_moving_ttl == pytest.approx(0.2)
    assert write_units_per_event(MEASURED, chatty)["chat_message"] == pytest.approx(1.2)


def test_the_bill_prices_the_modelled_units_and_states_the_assumptions() -> None:
    assumptions = Assumptions(lambda_memory_mb=256)
    cost = cost_per_million_chat_messages(MEASURED, assumptions)
    per_message = 2 + (6 + 4) / 10
    assert cost["per_chat_message"]["dynamodb_write_units"] == pytest.approx(per_message)
    assert cost["line_items_usd"]["dynamodb_writes"] == pytest.approx(
        per_message * DYNAMODB_WRITE_REQUEST_UNIT_USD * PER_MILLION, abs=1e-4
    )
    assert cost["dynamodb_write_units_per_event"] == {
        "connect": 6,
        "chat_message": 2,
        "disconnect": 4,
    }
    stated = cost["assumptions"]
    assert stated["transactional_item_write_units"] == 2
    assert stated["index_item_write_units"] == 1
    assert stated["ttl_step_seconds"] == schema.TTL_STEP_SECONDS
    assert "write_units_per_item_write" not in stated


def test_a_write_call_the_model_does_not_know_is_refused_not_priced_at_nothing() -> None:
    counted_query_then_put = CallCounts(
        connect={"dynamodb.Query": 1, "dynamodb.PutItem": 1},
        disconnect=MEASURED.disconnect,
        chat_message=MEASURED.chat_message,
    )
    with pytest.raises(ValueError, match=r"connect made the write calls .*PutItem.*event_writes"):
        write_units_per_event(counted_query_then_put, Assumptions(lambda_memory_mb=256))
