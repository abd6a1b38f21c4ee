"""ConnectionStore: every DynamoDB access to the connections table (DESIGN §2).

Rows expire through the ``ttl`` attribute, which DynamoDB applies late (and moto never), so
every read here filters ``ttl > now``.

One module of about 540 lines on purpose: it is the only code that knows the table's items
(rows, the per-user set, rate counters, a client instance's latest connection and what replaced
a closed one), so a change to their shape is read and made here.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from runtime import aws, schema
from runtime.aws import UNBOUNDED, Deadline
from runtime.config import StoreConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Clock = Callable[[], float]

_CONDITION_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CANCELED = "TransactionCanceledException"
# Cancellation reasons of TransactWriteItems, one per item in request order.
_REASON_CONDITION = "ConditionalCheckFailed"
_REASON_CONFLICT = "TransactionConflict"
# $connect's transaction is cancelled when another one on the same user item runs at the same
# moment; it is tried again this many times in all, a few milliseconds apart.
_CONNECT_TRANSACTION_TRIES = 4
_CONFLICT_PAUSE_SECONDS = (0.005, 0.05)
_BATCH_GET_MAX_KEYS = 100


class TouchStatus(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    UNKNOWN = "unknown"


class GoneRow(StrEnum):
    """What ``remove_gone`` did with the row of a connection the management API answered 410
    for."""

    REMOVED = "removed"
    CONNECTING = "connecting"  # younger than the integration timeout: kept
    ABSENT = "absent"  # removed before ($disconnect, or an earlier 410)


@dataclass(frozen=True)
class TouchResult:
    status: TouchStatus
    retry_after_ms: int = 0


@dataclass(frozen=True)
class Connection:
    connection_id: str
    user_id: str
    connected_at_ms: int
    ttl: int


class SupersededConnection(Exception):
    """The client instance opened a newer connection than this one; nothing was written."""

    def __init__(self) -> None:
        super().__init__("this client instance has opened a newer connection since")


class ConnectionLimitReached(Exception):
    """The user already holds ``max_connections_per_user`` live connections; nothing was written."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the user already has {limit} connections open")
        self.limit = limit


def expiry(now_seconds: float, connected_at_ms: int, idle_timeout_seconds: int) -> int:
    """The sliding TTL: ``min(lastSeen + idleTimeout, connectedAt + 2 h)`` in epoch seconds.

    The idle deadline is rounded UP to a whole ``TTL_STEP_SECONDS`` (or a whole idle timeout,
    when that is shorter), so a row is never expired while API Gateway still holds the socket
    of a client that sends a message at least once per idle timeout (both clients ``ping``
    every 300 s), and a touch changes ``ttl`` — and so rewrites the userId-index item — at most
    once a step. Only a client's message slides it: frames posted to a socket keep API
    Gateway's idle timer from closing it too, but reach no handler, so a client that only
    listens and never sends outlives its row, and broadcasts stop reaching it.
    """
    step = min(schema.TTL_STEP_SECONDS, idle_timeout_seconds)
    idle_deadline = math.ceil((now_seconds + idle_timeout_seconds) / step) * step
    hard_deadline = connected_at_ms // 1000 + schema.MAX_CONNECTION_SECONDS
    return min(idle_deadline, hard_deadline)


def _connection(item: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=item[schema.ATTR_CONNECTION_ID]["S"],
        user_id=item[schema.ATTR_USER_ID]["S"],
        connected_at_ms=int(item[schema.ATTR_CONNECTED_AT]["N"]),
        ttl=int(item[schema.TTL_ATTRIBUTE]["N"]),
    )


def _key(value: str) -> dict[str, Any]:
    return {schema.PARTITION_KEY: {"S": value}, schema.SORT_KEY: {"S": value}}


