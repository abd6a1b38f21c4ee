"""moto's fast path in local mode (``local.moto_process``) answers exactly as moto does.

Two embedded motos, one serving moto as it is (``EmbeddedAws(fast_path=False)``: patched like
AWS by ``local.fidelity`` all the same) and one with every speed-up, get the same raw HTTP
requests in the same order; every answer must be the same: status, headers (but the request
id and date each process makes anew) and body, byte for byte, errors included, and the table
must hold the same items afterwards. Both run with one hash seed, so sets come back in one
order from both.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from local.aws import LOCAL_QUEUE_NAME, AwsResources, EmbeddedAws
from runtime import schema
from runtime.config import StoreConfig
from runtime.connections import ConnectionLimitReached, ConnectionStore, TouchStatus

# What each process makes anew per answer; every other header must match.
_PER_PROCESS_HEADERS = {"date", "x-amzn-requestid"}
_TARGET_PREFIX = "DynamoDB_20120810."


class Moto:
    def __init__(self, aws: AwsResources) -> None:
        self.resources = aws
        self._connection = http.client.HTTPConnection(urlsplit(aws.endpoint_url).netloc, timeout=30)

    def headers(self, operation: str, service: str = "dynamodb") -> dict[str, str]:
        """What botocore sends with a DynamoDB call (signed for ``service``)."""
        return {
            "X-Amz-Target": _TARGET_PREFIX + operation,
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": (
                "AWS4-HMAC-SHA256 Credential=testing/20260101/"
                f"{self.resources.region}/{service}/aws4_request, SignedHeaders=host, "
                "Signature=0"
            ),
        }

    def send(self, operation: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", "/", body, self.headers(operation))

    def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """Any request, on the kept-alive connection; the answer without per-process headers."""
        self._connection.request(method, path, body=body, headers=headers)
        response = self._connection.getresponse()
        answer = {
            name.lower(): value
            for name, value in response.getheaders()
            if name.lower() not in _PER_PROCESS_HEADERS
        }
        return response.status, answer, response.read()

    def close(self) -> None:
        self._connection.close()


class Pair:
    """Sends each request to plain moto and the fast path and checks they answer alike."""

    def __init__(self, plain: Moto, fast: Moto) -> None:
        self.plain, self.fast = plain, fast
        self.table = plain.resources.table_name

    def send_both(self, operation: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        expected = self.plain.send(operation, body)
        actual = self.fast.send(operation, body)
        assert actual == expected, f"{operation} {body!r}"
        return actual

    def request_both(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        expected = self.plain.request(method, path, body, headers)
        actual = self.fast.request(method, path, body, headers)
        assert actual == expected, f"{method} {path} {headers} {body!r}"
        return actual

    def call(self, operation: str, **body: Any) -> tuple[int, dict[str, Any]]:
        status, _, answer = self.send_both(operation, json.dumps(body).encode())
        try:
            return status, json.loads(answer)
        except ValueError:  # moto's 500s carry its traceback's text
            return status, {"__type": str(status), "message": answer.decode(errors="replace")}

    def ok(self, operation: str, **body: Any) -> dict[str, Any]:
        status, answer = self.call(operation, TableName=self.table, **body)
        assert status == 200, answer
        return answer

    def error(self, operation: str, **body: Any) -> str:
        status, answer = self.call(operation, TableName=self.table, **body)
        assert status == 400, answer
        return str(answer["__type"]).rpartition("#")[2] + ": " + str(answer.get("message"))

    def assert_same_items(self) -> None:
        items = self.ok("Scan", ConsistentRead=True)["Items"]
        assert items, "a scan that compares nothing proves nothing"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    motos: list[EmbeddedAws] = []
    try:
        clients = []
        for fast_path in (False, True):
            aws = EmbeddedAws(fast_path=fast_path)
            motos.append(aws)
            clients.append(Moto(aws.start()))
        yield Pair(*clients)
        for client in clients:
            client.close()
    finally:
        for aws in motos:
            aws.stop()
        monkeypatch.undo()


def _key(connection_id: str) -> dict[str, Any]:
    value = {"S": schema.connection_key(connection_id)}
    return {schema.PARTITION_KEY: value, schema.SORT_KEY: value}


def _row(connection_id: str, user_id: str, ttl: int = 2_000_000_000) -> dict[str, Any]:
    return {
        **_key(connection_id),
        schema.ATTR_CONNECTION_ID: {"S": connection_id},
        schema.ATTR_USER_ID: {"S": user_id},
        schema.ATTR_CONNECTED_AT: {"N": "1700000000000"},
        schema.ATTR_LAST_SEEN_AT: {"N": "1700000000000"},
        schema.TTL_ATTRIBUTE: {"N": str(ttl)},
    }


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _store(pair: Pair, clock: list[float], **config: Any) -> ConnectionStore:
    """The runtime's own ``ConnectionStore``, each of whose requests goes to both motos: the
    requests compared are byte for byte the ones the handlers send."""
    client = pair.plain.resources.dynamodb()

    def send_to_both(request: Any, **_: Any) -> AWSResponse:
        target = request.headers["X-Amz-Target"]
        operation = (target.decode() if isinstance(target, bytes) else target).removeprefix(
            _TARGET_PREFIX
        )
        status, _, body = pair.send_both(operation, request.body)
        return AWSResponse(request.url, status, HTTPHeaders(), _Body(body))

    # botocore uses the answer of a ``before-send`` handler in place of sending the request.
    client.meta.events.register("before-send", send_to_both)  # type: ignore[arg-type]
    return ConnectionStore(
        StoreConfig(table_name=pair.table, **config), client=client, clock=lambda: clock[0]
    )


def test_the_runtimes_calls_get_the_same_answers_and_leave_the_same_items(pair: Pair) -> None:
    """$connect's transaction (with the per-user limit reached and healed), the touch every
    message sends (accepted, rate-limited, expired, unknown), reads, the userId-index queries
    of a broadcast, and removals."""
    now = [1_800_000_000.0]
    store = _store(pair, now, messages_per_minute=3, max_connections_per_user=3)
    for n in range(3):
        store.add(f"fan-{n}", "fan-user")
    with pytest.raises(ConnectionLimitReached):
        store.add("fan-3", "fan-user")
    statuses = [store.touch("fan-0", int(now[0] * 1000)).status for _ in range(5)]
    assert statuses[:3] == [TouchStatus.OK] * 3
    assert statuses[3:] == [TouchStatus.RATE_LIMITED] * 2
    assert store.touch("nobody", int(now[0] * 1000)).status == TouchStatus.UNKNOWN
    now[0] += 61  # a new rate window: the touch's names change, its expression does not
    assert store.touch("fan-0", int(now[0] * 1000)).status == TouchStatus.OK
    assert sorted(store.connection_ids_for_user("fan-user")) == ["fan-0", "fan-1", "fan-2"]
    assert len(store.list_for_user("fan-user")) == store.count_for_user("fan-user") == 3
    assert store.get("fan-1") is not None
    store.remove("fan-1")
    assert store.remove_gone("fan-2")
    now[0] += schema.IDLE_TIMEOUT_SECONDS + schema.MAX_CONNECTION_SECONDS
    assert store.touch("fan-0", int(now[0] * 1000)).status == TouchStatus.UNKNOWN
    store.add("fan-4", "fan-user")  # the limit heals: the expired ids are dropped
    assert store.connection_ids_for_user("fan-user") == ["fan-4"]
    pair.assert_same_items()


def _update(pair: Pair, expression: str, names: dict[str, str] | None = None, **more: Any) -> str:
    """An ``UpdateItem`` of one row; its answer ("ok" or the error) from both motos alike."""
    body: dict[str, Any] = {"Key": _key("expr"), "UpdateExpression": expression, **more}
    if names is not None:
        body["ExpressionAttributeNames"] = names
    body.setdefault("ExpressionAttributeValues", {":v": {"N": "1"}})
    status, answer = pair.call("UpdateItem", TableName=pair.table, **body)
    if status == 200:
        return "ok"
    return str(answer["__type"]).rpartition("#")[2] + ": " + str(answer.get("message"))


def test_an_expression_that_passed_with_some_names_is_checked_again_with_others(
    pair: Pair,
) -> None:
    """The fast path remembers the checks an expression passed for given names: the same
    expression with names that overlap, or that name a key, must still be refused, and the
    refusal must not be remembered as a pass."""
    pair.ok("PutItem", Item=_row("expr", "expr-user"))
    two = "SET #a = :v, #b = :v"
    for _ in range(2):
        assert _update(pair, two, {"#a": "x", "#b": "y"}) == "ok"
        assert _update(pair, two, {"#a": "x", "#b": "x"}).startswith("ValidationException")
        assert _update(pair, two, {"#a": "x", "#b": schema.SORT_KEY}).startswith(
            "ValidationException: One or more parameter values were invalid: Cannot update"
        )
        assert _update(pair, two, {"#a": "x"}).startswith("500")  # as moto: a KeyError
        assert _update(pair, "SET #a = :v REMOVE #a.b", {"#a": "m"}).startswith(
            "ValidationException"
        )
    pair.assert_same_items()


@pytest.mark.parametrize(
    ("expression", "extra"),
    [
        ("SET n = :v SET m = :v", {}),
        ("SET n = = :v", {}),
        ("SET n = :v", {"ExpressionAttributeValues": {":v": {"N": "1"}, ":unused": {"N": "2"}}}),
        ("SET n = :missing", {}),
        ("SET n = n + :v", {}),  # n does not exist yet
        ("SET s = :s + :v", {"ExpressionAttributeValues": {":v": {"N": "1"}, ":s": {"S": "x"}}}),
        ("ADD n :v", {"ConditionExpression": "attribute_not_exists(PK)"}),
        (
            "SET n = if_not_exists(n, :v) + :v",
            {"ConditionExpression": "n < :v", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"},
        ),
        (
            "SET n = list_append(:l, :l), m = :v REMOVE gone",
            {
                "ExpressionAttributeValues": {":v": {"N": "1"}, ":l": {"L": [{"S": "a"}]}},
                "ReturnValues": "ALL_NEW",
            },
        ),
        ("SET PK = :v", {}),
        ("SET n = :v", {"ConditionExpression": "#missing = :v"}),
        ("SET n = :v", {"ConditionExpression": "attribute_exists(PK) AND PK = :v"}),
        ("SET n = :v", {"ConditionExpression": "attribute_exists(PK)"}),
        ("SET e = :e", {"ExpressionAttributeValues": {":e": {"S": ""}}}),
        # Subtrees a walk skips: REMOVE clauses before and after SET, nested and missing.
        ("REMOVE gone, n SET n2 = if_not_exists(n, :v) + :v", {}),
        ("REMOVE m.missing.deep SET n = :v", {}),
        ("SET n = :v REMOVE #e", {"ExpressionAttributeNames": {"#e": "PK"}}),
        (
            "SET l = list_append(if_not_exists(l, :l), :l), n = :v REMOVE a, b[0], c",
            {"ExpressionAttributeValues": {":v": {"N": "1"}, ":l": {"L": [{"S": "a"}]}}},
        ),
        # Paths of one name set or removed, checked without resolving: present, absent,
        # undefined placeholders, reserved words, in every action.
        (
            "SET #n = :v, #new = :v REMOVE #gone, #there",
            {
                "ExpressionAttributeNames": {
                    "#n": "n",
                    "#new": "new",
                    "#gone": "gone",
                    "#there": "connectionId",
                }
            },
        ),
        ("SET n = :v REMOVE #undefined", {}),
        # A REMOVE clause the copies share: a path under a missing parent, a list index.
        ("SET n = :v REMOVE nested.deep.gone, l[3]", {}),
        ("SET n = :v REMOVE n.deep, l[3]", {}),
        # Checked paths left as they were, then a missing operand found by a later walk.
        ("REMOVE #gone, n SET m = missing, k = :v", {"ExpressionAttributeNames": {"#gone": "g"}}),
        ("SET n = :v REMOVE #undefined", {"ExpressionAttributeNames": {"#u": "u"}}),
        ("SET n = :v REMOVE name", {}),
        ("SET name = :v", {}),
        ("ADD #c :v", {"ExpressionAttributeNames": {"#c": "c"}}),
        ("ADD #undefined :v", {}),
        ("ADD size :v", {}),
        (
            "DELETE #s :s",
            {
                "ExpressionAttributeNames": {"#s": "s"},
                "ExpressionAttributeValues": {":s": {"SS": ["a"]}},
            },
        ),
        ("DELETE #undefined :s", {"ExpressionAttributeValues": {":s": {"SS": ["a"]}}}),
    ],
)
def test_update_expressions_and_their_errors_answer_alike(
    pair: Pair, expression: str, extra: dict[str, Any]
) -> None:
    pair.ok("PutItem", Item=_row("expr", "expr-user"))
    for _ in range(2):  # once parsed, once from the caches
        _update(pair, expression, **extra)
    pair.assert_same_items()


@pytest.mark.parametrize(
    ("condition", "names", "values"),
    [
        ("attribute_exists(#pk) AND #t > :now", {"#pk": schema.PARTITION_KEY, "#t": "ttl"}, {}),
        ("attribute_exists(#pk) AND #t > :now", {"#pk": schema.PARTITION_KEY, "#t": "n"}, {}),
        ("attribute_exists(#pk) AND #t > :now", {"#pk": schema.PARTITION_KEY}, {}),
        ("attribute_exists(#pk) AND #t > :now", {"#pk": schema.PARTITION_KEY, "#t": 1}, {}),
        ("attribute_exists(#pk) AND #t > :now", {"#pk": "x", "#t": "ttl"}, {}),
        ("#t > :now", {"#t": schema.TTL_ATTRIBUTE}, {":now": {"N": "2000000001"}}),
        ("#t > :now", {"#t": schema.TTL_ATTRIBUTE}, {":v": {"N": "1"}}),
        ("#t > :now", {"#t": schema.TTL_ATTRIBUTE}, {":now": {"S": "x"}}),
        ("#t > :now", {"#t": schema.TTL_ATTRIBUTE}, {":now": {}}),
        ("#t BETWEEN :v AND :now", {"#t": schema.TTL_ATTRIBUTE}, {}),
        ("#t IN (:v, :now, :v)", {"#t": schema.TTL_ATTRIBUTE}, {}),
        ("size(#t) < :now OR NOT begins_with(#u, :s)", {"#t": "ttl", "#u": "userId"}, {}),
        ("(#t > :now) AND ((#t > :v))", {"#t": schema.TTL_ATTRIBUTE}, {}),
        ("attribute_exists(PK)", None, None),
        ("attribute_exists(#pk)", None, None),
        ("n < :v", None, {":v": {"N": "1"}}),
    ],
)
def test_conditions_and_their_errors_answer_alike(
    pair: Pair, condition: str, names: dict[str, Any] | None, values: dict[str, Any] | None
) -> None:
    """The fast path keeps a condition's parse per text and names used, and fills in each
    request's values: each condition is sent three times with values that change its outcome
    (or lack, or break, what it needs), so the kept parse serves the later two."""
    pair.ok("PutItem", Item=_row("expr", "expr-user"))
    for now in ("1", "2000000001", "1"):
        body: dict[str, Any] = {"Key": _key("expr"), "UpdateExpression": "SET n = :v"}
        body["ConditionExpression"] = condition
        body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if names is not None:
            body["ExpressionAttributeNames"] = names
        body["ExpressionAttributeValues"] = (
            {":v": {"N": "1"}}
            if values is None
            else {":v": {"N": "1"}, ":now": {"N": now}, ":s": {"S": "expr"}, **values}
        )
        pair.call("UpdateItem", TableName=pair.table, **body)
    pair.assert_same_items()


def test_a_condition_is_parsed_once_per_text_and_names_with_each_requests_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In process: a condition parsed once is not parsed again for the same text and values
    of the names it uses (whatever other names the request has), yet each request's parse
    holds that request's values; other names used, or a value missing, parse anew."""
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    from local.moto_process import _parse_each_condition_once_per_expression

    monkeypatch.setattr(ConditionExpressionParser, "parse", ConditionExpressionParser.parse)
    _parse_each_condition_once_per_expression()
    parsed: list[str] = []
    parse_paths = ConditionExpressionParser._parse_paths

    def counted(self: Any, nodes: Any) -> Any:
        parsed.append(self.condition_expression)
        return parse_paths(self, nodes)

    monkeypatch.setattr(ConditionExpressionParser, "_parse_paths", counted)
    condition = "attribute_exists(#pk) AND #t > :now"
    item = Item(DynamoType({"S": "k"}), None, {"PK": {"S": "k"}, "ttl": {"N": "10"}})

    def holds(names: dict[str, str], now: str) -> bool:
        values = {":now": {"N": now}}
        parser = ConditionExpressionParser(condition, names, values)
        result = parser.parse()
        assert parser.expr_attr_names_found == ["#pk", "#t"]
        assert parser.expr_attr_values_found == [":now"]
        return bool(result.expr(item))

    names = {"#pk": "PK", "#t": "ttl"}
    assert holds(names, "5")
    assert not holds({**names, "#other": "x"}, "50")
    assert holds(names, "9")
    assert parsed == [condition]
    assert not holds({"#pk": "PK", "#t": "missing"}, "5")
    assert parsed == [condition] * 2
    with pytest.raises(KeyError):
        ConditionExpressionParser(condition, names, {}).parse()
    assert parsed == [condition] * 3


