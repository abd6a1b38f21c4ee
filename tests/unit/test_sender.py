"""MessageSender against a moto connections table and a stubbed or faked management API.

moto's management API never answers 410, so the 410/429/5xx paths use botocore's Stubber on a
real client (ordered responses, one thread) or a small fake that raises the real client's
exception classes (any order, many threads).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import ANY, Stubber
from moto import mock_aws

from runtime import aws, schema
from runtime.config import ConfigError, StoreConfig
from runtime.connections import Connection, ConnectionStore
from runtime.messages import (
    MessageTooLargeError,
    SystemEvent,
    chat_response,
    system_frame,
    typing_indicator,
)
from runtime.observability import Metric, metrics
from runtime.sender import REDIRECT_POLL_SECONDS, BroadcastResult, MessageSender

TABLE = "connections-test"
ENDPOINT = "https://example.execute-api.us-east-1.amazonaws.com/dev"
NOW = 1_700_000_000.0
USER = "user-1"
OTHER_USER = "user-2"


# --- fixtures and fakes ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", schema.ENV_MANAGEMENT_ENDPOINT):
        monkeypatch.delenv(name, raising=False)
    aws.reset_clients()
    metrics.clear_metrics()
    yield
    aws.reset_clients()
    metrics.clear_metrics()


class EstablishedStore(ConnectionStore):
    """Rows of connections past their ``$connect`` unless told otherwise: a 410 removes only
    those (``remove_gone``)."""

    def add(
        self, connection_id: str, user_id: str, connected_at_ms: int | None = None, **kw: Any
    ) -> Connection:
        established = int((NOW - schema.INTEGRATION_TIMEOUT_SECONDS - 1) * 1000)
        connected = established if connected_at_ms is None else connected_at_ms
        return super().add(connection_id, user_id, connected, **kw)


@pytest.fixture
def store() -> Iterator[ConnectionStore]:
    with mock_aws():
        boto3.client("dynamodb").create_table(**schema.table_definition(TABLE))
        yield EstablishedStore(StoreConfig(table_name=TABLE), clock=lambda: NOW)


@pytest.fixture
def management() -> Any:
    return boto3.client("apigatewaymanagementapi", endpoint_url=ENDPOINT, region_name="us-east-1")


@pytest.fixture
def stubber(management: Any) -> Iterator[Stubber]:
    with Stubber(management) as stub:
        yield stub
        stub.assert_no_pending_responses()


class FakeTime:
    """``sleep`` and ``monotonic`` on a fake clock; hooks run after a given sleep call."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: dict[int, Callable[[], None]] = {}

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        hook = self.on_sleep.get(len(self.sleeps))
        if hook is not None:
            hook()

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