class ConnectionStore:
    """Adds, removes, touches and lists connections; ``clock`` returns epoch seconds.

    Besides one row per connection, the table holds one item per user with the ids of its
    connections (``schema.user_key``): ``add`` checks the per-user limit against it and writes
    both in one transaction, ``remove`` and ``remove_gone`` take the id out again, and ids whose
    row vanished without either (the TTL) are dropped when the limit is reached.
    """

    def __init__(
        self,
        config: StoreConfig,
        *,
        client: DynamoDBClient | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.config = config
        self._client = client
        self._clock = clock

    @property
    def client(self) -> DynamoDBClient:
        return self._client if self._client is not None else aws.dynamodb()

    def _key(self, connection_id: str) -> dict[str, Any]:
        return _key(schema.connection_key(connection_id))

    def add(
        self,
        connection_id: str,
        user_id: str,
        connected_at_ms: int | None = None,
        *,
        closed: Collection[str] = (),
        deadline: Deadline = UNBOUNDED,
    ) -> Connection:
        """Store a new connection's row (``$connect``) and count it against the user's limit.

        One ``TransactWriteItems`` in the common case: the row, and the connection id added to
        the user's set on condition that the set holds fewer than the limit. At the limit, ids
        whose rows are gone, and the ``closed`` ones (connections the caller has just closed,
        whose ``$disconnect`` API Gateway runs later, best effort), are dropped and the
        transaction tried once more; if the user is
        still at the limit, ``ConnectionLimitReached``.
        """
        now = self._clock()
        now_ms = int(now * 1000)
        connected_at_ms = now_ms if connected_at_ms is None else connected_at_ms
        ttl = expiry(now, connected_at_ms, self.config.idle_timeout_seconds)
        row = {
            **self._key(connection_id),
            schema.ATTR_CONNECTION_ID: {"S": connection_id},
            schema.ATTR_USER_ID: {"S": user_id},
            schema.ATTR_CONNECTED_AT: {"N": str(connected_at_ms)},
            schema.ATTR_LAST_SEEN_AT: {"N": str(now_ms)},
            schema.TTL_ATTRIBUTE: {"N": str(ttl)},
        }
        connection = Connection(connection_id, user_id, connected_at_ms, ttl)
        limit = self.config.max_connections_per_user
        if not limit:
            deadline.check()
            self.client.put_item(TableName=self.config.table_name, Item=row)
            return connection
        healed = False
        conflict: ClientError | None = None
        for _ in range(_CONNECT_TRANSACTION_TRIES):
            deadline.check()
            try:
                self._put_counted(row, connection_id, user_id, limit, int(now))
                return connection
            except ClientError as exc:
                if aws.error_code(exc) != _TRANSACTION_CANCELED:
                    raise
                reasons: list[dict[str, Any]] = exc.response.get(  # type: ignore[assignment]
                    "CancellationReasons", []
                )
                codes = [reason.get("Code") for reason in reasons]
                if _REASON_CONFLICT in codes:
                    conflict = exc
                    # Jitter only spreads the retries; it needs no cryptographic randomness.
                    time.sleep(random.uniform(*_CONFLICT_PAUSE_SECONDS))  # noqa: S311
                    continue
                if codes[1:2] != [_REASON_CONDITION]:
                    raise
                if healed:
                    raise ConnectionLimitReached(limit) from None
                members = reasons[1].get("Item", {}).get(schema.ATTR_CONNECTION_IDS, {})
                deadline.check()
                ids = set(members.get("SS", []))
                dead = ids & set(closed) | self._dead(ids - set(closed))
                if not dead:
                    raise ConnectionLimitReached(limit) from None
                deadline.check()
                self._release(user_id, dead)
                healed = True
        assert conflict is not None  # the loop only runs out after conflicts
        raise conflict

    def _put_counted(
        self, row: dict[str, Any], connection_id: str, user_id: str, limit: int, now: int
    ) -> None:
        self.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.config.table_name, "Item": row}},
                {
                    "Update": {
                        "TableName": self.config.table_name,
                        "Key": _key(schema.user_key(user_id)),
                        # The item outlives every connection in it, then DynamoDB removes it.
                        "UpdateExpression": "ADD #ids :id SET #ttl = :ttl",
                        # An id already in the set is a retried $connect: it takes no new slot.
                        "ConditionExpression": (
                            "attribute_not_exists(#ids) OR size(#ids) < :limit "
                            "OR contains(#ids, :cid)"
                        ),
                        "ExpressionAttributeNames": {
                            "#ids": schema.ATTR_CONNECTION_IDS,
                            "#ttl": schema.TTL_ATTRIBUTE,
                        },
                        "ExpressionAttributeValues": {
                            ":id": {"SS": [connection_id]},
                            ":cid": {"S": connection_id},
                            ":limit": {"N": str(limit)},
                            ":ttl": {"N": str(now + schema.MAX_CONNECTION_SECONDS)},
                        },
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )

    def _dead(self, connection_ids: Collection[str]) -> set[str]:
        """The ids among ``connection_ids`` whose row is absent or expired (read consistently;
        an id whose row could not be read counts as live)."""
        ids = sorted(connection_ids)
        live: set[str] = set()
        unread: set[str] = set()
        now = int(self._clock())
        for start in range(0, len(ids), _BATCH_GET_MAX_KEYS):
            response = self.client.batch_get_item(
                RequestItems={
                    self.config.table_name: {
                        "Keys": [
                            self._key(cid) for cid in ids[start : start + _BATCH_GET_MAX_KEYS]
                        ],
                        "ConsistentRead": True,
                        "ProjectionExpression": "#cid, #ttl",
                        "ExpressionAttributeNames": {
                            "#cid": schema.ATTR_CONNECTION_ID,
                            "#ttl": schema.TTL_ATTRIBUTE,
                        },
                    }
                }
            )
            for item in response.get("Responses", {}).get(self.config.table_name, []):
                if int(item[schema.TTL_ATTRIBUTE]["N"]) > now:
                    live.add(item[schema.ATTR_CONNECTION_ID]["S"])
            unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys", {}))
            for key in unprocessed.get(self.config.table_name, {}).get("Keys", []):
                unread.add(key[schema.PARTITION_KEY]["S"].removeprefix(schema.CONNECTION_PREFIX))
        return set(ids) - live - unread

    def _release(self, user_id: str, connection_ids: Collection[str]) -> None:
        """Take ids out of the user's set, and delete the user's item once the set is empty
        (unless a connect has added an id since); nothing to do when the user has no item."""
        key = _key(schema.user_key(user_id))
        names = {"#ids": schema.ATTR_CONNECTION_IDS, "#pk": schema.PARTITION_KEY}
        try:
            response = self.client.update_item(
                TableName=self.config.table_name,
                Key=key,
                UpdateExpression="DELETE #ids :ids",
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":ids": {"SS": sorted(connection_ids)}},
                ReturnValues="ALL_NEW",
            )
            if schema.ATTR_CONNECTION_IDS in response.get("Attributes", {}):
                return
            # DynamoDB removes a set attribute that becomes empty.
            self.client.delete_item(
                TableName=self.config.table_name,
                Key=key,
                ConditionExpression="attribute_not_exists(#ids)",
                ExpressionAttributeNames={"#ids": schema.ATTR_CONNECTION_IDS},
            )
        except ClientError as exc:
            if aws.error_code(exc) != _CONDITION_FAILED:
                raise

    def remove(self, connection_id: str, *, deadline: Deadline = UNBOUNDED) -> None:
        """Delete a connection's row and release its slot (``$disconnect``); deleting a row
        that is not there is not an error. Without the time to release the slot, the row is
        still deleted: ``add`` drops ids whose row is gone when the user reaches the limit."""
        deadline.check()
        response = self.client.delete_item(
            TableName=self.config.table_name,
            Key=self._key(connection_id),
            ReturnValues="ALL_OLD",
        )
        old = response.get("Attributes") or {}
        if schema.ATTR_USER_ID in old and deadline.seconds_left() >= aws.call_worst_case_seconds():
            self._release(old[schema.ATTR_USER_ID]["S"], [connection_id])

    def remove_gone(self, connection_id: str) -> GoneRow:
        """Delete the row of a connection the management API answered 410 for, and release its
        slot — unless the connection is younger than the integration timeout: API Gateway also
        answers 410 while ``$connect`` runs. The delete is conditional, so it never removes a row
        written since."""
        cutoff_ms = schema.connecting_cutoff_ms(int(self._clock() * 1000))
        try:
            response = self.client.delete_item(
                TableName=self.config.table_name,
                Key=self._key(connection_id),
                ConditionExpression="#connectedAt < :cutoff",
                ExpressionAttributeNames={"#connectedAt": schema.ATTR_CONNECTED_AT},
                ExpressionAttributeValues={":cutoff": {"N": str(cutoff_ms)}},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if aws.error_code(exc) != _CONDITION_FAILED:
                raise
            return GoneRow.CONNECTING if exc.response.get("Item") else GoneRow.ABSENT
        old = response.get("Attributes") or {}
        if schema.ATTR_USER_ID in old:
            self._release(old[schema.ATTR_USER_ID]["S"], [connection_id])
        return GoneRow.REMOVED

    def replace_instance_connection(
        self, user_id: str, instance_id: str, connection_id: str, connected_at_ms: int
    ) -> str | None:
        """Record ``connection_id`` as the latest of a client instance's connections and return
        the one it replaces, if that may still be open: one conditional ``PutItem``.

        The latest is the one API Gateway accepted last (``connectedAt``), not the one whose
        ``$connect`` finishes last: a handshake the client gave up on while its ``$connect``
        was slow must not replace the connection the client opened after it. Such a late one
        raises ``SupersededConnection`` and changes nothing. None when the instance had no
        connection, when it is this one (API Gateway retried ``$connect``), or when the earlier
        one is past API Gateway's 2-hour limit.
        """
        now = int(self._clock())
        try:
            response = self.client.put_item(
                TableName=self.config.table_name,
                Item={
                    **_key(schema.instance_key(user_id, instance_id)),
                    schema.ATTR_CONNECTION_ID: {"S": connection_id},
                    schema.ATTR_CONNECTED_AT: {"N": str(connected_at_ms)},
                    # The mapping matters only while its connection can be open.
                    schema.TTL_ATTRIBUTE: {
                        "N": str(connected_at_ms // 1000 + schema.MAX_CONNECTION_SECONDS)
                    },
                },
                ConditionExpression="attribute_not_exists(#pk) OR #connectedAt <= :mine",
                ExpressionAttributeNames={
                    "#pk": schema.PARTITION_KEY,
                    "#connectedAt": schema.ATTR_CONNECTED_AT,
                },
                ExpressionAttributeValues={":mine": {"N": str(connected_at_ms)}},
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if aws.error_code(exc) != _CONDITION_FAILED:
                raise
            raise SupersededConnection from None
        old: dict[str, Any] = response.get("Attributes") or {}
        previous = old.get(schema.ATTR_CONNECTION_ID, {}).get("S")
        if previous is None or previous == connection_id:
            return None
        if int(old.get(schema.TTL_ATTRIBUTE, {}).get("N", "0")) <= now:
            return None
        return str(previous)

    def record_replacement(self, previous: str, connection_id: str) -> None:
        """Note that ``connection_id`` replaced ``previous``, the same client instance's
        connection that ``$connect`` is closing: one ``PutItem``, kept as long as either can
        be open."""
        self.client.put_item(
            TableName=self.config.table_name,
            Item={
                **_key(schema.replaced_key(previous)),
                schema.ATTR_CONNECTION_ID: {"S": connection_id},
                schema.TTL_ATTRIBUTE: {
                    "N": str(int(self._clock()) + schema.MAX_CONNECTION_SECONDS)
                },
            },
        )

    def replacement_of(self, connection_id: str) -> str | None:
        """The connection that replaced ``connection_id`` (``record_replacement``), if any."""
        response = self.client.get_item(
            TableName=self.config.table_name,
            Key=_key(schema.replaced_key(connection_id)),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item or int(item[schema.TTL_ATTRIBUTE]["N"]) <= int(self._clock()):
            return None
        return str(item[schema.ATTR_CONNECTION_ID]["S"])

    def get(self, connection_id: str) -> Connection | None:
        """The live row of a connection, or None when it is absent or expired."""
        response = self.client.get_item(
            TableName=self.config.table_name, Key=self._key(connection_id), ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return None
        connection = _connection(item)
        return connection if connection.ttl > int(self._clock()) else None

    def touch(self, connection_id: str, connected_at_ms: int) -> TouchResult:
        """Record activity in ONE conditional UpdateItem.

        The condition checks that the connection exists and has not expired, and that this
        window's counter is under the per-connection limit; the update slides the TTL, bumps the
        counter whose attribute name carries the window (so a new window needs no read) and
        drops every earlier window's counter a live row can still hold: the previous touch was
        at most the idle timeout plus one TTL step ago, or the row would have expired.
        """
        now = self._clock()
        now_seconds = int(now)
        limit = self.config.messages_per_minute
        window = now_seconds - now_seconds % schema.RATE_WINDOW_SECONDS
        names = {"#pk": schema.PARTITION_KEY, "#ttl": schema.TTL_ATTRIBUTE}
        values: dict[str, Any] = {
            ":now": {"N": str(now_seconds)},
            ":ttl": {"N": str(expiry(now, connected_at_ms, self.config.idle_timeout_seconds))},
            ":seen": {"N": str(int(now * 1000))},
        }
        update = f"SET #ttl = :ttl, {schema.ATTR_LAST_SEEN_AT} = :seen"
        condition = "attribute_exists(#pk) AND #ttl > :now"
        if limit > 0:
            names["#cur"] = f"{schema.RATE_COUNTER_PREFIX}{window}"
            values[":zero"] = {"N": "0"}
            values[":one"] = {"N": "1"}
            values[":limit"] = {"N": str(limit)}
            update += ", #cur = if_not_exists(#cur, :zero) + :one"
            stale = [f"#old{n}" for n in range(1, self._counter_windows() + 1)]
            for n, name in enumerate(stale, start=1):
                names[name] = (
                    f"{schema.RATE_COUNTER_PREFIX}{window - n * schema.RATE_WINDOW_SECONDS}"
                )
            update += " REMOVE " + ", ".join(stale)
            condition += " AND (attribute_not_exists(#cur) OR #cur < :limit)"
        try:
            self.client.update_item(
                TableName=self.config.table_name,
                Key=self._key(connection_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if aws.error_code(exc) != _CONDITION_FAILED:
                raise
            return self._why_rejected(exc, now, window)
        return TouchResult(TouchStatus.OK)

    def _counter_windows(self) -> int:
        """How many earlier windows a live row's last counter can be from."""
        reach = self.config.idle_timeout_seconds + schema.TTL_STEP_SECONDS
        return math.ceil(reach / schema.RATE_WINDOW_SECONDS) + 1

    def _why_rejected(self, exc: ClientError, now: float, window: int) -> TouchResult:
        item: dict[str, Any] = exc.response.get("Item") or {}  # type: ignore[assignment]
        if not item or int(item.get(schema.TTL_ATTRIBUTE, {}).get("N", "0")) <= int(now):
            return TouchResult(TouchStatus.UNKNOWN)
        window_end_ms = (window + schema.RATE_WINDOW_SECONDS) * 1000
        return TouchResult(TouchStatus.RATE_LIMITED, max(1, window_end_ms - int(now * 1000)))

    def _query_user(
        self, user_id: str, *, select_count: bool = False, ids_only: bool = False
    ) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        arguments: dict[str, Any] = {
            "TableName": self.config.table_name,
            "IndexName": schema.USER_INDEX_NAME,
            "KeyConditionExpression": "#uid = :uid",
            "FilterExpression": "#ttl > :now",
            "ExpressionAttributeNames": {
                "#uid": schema.USER_INDEX_HASH_KEY,
                "#ttl": schema.TTL_ATTRIBUTE,
            },
            "ExpressionAttributeValues": {
                ":uid": {"S": user_id},
                ":now": {"N": str(int(self._clock()))},
            },
        }
        if select_count:
            arguments["Select"] = "COUNT"
        elif ids_only:
            # The filter still sees every attribute; only the id comes back over the wire.
            arguments["ProjectionExpression"] = "#cid"
            arguments["ExpressionAttributeNames"]["#cid"] = schema.ATTR_CONNECTION_ID
        for page in paginator.paginate(**arguments):
            yield dict(page)

    def list_for_user(self, user_id: str) -> list[Connection]:
        """Every live connection of a user: a paginated Query on ``userId-index``, never Scan."""
        return [
            _connection(item)
            for page in self._query_user(user_id)
            for item in page.get("Items", [])
        ]

    def connection_ids_for_user(self, user_id: str) -> list[str]:
        """The ids of a user's live connections: ``list_for_user`` fetching only the id, which
        is all a broadcast needs (half the bytes to read and parse per connection)."""
        return [
            item[schema.ATTR_CONNECTION_ID]["S"]
            for page in self._query_user(user_id, ids_only=True)
            for item in page.get("Items", [])
        ]

    def count_for_user(self, user_id: str) -> int:
        return sum(
            int(page.get("Count", 0)) for page in self._query_user(user_id, select_count=True)
        )