def test_projections_answer_alike(pair: Pair) -> None:
    """Queries on userId-index (projected by the index, then by a ProjectionExpression), and
    projections of strings and numbers (numbers as moto rewrites them: ``1e2`` as ``1E+2``),
    names absent, nested paths, list elements, sets, maps, binary and NULL,
    which the fast path leaves to moto."""
    user = "projection-user"
    for n in range(5):
        pair.ok("PutItem", Item=_row(f"projection-{n}", user, ttl=2_000_000_000 + n))
    odd = {
        **_row("projection-odd", user),
        "n": {"N": "1e2"},
        "zero": {"N": "-0.00"},
        "tags": {"SS": ["b", "a", "c"]},
        "m": {"M": {"a": {"N": "01"}, "b": {"NULL": True}}},
        "l": {"L": [{"S": "x"}, {"B": "AAE="}]},
        "nothing": {"NULL": True},
    }
    plain = {**_row("projection-plain", user), "n": {"N": "1e2"}, "zero": {"N": "-0.00"}}
    pair.ok("PutItem", Item=odd)
    pair.ok("PutItem", Item=plain)
    index_query: dict[str, Any] = {
        "IndexName": schema.USER_INDEX_NAME,
        "KeyConditionExpression": "#uid = :uid",
        "ExpressionAttributeNames": {"#uid": schema.USER_INDEX_HASH_KEY},
        "ExpressionAttributeValues": {":uid": {"S": user}},
    }
    assert len(pair.ok("Query", **index_query)["Items"]) == 7
    names = {
        "#uid": schema.USER_INDEX_HASH_KEY,
        "#cid": schema.ATTR_CONNECTION_ID,
        "#ttl": schema.TTL_ATTRIBUTE,
    }
    for projection in ["#cid", "#ttl, #cid", "absent", "#cid, PK"]:
        used = {name: value for name, value in names.items() if name in f"#uid {projection}"}
        pair.ok(
            "Query",
            **{**index_query, "ProjectionExpression": projection, "ExpressionAttributeNames": used},
        )
    pair.ok("Query", **index_query, Select="COUNT")
    for key in (_key("projection-odd"), _key("projection-plain")):
        for projection in ["n, zero, PK", "tags", "m.a, l[1]", "m", "nothing, n", "l[0]"]:
            pair.ok("GetItem", Key=key, ProjectionExpression=projection)
    pair.ok(
        "BatchGetItem",
        RequestItems={
            pair.table: {
                "Keys": [_key("projection-odd"), _key("projection-plain"), _key("projection-0")],
                "ProjectionExpression": "n, zero, connectionId",
            }
        },
    )
    pair.ok("Scan", ProjectionExpression="connectionId, n, tags")
    pair.assert_same_items()