class FakeManagementApi:
    """post_to_connection with the real client's exception classes; thread-safe, records all."""

    def __init__(
        self,
        exceptions: Any,
        *,
        gone: set[str] | None = None,
        broken: set[str] | None = None,
        barrier: threading.Barrier | None = None,
    ) -> None:
        self.exceptions = exceptions
        self.gone = gone if gone is not None else set()
        self.broken = broken if broken is not None else set()
        self.barrier = barrier
        self.attempts: list[str] = []
        self.delivered: list[tuple[str, bytes]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        with self._lock:
            self.attempts.append(ConnectionId)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.barrier is not None:
                self.barrier.wait()
            if ConnectionId in self.gone:
                raise self.exceptions.GoneException(
                    {
                        "Error": {"Code": "GoneException", "Message": ""},
                        "ResponseMetadata": {"HTTPStatusCode": 410},
                    },
                    "PostToConnection",
                )
            if ConnectionId in self.broken:
                raise RuntimeError("unexpected bug")
            with self._lock:
                self.delivered.append((ConnectionId, Data))
            return {}
        finally:
            with self._lock:
                self.in_flight -= 1

    def frames_to(self, connection_id: str) -> list[dict[str, Any]]:
        return [json.loads(data) for target, data in self.delivered if target == connection_id]


@pytest.fixture
def fake(management: Any) -> FakeManagementApi:
    return FakeManagementApi(management.exceptions)


def make_sender(
    store: ConnectionStore, client: Any, fake_time: FakeTime, **options: Any
) -> MessageSender:
    return MessageSender(
        store, client=client, sleep=fake_time.sleep, monotonic=fake_time.monotonic, **options
    )


def metric_total(metric: Metric) -> float:
    return sum(metrics.metric_set.get(metric.value, {}).get("Value", []))


def post_ok(stubber: Stubber, connection_id: str, data: Any = ANY) -> None:
    stubber.add_response("post_to_connection", {}, {"ConnectionId": connection_id, "Data": data})


def post_error(stubber: Stubber, code: str, status: int) -> None:
    stubber.add_client_error("post_to_connection", service_error_code=code, http_status_code=status)


# --- construction ---------------------------------------------------------------------------


def test_missing_endpoint_names_the_variable(store: ConnectionStore) -> None:
    with pytest.raises(ConfigError, match=schema.ENV_MANAGEMENT_ENDPOINT):
        MessageSender(store)


def test_endpoint_from_env_reuses_the_container_client(
    store: ConnectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schema.ENV_MANAGEMENT_ENDPOINT, ENDPOINT)
    with MessageSender(store) as first, MessageSender(store) as second:
        assert first.endpoint_url == ENDPOINT
        assert first.client is second.client is aws.management_api(ENDPOINT)
        assert first.client.meta.endpoint_url == ENDPOINT


def test_explicit_endpoint_wins_over_env(
    store: ConnectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schema.ENV_MANAGEMENT_ENDPOINT, "https://other.example.com/prod")
    with MessageSender(store, ENDPOINT) as sender:
        assert sender.client.meta.endpoint_url == ENDPOINT


def test_from_env_builds_store_and_client() -> None:
    env = {schema.ENV_CONNECTIONS_TABLE: TABLE, schema.ENV_MANAGEMENT_ENDPOINT: ENDPOINT}
    with MessageSender.from_env(env, max_workers=4) as sender:
        assert sender.store.config.table_name == TABLE
        assert sender.client.meta.endpoint_url == ENDPOINT


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_workers", 0),
        ("max_retries", -1),
        ("base_backoff_seconds", -0.1),
        ("grace_seconds", -1),
    ],
)
def test_bad_options_are_named(
    store: ConnectionStore, fake: FakeManagementApi, option: str, value: float
) -> None:
    with pytest.raises(ValueError, match=option):
        MessageSender(store, client=fake, **{option: value})


# --- send_message ---------------------------------------------------------------------------


def test_send_message_posts_the_frame_once_serialized(
    store: ConnectionStore, management: Any, stubber: Stubber, fake_time: FakeTime
) -> None:
    frame = chat_response("conv-1", "hello", message_id="m1")
    post_ok(stubber, "BFHPhfCWIAMCKlQ=", frame.to_json().encode())
    with make_sender(store, management, fake_time) as sender:
        assert sender.send_message("BFHPhfCWIAMCKlQ=", frame) is True
    assert metric_total(Metric.MESSAGES_SENT) == 1
    assert fake_time.sleeps == []


