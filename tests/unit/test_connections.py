from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from runtime import schema
from runtime.config import StoreConfig
from runtime.connections import (
    ConnectionLimitReached,
    ConnectionStore,
    GoneRow,
    SupersededConnection,
    TouchStatus,
    expiry,
)
from tests.conftest import MockedAws

T0 = 1_800_000_000.0  # epoch seconds, on a window boundary (divisible by 60)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_store(aws: MockedAws, clock: Clock, **overrides: int) -> ConnectionStore:
    return ConnectionStore(StoreConfig(aws.table_name, **overrides), clock=clock)


def raw_item(aws: MockedAws, connection_id: str) -> dict[str, Any] | None:
    return raw(aws, schema.connection_key(connection_id))


def raw(aws: MockedAws, key: str) -> dict[str, Any] | None:
    item = (
        boto3.client("dynamodb")
        .get_item(TableName=aws.table_name, Key={"PK": {"S": key}, "SK": {"S": key}})
        .get("Item")
    )
    return dict(item) if item else None


def user_slots(aws: MockedAws, user_id: str) -> set[str]:
    item = raw(aws, schema.user_key(user_id)) or {}
    return set(item.get(schema.ATTR_CONNECTION_IDS, {}).get("SS", []))


def index_items(aws: MockedAws, user_id: str) -> list[dict[str, Any]]:
    """The userId-index items of a user as DynamoDB holds them (no filter)."""
    return list(
        boto3.client("dynamodb").query(
            TableName=aws.table_name,
            IndexName=schema.USER_INDEX_NAME,
            KeyConditionExpression="userId = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
        )["Items"]
    )


def test_add_writes_the_design_schema(aws: MockedAws) -> None:
    clock = Clock()
    store = make_store(aws, clock)
    store.add("abc=+/", "alice", connected_at_ms=int(T0 * 1000))
    item = raw_item(aws, "abc=+/")
    assert item == {
        "PK": {"S": "CONNECTION#abc=+/"},
        "SK": {"S": "CONNECTION#abc=+/"},
        "connectionId": {"S": "abc=+/"},
        "userId": {"S": "alice"},
        "connectedAt": {"N": str(int(T0 * 1000))},
        "lastSeenAt": {"N": str(int(T0 * 1000))},
        "ttl": {"N": str(int(T0) + 600)},
    }
    # The user's item counts the connection; without a userId it stays out of userId-index.
    assert raw(aws, "USER#alice") == {
        "PK": {"S": "USER#alice"},
        "SK": {"S": "USER#alice"},
        "connectionIds": {"SS": ["abc=+/"]},
        "ttl": {"N": str(int(T0) + schema.MAX_CONNECTION_SECONDS)},
    }
    assert [item["connectionId"] for item in index_items(aws, "alice")] == [{"S": "abc=+/"}]


def test_ttl_slides_but_never_past_two_hours() -> None:
    connected_ms = int(T0 * 1000)
    assert expiry(T0, connected_ms, 600) == int(T0) + 600
    assert expiry(T0 + 7000, connected_ms, 600) == int(T0) + schema.MAX_CONNECTION_SECONDS


def test_touch_slides_the_ttl(aws: MockedAws) -> None:
    clock = Clock()
    store = make_store(aws, clock)
    store.add("c1", "alice", int(T0 * 1000))
    clock.now = T0 + 300
    assert store.touch("c1", int(T0 * 1000)).status is TouchStatus.OK
    item = raw_item(aws, "c1")
    assert item is not None
    assert item["ttl"] == {"N": str(int(T0) + 900)}
    assert item["lastSeenAt"] == {"N": str(int((T0 + 300) * 1000))}