def test_cancelled_transactions_leave_every_item_as_it_was(pair: Pair) -> None:
    """The fast path keeps the table's item containers and a copy of each updated item to
    undo a transaction, where moto deep-copies the table: a put, an in-place update (ADD to a
    set), a delete and an update creating an item, cancelled by a failed condition or by an
    invalid update after some ran, must all be undone alike; a transaction that succeeds
    keeps them."""
    pair.ok("PutItem", Item={**_row("tx-kept", "tx-user"), "ids": {"SS": ["a"]}})
    pair.ok("PutItem", Item=_row("tx-deleted", "tx-user"))
    pair.ok("PutItem", Item=_row("tx-checked", "tx-user"))
    table = pair.table

    def operations(last: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"Put": {"TableName": table, "Item": _row("tx-new", "tx-user")}},
            {
                "Update": {
                    "TableName": table,
                    "Key": _key("tx-kept"),
                    "UpdateExpression": "ADD ids :b SET n = :one",
                    "ExpressionAttributeValues": {":b": {"SS": ["b"]}, ":one": {"N": "1"}},
                }
            },
            {"Delete": {"TableName": table, "Key": _key("tx-deleted")}},
            {
                "Update": {
                    "TableName": table,
                    "Key": _key("tx-created"),
                    "UpdateExpression": "SET n = :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
            last,
        ]

    failing_condition = {
        "ConditionCheck": {
            "TableName": table,
            "Key": _key("tx-checked"),
            "ConditionExpression": "attribute_not_exists(PK)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    invalid_update = {
        "Update": {
            "TableName": table,
            "Key": _key("tx-other"),
            "UpdateExpression": "SET n = :missing",
        }
    }
    for last in (failing_condition, invalid_update):
        status, answer = pair.call("TransactWriteItems", TransactItems=operations(last))
        assert status == 400, answer
        pair.assert_same_items()
        assert not pair.ok("GetItem", Key=_key("tx-new")).get("Item")
        assert pair.ok("GetItem", Key=_key("tx-kept"))["Item"]["ids"] == {"SS": ["a"]}
    succeeding = {"ConditionCheck": {**failing_condition["ConditionCheck"]}}
    succeeding["ConditionCheck"]["ConditionExpression"] = "attribute_exists(PK)"
    pair.ok("TransactWriteItems", TransactItems=operations(succeeding))
    assert pair.ok("GetItem", Key=_key("tx-new"))["Item"]
    assert not pair.ok("GetItem", Key=_key("tx-deleted")).get("Item")
    pair.assert_same_items()


def test_the_lean_front_answers_dynamodb_and_leaves_the_rest_to_moto_alike(pair: Pair) -> None:
    """The fast path answers DynamoDB calls without Flask: its answers to them, to requests
    of any other shape (which it leaves to moto's app) and to other services must be moto's,
    headers included (``x-amz-crc32``, content type and length, CORS), malformed bodies and
    unknown tables and actions too."""
    fast = pair.fast
    pair.ok("PutItem", Item=_row("front", "front-user"))
    table = json.dumps({"TableName": pair.table, "Key": _key("front")}).encode()
    status, headers, _ = pair.send_both("GetItem", table)
    assert status == 200
    assert {"x-amz-crc32", "content-type", "content-length", "server"} <= set(headers)
    assert headers["access-control-allow-origin"] == "*"
    missing = json.dumps({"TableName": "no-such-table", "Key": _key("front")}).encode()
    assert pair.send_both("GetItem", missing)[0] == 400
    for body in (b"{not json", b"", b"[]", b'{"TableName": 1}', '{"é": 1}'.encode()):
        pair.send_both("GetItem", body)
        pair.send_both("UpdateItem", body)
    pair.send_both("NoSuchAction", table)
    pair.send_both("ListTables", b"{}")
    dynamodb = fast.headers("GetItem")
    for method, path, headers in [
        ("POST", "/?x=1", dynamodb),  # a query string
        ("POST", "/elsewhere", dynamodb),  # another path
        ("GET", "/", dynamodb),  # another method
        ("POST", "/", {**dynamodb, "Origin": "http://127.0.0.1:1"}),  # a CORS request
        ("POST", "/", {**dynamodb, "Content-Type": "application/json"}),  # another type
        ("POST", "/", fast.headers("GetItem", service="sqs")),  # signed for SQS
        ("POST", "/", {**dynamodb, "X-Amz-Target": "DynamoDB_20111205.GetItem"}),
    ]:
        pair.request_both(method, path, table, headers)
    sqs_request = {
        "X-Amz-Target": "AmazonSQS.ListQueues",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": fast.headers("ListQueues", service="sqs")["Authorization"],
    }
    answers = []
    for moto in (pair.plain, fast):  # their queue URLs differ by the port alone
        status, headers, answer = moto.request("POST", "/", b"{}", sqs_request)
        del headers["content-length"]
        netloc = urlsplit(moto.resources.endpoint_url).netloc.encode()
        answers.append((status, headers, answer.replace(netloc, b"moto")))
    assert answers[0] == answers[1]
    assert answers[1][0] == 200
    assert f"moto/123456789012/{LOCAL_QUEUE_NAME}".encode() in answers[1][2]


def test_the_lean_front_takes_only_dynamodb_calls_of_the_shape_it_reads() -> None:
    """In process: a DynamoDB call never reaches moto's app behind the front; a request of
    any other shape does, untouched."""
    from local.moto_process import _lean_front

    reached: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        reached.append(environ["PATH_INFO"] + "?" + environ.get("QUERY_STRING", ""))
        start_response("204 No Content", [])
        return []

    front = _lean_front(app)
    body = json.dumps({"TableName": "absent"}).encode()

    def environ(**changes: str) -> dict[str, Any]:
        base = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/x-amz-json-1.0",
            "HTTP_HOST": "127.0.0.1:1",
            "HTTP_X_AMZ_TARGET": _TARGET_PREFIX + "DescribeTable",
            "HTTP_AUTHORIZATION": (
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, "
                "SignedHeaders=host, Signature=0"
            ),
        }
        return {**base, **changes}

    statuses: list[str] = []
    answer = b"".join(front(environ(), lambda status, headers: statuses.append(status)))
    assert statuses == ["400 BAD REQUEST"]
    assert b"ResourceNotFoundException" in answer
    assert reached == []
    for n, other in enumerate(
        [
            {"QUERY_STRING": "x=1"},
            {"PATH_INFO": "/other"},
            {"REQUEST_METHOD": "GET"},
            {"HTTP_ORIGIN": "http://127.0.0.1:2"},
            {"CONTENT_TYPE": "application/json"},
            {"HTTP_CONTENT_ENCODING": "gzip"},
            {"HTTP_X_AMZ_TARGET": "AmazonSQS.ListQueues"},
            {"HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=t/2026/us-east-1/sqs/x"},
            {"HTTP_AUTHORIZATION": ""},
        ]
    ):
        path = other.get("PATH_INFO", "/") + "?" + other.get("QUERY_STRING", "")
        front(environ(**other), lambda status, headers: None)
        assert reached[n:] == [path], other


def test_sqs_long_polls_never_hold_up_dynamodb_calls(pair: Pair) -> None:
    """DynamoDB calls are answered one at a time in moto's process; SQS long polls (the
    demo responder runs four consumers) wait in threads of their own meanwhile: every
    DynamoDB call is answered while all of them are still waiting."""
    resources = pair.fast.resources
    sqs = resources.sqs()
    waiting = 4

    def long_poll() -> None:
        sqs.receive_message(QueueUrl=resources.dead_letter_queue_url, WaitTimeSeconds=5)

    threads = [threading.Thread(target=long_poll) for _ in range(waiting)]
    for thread in threads:
        thread.start()
    dynamodb = resources.dynamodb()
    for _ in range(20):
        dynamodb.describe_table(TableName=resources.table_name)
        assert all(thread.is_alive() for thread in threads)
    for thread in threads:
        thread.join()


def _tracked_items(moto: Moto) -> int:
    """How many DynamoDB ``Item`` instances moto's dashboard lists."""
    status, _, answer = moto.request("GET", "/moto-api/data.json", b"", {})
    assert status == 200
    return len(json.loads(answer)["dynamodb"]["Item"])


def test_model_instances_are_listed_while_alive_not_kept_forever(pair: Pair) -> None:
    """moto lists every model instance it ever made for its dashboard, and so keeps them all:
    each ``UpdateItem`` copies the item twice. The fast path lists (and keeps) only those
    alive: updates of a row leave the count where it was; moto's grows by two each."""
    pair.ok("PutItem", Item=_row("tracked", "tracked-user"))
    before = {moto: _tracked_items(moto) for moto in (pair.plain, pair.fast)}
    updates = 5
    for _ in range(updates):
        assert _update(pair, "SET n = :v", Key=_key("tracked")) == "ok"
    assert _tracked_items(pair.plain) == before[pair.plain] + 2 * updates
    assert _tracked_items(pair.fast) == before[pair.fast]


def test_dynamodb_calls_are_served_by_the_loop_and_the_rest_by_waitress_threads() -> None:
    """In process, over a real socket: waitress's loop thread serves a DynamoDB call itself;
    an SQS call (a long poll must never hold up the loop) and a request that arrives while
    another on its connection is in service go to waitress's threads; answers come back in
    order on a kept-alive connection."""
    import socket

    from local.moto_process import _answer_dynamodb_in_the_loop, waitress_server

    served: list[tuple[str, str]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        served.append((target, threading.current_thread().name))
        body = target.encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    listener = socket.create_server(("127.0.0.1", 0))
    server = waitress_server(app, listener, threads=2)
    _answer_dynamodb_in_the_loop(server)
    loop = threading.Thread(target=server.run, name="loop", daemon=True)
    loop.start()

    def request(target: str, service: str) -> bytes:
        return (
            "POST / HTTP/1.1\r\nHost: moto\r\nContent-Length: 2\r\n"
            f"X-Amz-Target: {target}\r\n"
            f"Authorization: AWS4-HMAC-SHA256 Credential=t/20260101/us-east-1/{service}/"
            "aws4_request, SignedHeaders=host, Signature=0\r\n\r\n{}"
        ).encode()

    dynamodb = request(_TARGET_PREFIX + "GetItem", "dynamodb")
    sqs = request("AmazonSQS.ReceiveMessage", "sqs")
    try:
        with socket.create_connection(listener.getsockname()[:2], timeout=10) as client:
            reader = client.makefile("rb")

            def answer() -> bytes:
                assert reader.readline().startswith(b"HTTP/1.1 200 ")
                length = 0
                while (line := reader.readline()) != b"\r\n":
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                return reader.read(length)

            client.sendall(dynamodb)
            assert answer() == (_TARGET_PREFIX + "GetItem").encode()
            client.sendall(sqs)
            assert answer() == b"AmazonSQS.ReceiveMessage"
            client.sendall(dynamodb + dynamodb)  # the second arrives while the first is served
            assert [answer(), answer()] == [(_TARGET_PREFIX + "GetItem").encode()] * 2
    finally:
        server.close()
    threads = [name for _, name in served]
    assert threads[0] == "loop"
    assert threads[1] != "loop"
    assert threads[2:] == ["loop", threads[3]]
    assert threads[3] != "loop"


def test_a_kept_answer_is_only_for_a_result_serialized_alike() -> None:
    """The fast path keeps the answer to a small result under a key of that result: results
    that moto could write differently (by type, sign of zero, order, nesting) have different
    keys; results of anything else, or too large, have none and are serialized anew."""
    from decimal import Decimal

    from local.moto_process import SERIALIZED_RESULT_LEAVES, _result_key

    def key(value: Any) -> Any:
        return _result_key(value, [SERIALIZED_RESULT_LEAVES])

    alike = [{"a": 1}, {"a": 1.0}, {"a": True}, {"a": "1"}, {"a": 0.0}, {"a": -0.0}, {"a": None}]
    alike += [{"a": [1]}, {"a": {"b": 1}}, {"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": [1, 2]}]
    keys = [key(value) for value in alike]
    assert None not in keys
    assert len(set(keys)) == len(alike)
    assert keys == [key(value) for value in alike]
    for other in ({"a": Decimal(1)}, {1: "a"}, {"a": (1,)}, {"a": b"1"}, ValueError("x")):
        assert key(other) is None
    assert key({"a": list(range(SERIALIZED_RESULT_LEAVES))}) is not None
    assert key({"a": list(range(SERIALIZED_RESULT_LEAVES + 1))}) is None


def test_a_validated_update_ast_is_freed_without_the_garbage_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In process, under ``mock_aws``: once moto's validator is done with its copy of a
    touch-like update AST, the fast path has dropped the copy's parent links, so the copy is
    freed as soon as nothing refers to it, with the collector off (moto's waited for one)."""
    import gc
    import weakref

    import boto3
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.parsing.expressions import (  # type: ignore[attr-defined]
        UpdateExpressionParser,
    )
    from moto.dynamodb.parsing.validators import UpdateExpressionValidator, Validator

    from local.moto_process import _unlink_update_asts_once_validated

    monkeypatch.setattr(Validator, "validate", Validator.validate)  # undone after the test
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    _unlink_update_asts_once_validated()
    expression = "SET #ttl = :ttl, #cur = if_not_exists(#cur, :zero) + :one REMOVE #old1, #old2"
    names = {"#ttl": schema.TTL_ATTRIBUTE, "#cur": "c2", "#old1": "c1", "#old2": "c0"}
    values = {":ttl": {"N": "2"}, ":zero": {"N": "0"}, ":one": {"N": "1"}}
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**schema.table_definition("validated"))  # type: ignore[arg-type]
        client.put_item(TableName="validated", Item=_row("c", "u"))
        table = dynamodb_backends["123456789012"]["us-east-1"].get_table("validated")
        key = _key("c")[schema.PARTITION_KEY]
        item = table.get_item(DynamoType(key), DynamoType(key))
        ast = UpdateExpressionParser.make(expression)
        gc.disable()
        try:
            validator = UpdateExpressionValidator(
                ast,
                expression_attribute_names=names,
                expression_attribute_values=values,
                item=item,
                table=table,
            )
            copy = weakref.ref(validator.node_to_validate)
            validator.validate().normalize()
            del validator
            freed = copy() is None
        finally:
            gc.enable()
    assert freed


def test_the_loop_accepts_every_waiting_connection_in_one_turn() -> None:
    """The loop serves calls itself, so a turn of it takes longer: it accepts every
    connection waiting (up to waitress's limit) when it turns to the listening socket, where
    waitress accepts one, and a burst of new connections does not wait turn after turn."""
    import socket
    import time

    from local.moto_process import _answer_dynamodb_in_the_loop, waitress_server

    listener = socket.create_server(("127.0.0.1", 0))
    server = waitress_server(lambda *_: [], listener, threads=1, connection_limit=4)
    _answer_dynamodb_in_the_loop(server)
    clients = [socket.create_connection(listener.getsockname()[:2]) for _ in range(6)]
    try:
        time.sleep(0.2)  # the handshakes complete in the kernel's backlog
        server.handle_accept()
        assert len(server.active_channels) == 4  # the limit
    finally:
        for client in clients:
            client.close()
        server.close()


@pytest.mark.usefixtures("over_1024_files")
def test_moto_serves_on_sockets_numbered_past_1024() -> None:
    """waitress's default ``select()`` raises ``ValueError: filedescriptor out of range`` for a
    socket numbered 1024 or more (CPython's ``select`` module: FD_SETSIZE), which ends its loop
    thread and leaves moto answering nothing. moto's process holds up to
    ``MOTO_CONNECTION_LIMIT`` (1024) keep-alive connections, so its sockets can get there when
    the file limit allows: its server waits with ``poll()`` and answers on them all the same."""
    import socket

    from local.moto_process import waitress_server

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    listener = socket.create_server(("127.0.0.1", 0))
    assert listener.fileno() >= 1024
    server = waitress_server(app, listener, threads=1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # the assertion below names it
            errors.append(exc)

    loop = threading.Thread(target=run, name="moto-loop", daemon=True)
    loop.start()
    try:
        with socket.create_connection(listener.getsockname()[:2], timeout=10) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: moto\r\n\r\n")
            answer = client.recv(1024)
    finally:
        server.close()
    assert answer.startswith(b"HTTP/1.1 200 "), (answer, errors)
    assert errors == []


def _links(node: Any) -> list[tuple[Any, ...]]:
    """Every node of an update AST below ``node``: its class, identity, parent and children."""
    rows: list[tuple[Any, ...]] = []
    nodes = [node]
    while nodes:
        node = nodes.pop()
        children = list(node.children or ())
        rows.append((type(node), id(node), id(node.parent), [id(c) for c in children], children))
        nodes.extend(child for child in children if hasattr(child, "children"))
    return rows


def test_copies_of_a_cached_update_ast_share_its_remove_clause_and_leave_it_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In process, under ``mock_aws``: the validator's copy of a touch-like update AST holds
    the cached REMOVE clause itself (its SET clause is copied), and validating and running
    it for several requests, with other names, a nested path and a list index, some failing,
    leaves the cached clause exactly as it was: same nodes, links and children."""
    from functools import lru_cache

    import boto3
    from moto import mock_aws
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.executors import UpdateExpressionExecutor
    from moto.dynamodb.parsing.expressions import (  # type: ignore[attr-defined]
        UpdateExpressionParser,
    )
    from moto.dynamodb.parsing.validators import ActionCountValidator, UpdateExpressionValidator

    from local.moto_process import _count_actions_once

    # Undone after the test: the patches _count_actions_once makes.
    monkeypatch.setattr(validators, "deepcopy", validators.deepcopy)
    monkeypatch.setattr(ActionCountValidator, "traverse", ActionCountValidator.traverse)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    class Parser:
        make = staticmethod(lru_cache(UpdateExpressionParser.make))

    _count_actions_once(Parser)
    expression = (
        "SET #ttl = :ttl, #cur = if_not_exists(#cur, :zero) + :one REMOVE #old1, m.gone, l[0]"
    )
    ast = Parser.make(expression)
    remove = ast.children[-1].children[0]
    before = _links(remove)
    values = {":ttl": {"N": "2"}, ":zero": {"N": "0"}, ":one": {"N": "1"}}
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**schema.table_definition("shared"))  # type: ignore[arg-type]
        row = _row("c", "u") | {"m": {"M": {"gone": {"S": "x"}}}, "l": {"L": [{"S": "a"}]}}
        client.put_item(TableName="shared", Item=row)
        table = dynamodb_backends["123456789012"]["us-east-1"].get_table("shared")
        key = _key("c")[schema.PARTITION_KEY]
        item = table.get_item(DynamoType(key), DynamoType(key))
        failures: list[str] = []
        for n in range(4):
            names = {"#ttl": schema.TTL_ATTRIBUTE, "#cur": f"c{n}", "#old1": f"c{n - 1}"}
            if n == 3:  # a key attribute: refused while checking the REMOVE clause
                names["#old1"] = schema.PARTITION_KEY
            validator = UpdateExpressionValidator(
                Parser.make(expression),
                expression_attribute_names=names,
                expression_attribute_values=values,
                item=item,
                table=table,
            )
            copy = validator.node_to_validate
            assert copy.children[-1].children[0] is remove
            assert copy.children[0] is not ast.children[0]
            try:
                result = validator.validate()
            except MockValidationException as error:
                failures.append(str(error))
                continue
            result.normalize()
            UpdateExpressionExecutor(result, item, names).execute()
        assert len(failures) == 1
        assert schema.PARTITION_KEY in failures[0]
        attrs = item.to_json()["Attributes"]
        assert (attrs["c2"], attrs["m"], attrs["l"]) == ({"N": "1"}, {"M": {}}, {"L": []})
        assert "c0" not in attrs
        assert "c1" not in attrs
    assert _links(remove) == before