def test_send_message_accepts_a_mapping_and_json_text(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    with make_sender(store, fake, fake_time) as sender:
        assert sender.send_message("c1", {"type": "system", "event": "notice", "text": "é"})
        assert sender.send_message("c1", '{"type":"system","event":"pong"}')
    assert fake.frames_to("c1") == [
        {"type": "system", "event": "notice", "text": "é"},
        {"type": "system", "event": "pong"},
    ]
    assert fake.delivered[0][1] == '{"type":"system","event":"notice","text":"é"}'.encode()


def test_gone_removes_the_target_row_only(
    store: ConnectionStore, management: Any, stubber: Stubber, fake_time: FakeTime
) -> None:
    store.add("target=", USER)
    store.add("sibling", USER)
    store.add("stranger", OTHER_USER)
    post_error(stubber, "GoneException", 410)
    with make_sender(store, management, fake_time) as sender:
        assert sender.send_message("target=", system_frame(SystemEvent.NOTICE, "hi")) is False
    assert store.get("target=") is None
    assert store.get("sibling") is not None
    assert store.get("stranger") is not None
    assert metric_total(Metric.STALE_CONNECTIONS_REMOVED) == 1
    assert metric_total(Metric.MESSAGES_SENT) == 0
    assert fake_time.sleeps == []


def test_a_410_without_the_gone_error_type_is_still_gone(
    store: ConnectionStore, management: Any, stubber: Stubber, fake_time: FakeTime
) -> None:
    # boto3 maps 410 to GoneException only when x-amzn-ErrorType says so.
    store.add("target", USER)
    post_error(stubber, "410", 410)
    with make_sender(store, management, fake_time) as sender:
        assert sender.send_message("target", system_frame(SystemEvent.PONG)) is False
    assert store.get("target") is None


def test_throttled_then_sent_backs_off_exponentially(
    store: ConnectionStore, management: Any, stubber: Stubber, fake_time: FakeTime
) -> None:
    post_error(stubber, "LimitExceededException", 429)
    post_error(stubber, "LimitExceededException", 429)
    post_ok(stubber, "c1")
    with make_sender(store, management, fake_time, base_backoff_seconds=0.1) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is True
    assert len(fake_time.sleeps) == 2
    for attempt, slept in enumerate(fake_time.sleeps):
        ceiling = 0.1 * 2**attempt
        assert ceiling / 2 <= slept <= ceiling
    assert metric_total(Metric.MESSAGES_SENT) == 1


def test_throttled_past_the_retries_fails(
    store: ConnectionStore, management: Any, stubber: Stubber, fake_time: FakeTime
) -> None:
    store.add("c1", USER)
    for _ in range(3):
        post_error(stubber, "LimitExceededException", 429)
    with make_sender(store, management, fake_time, max_retries=2) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is False
    assert len(fake_time.sleeps) == 2
    assert store.get("c1") is not None
    assert metric_total(Metric.MESSAGES_SENT) == 0


def test_server_error_fails_at_once_and_never_logs_content(
    store: ConnectionStore,
    management: Any,
    stubber: Stubber,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store.add("c1", USER)
    post_error(stubber, "InternalServerError", 500)
    with make_sender(store, management, fake_time) as sender:
        ok = sender.send_message("c1", chat_response("conv", "top-secret-answer", message_id="m"))
    assert ok is False
    assert fake_time.sleeps == []
    assert store.get("c1") is not None
    failures = [r for r in caplog.records if r.getMessage() == "post_to_connection failed"]
    assert [(r.levelname, vars(r)["connectionId"]) for r in failures] == [("WARNING", "c1")]
    assert all("top-secret-answer" not in repr(vars(r)) for r in caplog.records)


def test_network_error_fails_without_raising(store: ConnectionStore, fake_time: FakeTime) -> None:
    class Unreachable(FakeManagementApi):
        def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
            raise EndpointConnectionError(endpoint_url=ENDPOINT)

    client = Unreachable(boto3.client("apigatewaymanagementapi", endpoint_url=ENDPOINT).exceptions)
    with make_sender(store, client, fake_time) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is False


def test_failing_removal_is_logged_not_raised(
    management: Any, stubber: Stubber, fake_time: FakeTime, store: ConnectionStore
) -> None:
    class BrokenStore(ConnectionStore):
        def remove(self, connection_id: str) -> None:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": ""}},
                "DeleteItem",
            )

    broken = BrokenStore(store.config, clock=lambda: NOW)
    post_error(stubber, "GoneException", 410)
    with make_sender(broken, management, fake_time) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is False


def test_oversized_message_is_refused_before_any_network_call(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    store.add("c1", USER)
    huge = "x" * (schema.MAX_MESSAGE_BYTES + 1)
    with make_sender(store, fake, fake_time) as sender:
        with pytest.raises(MessageTooLargeError):
            sender.send_message("c1", system_frame(SystemEvent.NOTICE, huge))
        with pytest.raises(MessageTooLargeError):
            sender.send_message("c1", {"type": "system", "message": huge})
        with pytest.raises(MessageTooLargeError):
            sender.send_message("c1", json.dumps({"message": huge}))
        with pytest.raises(MessageTooLargeError):
            sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE, huge))
        with pytest.raises(MessageTooLargeError):
            sender.stream("c1", "conv", ["hi"], metadata={"sources": huge})
    assert fake.attempts == []


