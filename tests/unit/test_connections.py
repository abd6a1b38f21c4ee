from __future__ import annotations

import boto3
import pytest

from runtime import schema
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore, TouchStatus, expiry
from tests.conftest import AwsResources

T0 = 1_800_000_000.0  # epoch seconds, on a window boundary (divisible by 60)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_store(aws: AwsResources, clock: Clock, **overrides: int) -> ConnectionStore:
    return ConnectionStore(StoreConfig(aws.table_name, **overrides), clock=clock)


def raw_item(aws: AwsResources, connection_id: str) -> dict[str, object] | None:
    key = schema.connection_key(connection_id)
    item = (
        boto3.client("dynamodb")
        .get_item(TableName=aws.table_name, Key={"PK": {"S": key}, "SK": {"S": key}})
        .get("Item")
    )
    return dict(item) if item else None


def test_add_writes_the_design_schema(aws: AwsResources) -> None:
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


def test_ttl_slides_but_never_past_two_hours() -> None:
    connected_ms = int(T0 * 1000)
    assert expiry(T0, connected_ms, 600) == int(T0) + 600
    assert expiry(T0 + 7000, connected_ms, 600) == int(T0) + schema.MAX_CONNECTION_SECONDS


def test_touch_slides_the_ttl(aws: AwsResources) -> None:
    clock = Clock()
    store = make_store(aws, clock)
    store.add("c1", "alice", int(T0 * 1000))
    clock.now = T0 + 300
    assert store.touch("c1", int(T0 * 1000)).status is TouchStatus.OK
    item = raw_item(aws, "c1")
    assert item is not None
    assert item["ttl"] == {"N": str(int(T0) + 900)}
    assert item["lastSeenAt"] == {"N": str(int((T0 + 300) * 1000))}


def test_touch_unknown_and_expired_connections(aws: AwsResources) -> None:
    clock = Clock()
    store = make_store(aws, clock)
    assert store.touch("missing", int(T0 * 1000)).status is TouchStatus.UNKNOWN
    store.add("c1", "alice", int(T0 * 1000))
    clock.now = T0 + 601  # the row is past its ttl but DynamoDB has not deleted it yet
    assert store.touch("c1", int(T0 * 1000)).status is TouchStatus.UNKNOWN
    # ...and the rejected touch did not resurrect it
    assert raw_item(aws, "c1")["ttl"] == {"N": str(int(T0) + 600)}  # type: ignore[index]


def test_rate_limit_in_one_update_with_retry_after(aws: AwsResources) -> None:
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


def test_rate_limit_zero_means_unlimited(aws: AwsResources) -> None:
    store = make_store(aws, Clock(), messages_per_minute=0)
    store.add("c1", "alice", int(T0 * 1000))
    assert all(store.touch("c1", int(T0 * 1000)).status is TouchStatus.OK for _ in range(100))


def test_list_and_count_filter_expired_rows_and_paginate(aws: AwsResources) -> None:
    clock = Clock()
    store = make_store(aws, clock)
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


def test_list_for_user_uses_query_never_scan(aws: AwsResources) -> None:
    store = make_store(aws, Clock())
    calls: list[str] = []
    store.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    store.list_for_user("alice")
    assert calls == ["Query"]


def test_remove_and_get(aws: AwsResources) -> None:
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
def test_aws_shaped_connection_ids(aws: AwsResources, connection_id: str) -> None:
    store = make_store(aws, Clock())
    store.add(connection_id, "alice", int(T0 * 1000))
    assert [c.connection_id for c in store.list_for_user("alice")] == [connection_id]