def test_touch_unknown_and_expired_connections(aws: MockedAws) -> None:
    clock = Clock()
    store = make_store(aws, clock)
    assert store.touch("missing", int(T0 * 1000)).status is TouchStatus.UNKNOWN
    store.add("c1", "alice", int(T0 * 1000))
    clock.now = T0 + 601  # the row is past its ttl but DynamoDB has not deleted it yet
    assert store.touch("c1", int(T0 * 1000)).status is TouchStatus.UNKNOWN
    # ...and the rejected touch did not resurrect it
    assert raw_item(aws, "c1")["ttl"] == {"N": str(int(T0) + 600)}  # type: ignore[index]


def test_rate_limit_in_one_update_with_retry_after(aws: MockedAws) -> None:
    clock = Clock(T0 + 15)
    store = make_store(aws, clock, messages_per_minute=3)
    store.add("c1", "alice", int(T0 * 1000))
    results = [store.touch("c1", int(T0 * 1000)) for _ in range(4)]
    assert [r.status for r in results] == [TouchStatus.OK] * 3 + [TouchStatus.RATE_LIMITED]
    assert results[-1].retry_after_ms == 45_000
    # the next window starts from zero without any read, and the old counter is dropped
    clock.now = T0 + 61
    assert store.touch("c1", int(T0 * 1000)).status is TouchStatus.OK
    item = raw_item(aws, "c1")
    assert item is not None
    assert item[f"rate_{int(T0) + 60}"] == {"N": "1"}
    assert f"rate_{int(T0)}" not in item


def test_rate_limit_zero_means_unlimited(aws: MockedAws) -> None:
    store = make_store(aws, Clock(), messages_per_minute=0)
    store.add("c1", "alice", int(T0 * 1000))
    assert all(store.touch("c1", int(T0 * 1000)).status is TouchStatus.OK for _ in range(100))


def test_list_and_count_filter_expired_rows_and_paginate(aws: MockedAws) -> None:
    clock = Clock()
    store = make_store(aws, clock, max_connections_per_user=0)
    for n in range(30):
        store.add(f"conn-{n}", "alice", int(T0 * 1000))
    store.add("bob-1", "bob", int(T0 * 1000))
    clock.now = T0 + 100
    store.add("late", "alice", int(clock.now * 1000))
    assert store.count_for_user("alice") == 31
    assert len(store.connection_ids_for_user("alice")) == 31
    clock.now = T0 + 650  # the first 30 have expired; only "late" is live
    assert [c.connection_id for c in store.list_for_user("alice")] == ["late"]
    assert store.connection_ids_for_user("alice") == ["late"]
    assert store.count_for_user("alice") == 1
    assert store.count_for_user("nobody") == 0


def test_list_for_user_uses_query_never_scan(aws: MockedAws) -> None:
    store = make_store(aws, Clock())
    calls: list[str] = []
    store.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    store.list_for_user("alice")
    assert calls == ["Query"]


def test_remove_and_get(aws: MockedAws) -> None:
    clock = Clock()
    store = make_store(aws, clock)
    store.add("c1", "alice", int(T0 * 1000))
    got = store.get("c1")
    assert got is not None
    assert got.user_id == "alice"
    store.remove("c1")
    store.remove("c1")  # idempotent
    assert store.get("c1") is None
    assert raw_item(aws, "c1") is None


@pytest.mark.parametrize("connection_id", ["BFHPhfCWIAMCKlQ=", "a+b/c==", "plain"])
def test_aws_shaped_connection_ids(aws: MockedAws, connection_id: str) -> None:
    store = make_store(aws, Clock())
    store.add(connection_id, "alice", int(T0 * 1000))
    assert [c.connection_id for c in store.list_for_user("alice")] == [connection_id]


# --- rows stay small, and a touch rewrites the index at most once a TTL step -----------------


