"""ConnectionStore: every DynamoDB access to the connections table (DESIGN §2).

Rows expire through the ``ttl`` attribute, which DynamoDB applies late (and moto never), so
every read here filters ``ttl > now``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from runtime import aws, schema
from runtime.config import StoreConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Clock = Callable[[], float]


class TouchStatus(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TouchResult:
    status: TouchStatus
    retry_after_ms: int = 0


@dataclass(frozen=True)
class Connection:
    connection_id: str
    user_id: str
    connected_at_ms: int
    last_seen_at_ms: int
    ttl: int


def expiry(now_seconds: float, connected_at_ms: int, idle_timeout_seconds: int) -> int:
    """The sliding TTL: ``min(lastSeen + idleTimeout, connectedAt + 2 h)`` in epoch seconds."""
    # Rounded up: DynamoDB's TTL has whole seconds, and rounding down could expire a row that
    # was touched less than a second ago when the idle timeout is short (local tests).
    idle_deadline = math.ceil(now_seconds + idle_timeout_seconds)
    hard_deadline = connected_at_ms // 1000 + schema.MAX_CONNECTION_SECONDS
    return min(idle_deadline, hard_deadline)


def _connection(item: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=item[schema.ATTR_CONNECTION_ID]["S"],
        user_id=item[schema.ATTR_USER_ID]["S"],
        connected_at_ms=int(item[schema.ATTR_CONNECTED_AT]["N"]),
        last_seen_at_ms=int(item[schema.ATTR_LAST_SEEN_AT]["N"]),
        ttl=int(item[schema.TTL_ATTRIBUTE]["N"]),
    )


class ConnectionStore:
    """Adds, removes, touches and lists connections; ``clock`` returns epoch seconds."""

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
        key = schema.connection_key(connection_id)
        return {schema.PARTITION_KEY: {"S": key}, schema.SORT_KEY: {"S": key}}

    def add(
        self, connection_id: str, user_id: str, connected_at_ms: int | None = None
    ) -> Connection:
        """Store a new connection's row (``$connect``)."""
        now = self._clock()
        now_ms = int(now * 1000)
        connected_at_ms = now_ms if connected_at_ms is None else connected_at_ms
        ttl = expiry(now, connected_at_ms, self.config.idle_timeout_seconds)
        item = {
            **self._key(connection_id),
            schema.ATTR_CONNECTION_ID: {"S": connection_id},
            schema.ATTR_USER_ID: {"S": user_id},
            schema.ATTR_CONNECTED_AT: {"N": str(connected_at_ms)},
            schema.ATTR_LAST_SEEN_AT: {"N": str(now_ms)},
            schema.TTL_ATTRIBUTE: {"N": str(ttl)},
        }
        self.client.put_item(TableName=self.config.table_name, Item=item)
        return Connection(connection_id, user_id, connected_at_ms, now_ms, ttl)

    def remove(self, connection_id: str) -> None:
        """Delete a connection's row; deleting a row that is not there is not an error."""
        self.client.delete_item(TableName=self.config.table_name, Key=self._key(connection_id))

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
        drops the previous window's counter.
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
            names["#prev"] = f"{schema.RATE_COUNTER_PREFIX}{window - schema.RATE_WINDOW_SECONDS}"
            values[":zero"] = {"N": "0"}
            values[":one"] = {"N": "1"}
            values[":limit"] = {"N": str(limit)}
            update += ", #cur = if_not_exists(#cur, :zero) + :one REMOVE #prev"
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
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self._why_rejected(exc, now, window)
        return TouchResult(TouchStatus.OK)

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