def test_a_multibyte_message_is_measured_in_bytes(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    # Fits in characters, not in UTF-8 bytes.
    text = json.dumps({"content": "é" * (schema.MAX_MESSAGE_BYTES // 2)}, ensure_ascii=False)
    assert len(text) < schema.MAX_MESSAGE_BYTES
    with make_sender(store, fake, fake_time) as sender, pytest.raises(MessageTooLargeError):
        sender.send_message("c1", text)
    assert fake.attempts == []


# --- broadcast_to_user ----------------------------------------------------------------------


def test_broadcast_counts_sent_gone_and_failed(
    store: ConnectionStore, management: Any, stubber: Stubber, fake_time: FakeTime
) -> None:
    for connection_id in ("a-ok", "b-gone", "c-broken"):
        store.add(connection_id, USER)
    store.add("z-stranger", OTHER_USER)
    # One worker: the Stubber is not thread-safe and its responses are ordered (index order).
    stubber.add_response("post_to_connection", {}, {"ConnectionId": "a-ok", "Data": ANY})
    post_error(stubber, "GoneException", 410)
    post_error(stubber, "InternalServerError", 500)
    with make_sender(store, management, fake_time, max_workers=1) as sender:
        result = sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE, "maintenance"))
    assert result == BroadcastResult(sent=1, gone=1, failed=1)
    assert result.total == 3
    assert store.get("b-gone") is None
    assert store.get("a-ok") is not None
    assert store.get("c-broken") is not None
    assert store.get("z-stranger") is not None
    assert metric_total(Metric.MESSAGES_SENT) == 1
    assert metric_total(Metric.STALE_CONNECTIONS_REMOVED) == 1


def test_broadcast_sends_concurrently(
    store: ConnectionStore, management: Any, fake_time: FakeTime
) -> None:
    for connection_id in ("c1", "c2", "c3"):
        store.add(connection_id, USER)
    # Each call waits until all three are in flight: a sequential sender breaks the barrier.
    client = FakeManagementApi(management.exceptions, barrier=threading.Barrier(3, timeout=10))
    with make_sender(store, client, fake_time, max_workers=8) as sender:
        result = sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE))
    assert result == BroadcastResult(sent=3, gone=0, failed=0)
    assert client.max_in_flight == 3
    payloads = [data for _, data in client.delivered]
    assert all(data is payloads[0] for data in payloads)  # serialized once


def test_broadcast_is_bounded_by_max_workers(
    store: ConnectionStore, management: Any, fake_time: FakeTime
) -> None:
    for index in range(6):
        store.add(f"c{index}", USER)
    client = FakeManagementApi(management.exceptions, barrier=threading.Barrier(2, timeout=10))
    with make_sender(store, client, fake_time, max_workers=2) as sender:
        for _ in range(3):
            assert sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE)).sent == 6
        workers = [t for t in threading.enumerate() if t.name.startswith("message-sender")]
        assert len(workers) <= 2  # one pool, reused across broadcasts
    assert client.max_in_flight == 2


def test_one_broken_connection_never_fails_the_others(
    store: ConnectionStore, management: Any, fake_time: FakeTime
) -> None:
    for connection_id in ("c1", "c2", "c3", "c4"):
        store.add(connection_id, USER)
    client = FakeManagementApi(management.exceptions, gone={"c2"}, broken={"c3"})
    with make_sender(store, client, fake_time, max_workers=4) as sender:
        result = sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE))
    assert result == BroadcastResult(sent=2, gone=1, failed=1)
    assert sorted(target for target, _ in client.delivered) == ["c1", "c4"]
    assert store.get("c2") is None
    assert store.get("c3") is not None