def test_old_rate_counters_are_removed_after_any_idle_gap(aws: MockedAws) -> None:
    clock = Clock(T0 + 15)
    store = make_store(aws, clock, messages_per_minute=5)
    store.add("c1", "alice", int(T0 * 1000))
    for gap in (0, 60, 300, 120, 540, 60):  # idle gaps of up to the idle timeout
        clock.now += gap
        assert store.touch("c1", int(T0 * 1000)).status is TouchStatus.OK
        item = raw_item(aws, "c1")
        assert item is not None
        counters = sorted(name for name in item if name.startswith(schema.RATE_COUNTER_PREFIX))
        window = int(clock.now) - int(clock.now) % 60
        assert counters == [f"rate_{window}"]


def test_ttl_moves_in_steps_never_below_the_idle_deadline() -> None:
    connected_ms = int(T0 * 1000)
    values = set()
    for tenth in range(0, 1200):
        now = T0 + tenth / 10
        ttl = expiry(now, connected_ms, 600)
        assert ttl >= now + 600  # never expired while API Gateway may still hold the socket
        assert ttl - (now + 600) <= schema.TTL_STEP_SECONDS
        values.add(ttl)
    assert len(values) == 3  # 120 s of touches, one new ttl per 60 s step
    assert expiry(T0 + 0.5, connected_ms, 1) == int(T0) + 2  # a short idle timeout: its own step


def test_a_touch_within_a_ttl_step_leaves_the_index_item_unchanged(aws: MockedAws) -> None:
    """AWS bills a GSI write for a table update only when it changes an indexed key or the
    value of a projected attribute (DynamoDB Developer Guide, "Provisioned throughput
    considerations for global secondary indexes", Write capacity units:
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html). With lastSeenAt
    and the rate counters out of the projection and ttl moving in steps, a touch within a step
    leaves the index item as it was: one write unit, not two."""
    clock = Clock(T0 + 5)
    store = make_store(aws, clock)
    store.add("c1", "alice", int(T0 * 1000))
    before = index_items(aws, "alice")
    clock.now = T0 + 30
    assert store.touch("c1", int(T0 * 1000)).status is TouchStatus.OK
    assert index_items(aws, "alice") == before
    row = raw_item(aws, "c1")
    assert row is not None
    assert row["lastSeenAt"] == {"N": str(int((T0 + 30) * 1000))}
    clock.now = T0 + 61  # the next step: the ttl, and so the index item, moves
    assert store.touch("c1", int(T0 * 1000)).status is TouchStatus.OK
    [after] = index_items(aws, "alice")
    assert after["ttl"] == {"N": str(int(T0) + 720)}
    assert set(after) == {"PK", "SK", "userId", *schema.USER_INDEX_PROJECTED_ATTRIBUTES}


# --- the per-user connection limit is exact ------------------------------------------------


@pytest.mark.usefixtures("serializable_transactions")
def test_eight_simultaneous_connects_against_a_limit_of_three(aws: MockedAws) -> None:
    store = make_store(aws, Clock(), max_connections_per_user=3)
    barrier = threading.Barrier(8)
    outcomes: dict[str, str] = {}

    def connect(connection_id: str) -> None:
        barrier.wait()
        try:
            store.add(connection_id, "alice", int(T0 * 1000))
            outcomes[connection_id] = "connected"
        except ConnectionLimitReached:
            outcomes[connection_id] = "refused"

    threads = [threading.Thread(target=connect, args=(f"c{n}=",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connected = {cid for cid, outcome in outcomes.items() if outcome == "connected"}
    assert len(connected) == 3
    assert len(outcomes) == 8
    assert {c.connection_id for c in store.list_for_user("alice")} == connected
    assert user_slots(aws, "alice") == connected


def test_remove_releases_the_slot_and_an_unknown_row_is_not_an_error(aws: MockedAws) -> None:
    store = make_store(aws, Clock(), max_connections_per_user=2)
    store.add("a", "alice", int(T0 * 1000))
    store.add("b", "alice", int(T0 * 1000))
    with pytest.raises(ConnectionLimitReached):
        store.add("c", "alice", int(T0 * 1000))
    store.remove("a")
    store.remove("a")
    store.add("c", "alice", int(T0 * 1000))
    assert user_slots(aws, "alice") == {"b", "c"}
    store.remove("b")
    store.remove("c")
    assert raw(aws, "USER#alice") is None
    assert raw(aws, "USER#nobody") is None


def test_the_limit_heals_when_rows_vanish_without_a_disconnect(aws: MockedAws) -> None:
    clock = Clock()
    store = make_store(aws, clock, max_connections_per_user=2)
    store.add("a", "alice", int(T0 * 1000))
    store.add("b", "alice", int(T0 * 1000))
    # DynamoDB's TTL deletes b's row; its $disconnect never ran.
    key = {"S": schema.connection_key("b")}
    boto3.client("dynamodb").delete_item(TableName=aws.table_name, Key={"PK": key, "SK": key})
    store.add("c", "alice", int(T0 * 1000))
    assert user_slots(aws, "alice") == {"a", "c"}
    with pytest.raises(ConnectionLimitReached):
        store.add("d", "alice", int(T0 * 1000))
    # Past their ttl, rows count as gone even before DynamoDB deletes them.
    clock.now = T0 + 601
    store.add("e", "alice", int(clock.now * 1000))
    assert user_slots(aws, "alice") == {"e"}


def test_a_retried_connect_takes_no_second_slot(aws: MockedAws) -> None:
    store = make_store(aws, Clock(), max_connections_per_user=1)
    store.add("a", "alice", int(T0 * 1000))
    store.add("a", "alice", int(T0 * 1000))
    assert user_slots(aws, "alice") == {"a"}


def test_a_conflicting_transaction_is_tried_again(aws: MockedAws) -> None:
    """DynamoDB cancels a TransactWriteItems that conflicts with another one on the same item,
    with the reason ``TransactionConflict`` at that item's position
    (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html)."""
    store = make_store(aws, Clock(), max_connections_per_user=3)
    body = json.dumps(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for specific "
            "reasons [None, TransactionConflict]",
            "CancellationReasons": [
                {"Code": "None"},
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
            ],
        }
    ).encode()
    answered: list[int] = []

    class Body:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    def conflict(request: Any, **_: Any) -> AWSResponse | None:
        if answered:
            return None
        answered.append(1)
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "r1"}
        return AWSResponse(request.url, 400, headers, Body())

    store.client.meta.events.register_first(
        "before-send.dynamodb.TransactWriteItems", conflict, unique_id="conflict"
    )
    store.add("a", "alice", int(T0 * 1000))
    assert answered == [1]
    assert user_slots(aws, "alice") == {"a"}


# --- a 410 is staleness only once the connection is established ------------------------------


def test_remove_gone_keeps_a_connection_younger_than_the_integration_timeout(
    aws: MockedAws,
) -> None:
    """API Gateway answers 410 to a post while the target's $connect is still running."""
    clock = Clock()
    store = make_store(aws, clock, max_connections_per_user=2)
    store.add("young", "alice", int(T0 * 1000))
    clock.now = T0 + schema.INTEGRATION_TIMEOUT_SECONDS - 1
    assert store.remove_gone("young") is GoneRow.CONNECTING
    assert store.get("young") is not None
    assert user_slots(aws, "alice") == {"young"}
    clock.now = T0 + schema.INTEGRATION_TIMEOUT_SECONDS + 1
    assert store.remove_gone("young") is GoneRow.REMOVED
    assert raw_item(aws, "young") is None
    assert raw(aws, "USER#alice") is None  # its last connection gone, the user's item goes too
    assert store.remove_gone("young") is GoneRow.ABSENT  # nothing left to remove


def test_the_connecting_rule_has_one_boundary_for_every_caller(aws: MockedAws) -> None:
    """``schema.connecting_cutoff_ms`` is the one rule: accepted exactly the integration
    timeout ago still counts as connecting, a millisecond earlier does not. ``$connect``'s
    retry of a replaced connection reads the same function."""
    at_ms = int(T0 * 1000) + schema.INTEGRATION_TIMEOUT_SECONDS * 1000
    assert schema.connecting_cutoff_ms(at_ms) == int(T0 * 1000)
    clock = Clock()
    clock.now = at_ms / 1000
    store = make_store(aws, clock, max_connections_per_user=3)
    store.add("at-the-cutoff", "alice", int(T0 * 1000))
    store.add("just-before", "alice", int(T0 * 1000) - 1)
    assert store.remove_gone("at-the-cutoff") is GoneRow.CONNECTING
    assert store.remove_gone("just-before") is GoneRow.REMOVED


def test_remove_gone_never_removes_a_row_written_since(aws: MockedAws) -> None:
    clock = Clock(T0 + 100)
    store = make_store(aws, clock)
    store.add("c1", "alice", int(T0 * 1000))
    # The row is replaced by a fresh one (the same id connecting again) before the 410 lands.
    store.add("c1", "alice", int(clock.now * 1000))
    assert store.remove_gone("c1") is GoneRow.CONNECTING
    assert store.get("c1") is not None


def test_an_instance_s_new_connection_names_the_one_it_replaces(aws: MockedAws) -> None:
    clock = Clock()
    store = make_store(aws, clock)
    t0 = int(T0 * 1000)
    assert store.replace_instance_connection("alice", "tab-1", "A=", t0) is None
    clock.now += 30
    assert store.replace_instance_connection("alice", "tab-1", "B=", t0 + 30_000) == "A="
    # API Gateway retrying $connect of B: nothing to close.
    assert store.replace_instance_connection("alice", "tab-1", "B=", t0 + 30_000) is None
    # Another instance, and the same instance id of another user, are separate.
    assert store.replace_instance_connection("alice", "tab-2", "C=", t0) is None
    assert store.replace_instance_connection("bob", "tab-1", "D=", t0) is None
    item = raw(aws, schema.instance_key("alice", "tab-1"))
    assert item is not None
    assert item[schema.ATTR_CONNECTION_ID] == {"S": "B="}
    assert item[schema.TTL_ATTRIBUTE] == {"N": str(int(T0) + 30 + schema.MAX_CONNECTION_SECONDS)}
    assert schema.ATTR_USER_ID not in item  # never in the userId-index
    assert store.list_for_user("alice") == []


def test_a_connection_accepted_before_the_instance_s_latest_is_superseded(aws: MockedAws) -> None:
    """A handshake the client gave up on (its ``$connect`` slow) may finish after the one the
    client opened next: API Gateway's ``connectedAt`` orders them, not the finishing order."""
    store = make_store(aws, Clock())
    t0 = int(T0 * 1000)
    assert store.replace_instance_connection("alice", "tab-1", "B=", t0 + 5_000) is None
    with pytest.raises(SupersededConnection):
        store.replace_instance_connection("alice", "tab-1", "A=", t0)
    item = raw(aws, schema.instance_key("alice", "tab-1"))
    assert item is not None
    assert item[schema.ATTR_CONNECTION_ID] == {"S": "B="}


def test_an_instance_s_connection_past_the_two_hour_limit_is_not_named(aws: MockedAws) -> None:
    """API Gateway closes every connection after 2 hours: an older mapping (DynamoDB removes
    expired items late) names nothing to close."""
    clock = Clock()
    store = make_store(aws, clock)
    t0 = int(T0 * 1000)
    store.replace_instance_connection("alice", "tab-1", "A=", t0)
    clock.now += schema.MAX_CONNECTION_SECONDS
    b_at = int(clock.now * 1000)
    assert store.replace_instance_connection("alice", "tab-1", "B=", b_at) is None
    clock.now += 1
    assert store.replace_instance_connection("alice", "tab-1", "C=", b_at + 1000) == "B="