def test_broadcast_to_a_user_without_connections(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    with make_sender(store, fake, fake_time) as sender:
        assert sender.broadcast_to_user(
            "nobody", system_frame(SystemEvent.NOTICE)
        ) == BroadcastResult(0, 0, 0)
    assert fake.attempts == []


# --- stream ---------------------------------------------------------------------------------


def test_stream_frames_in_order(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    with make_sender(store, fake, fake_time) as sender:
        result = sender.stream(
            "c1", "conv-1", ["Hel", "", "lo", " world"], message_id="m1", metadata={"k": 1}
        )
    assert result
    assert result.completed is True
    assert result.chunks == 3
    assert result.message_id == "m1"
    assert result.connection_ids == ("c1",)
    frames = fake.frames_to("c1")
    assert [f["type"] for f in frames] == ["typing_indicator"] + ["chat_response"] * 4 + [
        "typing_indicator"
    ]
    assert frames[0]["isTyping"] is True
    assert frames[-1]["isTyping"] is False
    chunks = frames[1:-1]
    assert [c["sequence"] for c in chunks] == [0, 1, 2, 3]
    assert [c["content"] for c in chunks] == ["Hel", "lo", " world", ""]
    assert [c["done"] for c in chunks] == [False, False, False, True]
    assert {c["messageId"] for c in chunks} == {"m1"}
    assert {c["conversationId"] for c in frames} == {"conv-1"}
    assert chunks[-1]["metadata"] == {"k": 1}
    assert metric_total(Metric.MESSAGES_SENT) == 6


def test_stream_names_the_question_it_answers_in_every_frame(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    """``inReplyTo`` is how a client matches an answer to its question (``ChatClient.ask``)."""
    with make_sender(store, fake, fake_time) as sender:
        sender.stream("c1", "conv-1", ["a", "b" * 200_000], in_reply_to="question-1")
        sender.stream("c2", "conv-1", ["unmatched"])
    frames = fake.frames_to("c1")
    assert len(frames) == 6  # typing, "a", the big chunk split in two, done, typing
    assert {f["inReplyTo"] for f in frames} == {"question-1"}
    assert all("inReplyTo" not in f for f in fake.frames_to("c2"))


def test_stream_splits_a_chunk_over_the_message_limit(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    answer = ('Quote "this" — ünïcode \\ and more. ' * 12_000)[: 3 * schema.MAX_MESSAGE_BYTES]
    with make_sender(store, fake, fake_time) as sender:
        result = sender.stream("c1", "conv", [answer, "tail"])
    assert result.completed
    assert all(len(data) <= schema.MAX_MESSAGE_BYTES for _, data in fake.delivered)
    chunks = [f for f in fake.frames_to("c1") if f["type"] == "chat_response"]
    assert len(chunks) > 4
    assert [c["sequence"] for c in chunks] == list(range(len(chunks)))
    assert "".join(c["content"] for c in chunks) == answer + "tail"
    assert chunks[-1]["done"] is True
    assert chunks[-1]["sequence"] == result.chunks


def test_stream_stops_when_the_connection_is_gone(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    store.add("c1", USER)
    consumed: list[str] = []

    def answer() -> Iterator[str]:
        for part in ("one", "two", "three", "four"):
            consumed.append(part)
            if part == "three":
                fake.gone.add("c1")
            yield part

    with make_sender(store, fake, fake_time) as sender:
        result = sender.stream("c1", "conv", answer())
    assert not result
    assert result.chunks == 2
    assert consumed == ["one", "two", "three"]
    assert store.get("c1") is None
    frames = fake.frames_to("c1")
    assert [f.get("content") for f in frames] == [None, "one", "two"]
    assert fake_time.sleeps == []


def test_stream_sends_typing_off_when_the_answer_fails(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    def answer() -> Iterator[str]:
        yield "partial"
        raise TimeoutError("model timed out")

    with make_sender(store, fake, fake_time) as sender, pytest.raises(TimeoutError):
        sender.stream("c1", "conv", answer())
    frames = fake.frames_to("c1")
    assert frames[-1] == {**frames[-1], "type": "typing_indicator", "isTyping": False}
    assert [f.get("content") for f in frames] == [None, "partial", None]


# --- redirect to the user's live connection (answers survive a reconnect) ------------------


def test_stream_continues_on_the_users_new_connection(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    store.add("old", USER)
    store.add("stranger", OTHER_USER)
    # The client reconnects while the sender waits: its new row appears after the 2nd poll.
    fake_time.on_sleep[2] = lambda: store.add("new", USER)

    def answer() -> Iterator[str]:
        yield "a"
        yield "b"
        fake.gone.add("old")  # the socket drops mid-stream
        yield "c"
        yield "d"

    with make_sender(store, fake, fake_time, redirect_gone_to_user=True) as sender:
        result = sender.stream("old", "conv", answer(), message_id="m1")
    assert result.completed
    assert result.connection_ids == ("new",)
    assert result.chunks == 4
    assert store.get("old") is None
    assert fake_time.sleeps == [REDIRECT_POLL_SECONDS] * 2
    old = fake.frames_to("old")
    assert [f.get("sequence") for f in old] == [None, 0, 1]
    new = fake.frames_to("new")
    # Everything so far is replayed (typing on, chunks 0-2), then the rest continues there.
    assert [f["type"] for f in new] == ["typing_indicator"] + ["chat_response"] * 5 + [
        "typing_indicator"
    ]
    chunks = [f for f in new if f["type"] == "chat_response"]
    assert [c["sequence"] for c in chunks] == [0, 1, 2, 3, 4]
    assert "".join(c["content"] for c in chunks) == "abcd"
    assert chunks[-1]["done"] is True
    assert {c["messageId"] for c in chunks} == {"m1"}
    assert fake.frames_to("stranger") == []


def test_redirect_uses_the_given_user_when_disconnect_removed_the_row(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    store.add("new", USER)  # "old" has no row: $disconnect already deleted it
    fake.gone.add("old")
    with make_sender(store, fake, fake_time) as sender:
        result = sender.stream(
            "old", "conv", ["x"], user_id=USER, redirect_gone_to_user=True, grace_seconds=1
        )
    assert result.completed
    assert result.connection_ids == ("new",)
    assert [f.get("content") for f in fake.frames_to("new")] == [None, "x", "", None]
    assert fake_time.sleeps == []


def test_redirect_gives_up_after_the_grace_period(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    store.add("old", USER)
    fake.gone.add("old")
    with make_sender(store, fake, fake_time, redirect_gone_to_user=True) as sender:
        result = sender.stream("old", "conv", ["x"], grace_seconds=1.0)
    assert not result
    assert result.connection_ids == ()
    assert sum(fake_time.sleeps) == pytest.approx(1.0)
    assert all(s <= REDIRECT_POLL_SECONDS for s in fake_time.sleeps)
    assert fake.delivered == []
    assert fake.attempts == ["old"]


def test_send_message_redirects_to_a_live_connection(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    store.add("old", USER)
    store.add("tab-2", USER)
    fake.gone.add("old")
    frame = typing_indicator("conv", True)
    with make_sender(store, fake, fake_time) as sender:
        assert sender.send_message("old", frame) is False  # redirect is off by default
        fake.gone.clear()
        store.add("old", USER)
        fake.gone.add("old")
        assert sender.send_message("old", frame, redirect_gone_to_user=True) is True
    # The user was read from the gone row before it was removed.
    assert store.get("old") is None
    assert fake.frames_to("tab-2") == [json.loads(frame.to_json())]
    assert metric_total(Metric.STALE_CONNECTIONS_REMOVED) == 2


def test_redirect_skips_connections_that_are_gone_too(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    for connection_id in ("old", "stale", "live"):
        store.add(connection_id, USER)
    fake.gone.update({"old", "stale"})
    with make_sender(store, fake, fake_time, redirect_gone_to_user=True) as sender:
        assert sender.send_message("old", system_frame(SystemEvent.NOTICE), user_id=USER) is True
    assert [target for target, _ in fake.delivered] == ["live"]
    assert store.get("stale") is None
    assert store.get("live") is not None


def test_a_410_during_connect_keeps_the_row_and_the_redirect_tries_again(
    store: ConnectionStore, fake: FakeManagementApi, fake_time: FakeTime
) -> None:
    """API Gateway answers 410 to a post while the target's ``$connect`` still runs ("the
    connection is not yet established", DESIGN §4): the user's new connection is not stale."""
    store.add("old", USER)
    store.add("new", USER, int(NOW * 1000))  # connecting right now
    fake.gone.update({"old", "new"})
    fake_time.on_sleep[1] = lambda: fake.gone.discard("new")  # its $connect returns
    frame = system_frame(SystemEvent.NOTICE, "hi")
    with make_sender(store, fake, fake_time) as sender:
        delivered = sender.send_message(
            "old", frame, user_id=USER, redirect_gone_to_user=True, grace_seconds=1
        )
    assert delivered is True
    assert fake.attempts == ["old", "new", "new"]
    assert fake.frames_to("new") == [json.loads(frame.to_json())]
    assert store.get("old") is None
    assert store.get("new") is not None
