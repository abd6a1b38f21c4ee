"""MessageSender against a moto connections table and a scripted management API on loopback.

moto's management API never answers 410, so a loopback fake (``fake_management_api``) answers
like API Gateway does, 410 ``GoneException`` included, and checks every request's signature.
Every test runs on both posting paths, the lean one (botocore's SigV4 signer, runtime.http1 on
kept-alive sockets) and the boto3 client's, which must map every answer the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
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
from runtime.streaming import Coalescing
from tests.unit.fake_management_api import HANG, RESET, FakeManagementApi, serve

TABLE = "connections-test"
ENDPOINT = "https://example.execute-api.us-east-1.amazonaws.com/dev"
REGION = "us-east-1"
NOW = 1_700_000_000.0
USER = "user-1"
OTHER_USER = "user-2"
PATHS = ("lean", "boto3")
TRANSIENT = (500, 502, 503, 504, RESET, HANG)


# --- fixtures and fakes ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", schema.ENV_MANAGEMENT_ENDPOINT):
        monkeypatch.delenv(name, raising=False)
    # Short reads, so a hanging answer times out quickly on both paths (long enough for a
    # loaded machine: a timeout where none was scripted would make a test flaky).
    monkeypatch.setattr(
        aws,
        "_MANAGEMENT_CONFIG",
        Config(
            connect_timeout=1,
            read_timeout=1.5,
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=16,
        ),
    )
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
def api() -> Iterator[FakeManagementApi]:
    fake = FakeManagementApi(lambda: boto3.session.Session().get_credentials(), REGION)
    with serve(fake):
        yield fake
    assert fake.bad_signatures == 0


@pytest.fixture(params=PATHS)
def posting(request: pytest.FixtureRequest) -> str:
    return str(request.param)


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


@pytest.fixture
def make_sender(
    store: ConnectionStore, api: FakeManagementApi, fake_time: FakeTime, posting: str
) -> Callable[..., MessageSender]:
    def make(target_store: ConnectionStore | None = None, **options: Any) -> MessageSender:
        return MessageSender(
            target_store or store,
            api.endpoint,
            posting=options.pop("posting", posting),
            sleep=fake_time.sleep,
            monotonic=fake_time.monotonic,
            **options,
        )

    return make


def metric_total(metric: Metric) -> float:
    return sum(metrics.metric_set.get(metric.value, {}).get("Value", []))


# --- construction ---------------------------------------------------------------------------


def test_missing_endpoint_names_the_variable(store: ConnectionStore) -> None:
    with pytest.raises(ConfigError, match=schema.ENV_MANAGEMENT_ENDPOINT):
        MessageSender(store)


def test_the_lean_path_is_the_default(
    store: ConnectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schema.ENV_MANAGEMENT_ENDPOINT, ENDPOINT)
    with MessageSender(store) as sender:
        assert sender.posting == "lean"
        assert sender.endpoint_url == ENDPOINT
        assert sender.client is None


def test_the_boto3_path_reuses_the_container_client(
    store: ConnectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schema.ENV_MANAGEMENT_ENDPOINT, ENDPOINT)
    with (
        MessageSender(store, posting="boto3") as first,
        MessageSender(store, posting="boto3") as second,
    ):
        assert first.endpoint_url == ENDPOINT
        assert first.client is second.client is aws.management_api(ENDPOINT)
        assert first.client is not None
        assert first.client.meta.endpoint_url == ENDPOINT


def test_a_given_client_means_the_boto3_path(store: ConnectionStore) -> None:
    client = boto3.client("apigatewaymanagementapi", endpoint_url=ENDPOINT)
    with MessageSender(store, client=client) as sender:
        assert sender.posting == "boto3"
        assert sender.client is client
    with pytest.raises(ValueError, match="posting='lean' takes no client"):
        MessageSender(store, client=client, posting="lean")


def test_explicit_endpoint_wins_over_env(
    store: ConnectionStore, monkeypatch: pytest.MonkeyPatch, posting: str
) -> None:
    monkeypatch.setenv(schema.ENV_MANAGEMENT_ENDPOINT, "https://other.example.com/prod")
    with MessageSender(store, ENDPOINT, posting=posting) as sender:  # type: ignore[arg-type]
        assert sender.endpoint_url == ENDPOINT


def test_from_env_builds_store_and_sender() -> None:
    env = {schema.ENV_CONNECTIONS_TABLE: TABLE, schema.ENV_MANAGEMENT_ENDPOINT: ENDPOINT}
    with MessageSender.from_env(env, max_workers=4) as sender:
        assert sender.store.config.table_name == TABLE
        assert sender.endpoint_url == ENDPOINT


def test_the_lean_path_needs_credentials_and_a_region(
    store: ConnectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    aws.reset_clients()
    with pytest.raises(ConfigError, match="AWS_REGION"):
        MessageSender(store, ENDPOINT)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_workers", 0),
        ("max_retries", -1),
        ("base_backoff_seconds", -0.1),
        ("grace_seconds", -1),
        ("coalesce_seconds", -0.01),
        ("posting", "http2"),
    ],
)
def test_bad_options_are_named(
    make_sender: Callable[..., MessageSender], option: str, value: object
) -> None:
    with pytest.raises(ValueError, match=option):
        make_sender(**{option: value})


# --- send_message ---------------------------------------------------------------------------


def test_send_message_posts_the_frame_once_serialized(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender], fake_time: FakeTime
) -> None:
    frame = chat_response("conv-1", "hello", message_id="m1")
    with make_sender() as sender:
        assert sender.send_message("BFHPhfCWIAMCKlQ=", frame) is True
    assert api.delivered == [("BFHPhfCWIAMCKlQ=", frame.to_json().encode())]
    assert metric_total(Metric.MESSAGES_SENT) == 1
    assert fake_time.sleeps == []


def test_send_message_accepts_a_mapping_and_json_text(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    with make_sender() as sender:
        assert sender.send_message("c1", {"type": "system", "event": "notice", "text": "é"})
        assert sender.send_message("c1", '{"type":"system","event":"pong"}')
    assert api.frames_to("c1") == [
        {"type": "system", "event": "notice", "text": "é"},
        {"type": "system", "event": "pong"},
    ]
    assert api.delivered[0][1] == '{"type":"system","event":"notice","text":"é"}'.encode()


def test_gone_removes_the_target_row_only(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
) -> None:
    store.add("target=", USER)
    store.add("sibling", USER)
    store.add("stranger", OTHER_USER)
    api.gone.add("target=")
    with make_sender() as sender:
        assert sender.send_message("target=", system_frame(SystemEvent.NOTICE, "hi")) is False
    assert store.get("target=") is None
    assert store.get("sibling") is not None
    assert store.get("stranger") is not None
    assert metric_total(Metric.STALE_CONNECTIONS_REMOVED) == 1
    assert metric_total(Metric.MESSAGES_SENT) == 0
    assert fake_time.sleeps == []


def test_throttled_then_sent_backs_off_exponentially(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender], fake_time: FakeTime
) -> None:
    api.fail("c1", 429, 429)
    with make_sender(base_backoff_seconds=0.1) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is True
    assert len(fake_time.sleeps) == 2
    for attempt, slept in enumerate(fake_time.sleeps):
        ceiling = 0.1 * 2**attempt
        assert ceiling / 2 <= slept <= ceiling
    assert api.attempts == ["c1"] * 3
    assert metric_total(Metric.MESSAGES_SENT) == 1


@pytest.mark.parametrize("transient", TRANSIENT)
def test_one_transient_error_is_retried_like_a_throttle(
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
    transient: int | str,
) -> None:
    """A single 5xx, reset connection or read timeout is retried with the 429 backoff."""
    api.fail("c1", transient)
    with make_sender(base_backoff_seconds=0.1) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is True
    assert len(fake_time.sleeps) == 1
    assert 0.05 <= fake_time.sleeps[0] <= 0.1
    assert api.attempts == ["c1", "c1"]
    assert [target for target, _ in api.delivered] == ["c1"]


def test_a_connection_the_endpoint_closed_while_idle_is_replaced(
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
    posting: str,
) -> None:
    api.close_after_answer = True
    with make_sender() as sender:
        for index in range(3):
            assert sender.send_message("c1", {"type": "system", "event": "notice", "n": index})
    assert [frame["n"] for frame in api.frames_to("c1")] == [0, 1, 2]
    if posting == "lean":
        # At once; the boto3 client's pool sees the close only when it has already arrived,
        # otherwise its post fails and the sender retries after a backoff.
        assert fake_time.sleeps == []


@pytest.mark.parametrize("persistent", [429, 500, 503, RESET])
def test_an_error_that_persists_fails_after_the_retries(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
    persistent: int | str,
) -> None:
    store.add("c1", USER)
    api.fail("c1", *[persistent] * 3)
    with make_sender(max_retries=2) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is False
    assert len(fake_time.sleeps) == 2
    assert api.attempts == ["c1"] * 3
    assert store.get("c1") is not None
    assert metric_total(Metric.MESSAGES_SENT) == 0


@pytest.mark.parametrize("status", [413, 403])
def test_too_large_and_forbidden_fail_at_once_and_never_log_content(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    store.add("c1", USER)
    api.fail("c1", status)
    with make_sender() as sender:
        ok = sender.send_message("c1", chat_response("conv", "top-secret-answer", message_id="m"))
    assert ok is False
    assert fake_time.sleeps == []
    assert api.attempts == ["c1"]
    assert store.get("c1") is not None
    failures = [r for r in caplog.records if r.getMessage() == "post_to_connection failed"]
    assert [(r.levelname, vars(r)["connectionId"], vars(r)["httpStatus"]) for r in failures] == [
        ("WARNING", "c1", status)
    ]
    assert all("top-secret-answer" not in repr(vars(r)) for r in caplog.records)


def test_an_unreachable_endpoint_fails_without_raising(
    store: ConnectionStore, fake_time: FakeTime, posting: str
) -> None:
    with MessageSender(
        store,
        "http://127.0.0.1:9/dev",  # discard port: nothing listens
        posting=posting,  # type: ignore[arg-type]
        sleep=fake_time.sleep,
        max_retries=1,
    ) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is False
    assert len(fake_time.sleeps) == 1


def test_failing_removal_is_logged_not_raised(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    class BrokenStore(ConnectionStore):
        def remove(self, connection_id: str) -> None:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": ""}},
                "DeleteItem",
            )

    api.gone.add("c1")
    with make_sender(BrokenStore(store.config, clock=lambda: NOW)) as sender:
        assert sender.send_message("c1", system_frame(SystemEvent.PONG)) is False


def test_oversized_message_is_refused_before_any_network_call(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    store.add("c1", USER)
    huge = "x" * (schema.MAX_MESSAGE_BYTES + 1)
    with make_sender() as sender:
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
    assert api.attempts == []


def test_a_multibyte_message_is_measured_in_bytes(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    # Fits in characters, not in UTF-8 bytes.
    text = json.dumps({"content": "é" * (schema.MAX_MESSAGE_BYTES // 2)}, ensure_ascii=False)
    assert len(text) < schema.MAX_MESSAGE_BYTES
    with make_sender() as sender, pytest.raises(MessageTooLargeError):
        sender.send_message("c1", text)
    assert api.attempts == []


# --- broadcast_to_user ----------------------------------------------------------------------


def test_broadcast_counts_sent_gone_and_failed(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    for connection_id in ("a-ok", "b-gone", "c-broken"):
        store.add(connection_id, USER)
    store.add("z-stranger", OTHER_USER)
    api.gone.add("b-gone")
    api.fail("c-broken", 413)
    with make_sender() as sender:
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
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    for connection_id in ("c1", "c2", "c3"):
        store.add(connection_id, USER)
    # Each call waits until all three are in flight: a sequential sender breaks the barrier.
    api.barrier = threading.Barrier(3, timeout=10)
    with make_sender(max_workers=8) as sender:
        result = sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE))
    assert result == BroadcastResult(sent=3, gone=0, failed=0)
    assert api.max_in_flight == 3
    assert len({data for _, data in api.delivered}) == 1


def test_broadcast_is_bounded_by_max_workers(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    for index in range(6):
        store.add(f"c{index}", USER)
    api.barrier = threading.Barrier(2, timeout=10)
    with make_sender(max_workers=2) as sender:
        for _ in range(3):
            assert sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE)).sent == 6
        workers = [t for t in threading.enumerate() if t.name.startswith("message-sender")]
        assert len(workers) <= 2  # one pool, reused across broadcasts
    assert api.max_in_flight == 2


def test_one_broken_connection_never_fails_the_others(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for connection_id in ("c1", "c2", "c3", "c4"):
        store.add(connection_id, USER)
    api.gone.add("c2")
    with make_sender(max_workers=4) as sender:
        post = sender.poster.post

        def buggy(connection_id: str, data: bytes) -> Any:
            if connection_id == "c3":
                raise RuntimeError("unexpected bug")
            return post(connection_id, data)

        monkeypatch.setattr(sender.poster, "post", buggy)
        result = sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE))
    assert result == BroadcastResult(sent=2, gone=1, failed=1)
    assert sorted(target for target, _ in api.delivered) == ["c1", "c4"]
    assert store.get("c2") is None
    assert store.get("c3") is not None


def test_broadcast_to_a_user_without_connections(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    with make_sender() as sender:
        assert sender.broadcast_to_user(
            "nobody", system_frame(SystemEvent.NOTICE)
        ) == BroadcastResult(0, 0, 0)
    assert api.attempts == []


# --- stream ---------------------------------------------------------------------------------


def test_stream_frames_in_order(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    with make_sender(coalesce_seconds=0) as sender:
        result = sender.stream(
            "c1", "conv-1", ["Hel", "", "lo", " world"], message_id="m1", metadata={"k": 1}
        )
    assert result
    assert result.completed is True
    assert result.chunks == 3
    assert result.message_id == "m1"
    assert result.connection_ids == ("c1",)
    frames = api.frames_to("c1")
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


def test_later_chunks_are_coalesced_and_the_first_goes_out_alone(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    tokens = [f"t{index} " for index in range(100)]
    # A window of an hour: the chunks end long before it closes, and what is gathered goes
    # out when they end (the test would hang otherwise).
    with make_sender(coalesce_seconds=3600) as sender:
        result = sender.stream("c1", "conv", tokens, message_id="m1")
    assert result.completed
    chunks = [f for f in api.frames_to("c1") if f["type"] == "chat_response"]
    assert [c["content"] for c in chunks] == ["t0 ", "".join(tokens[1:]), ""]
    assert [c["sequence"] for c in chunks] == [0, 1, 2]
    assert result.chunks == 2


def test_a_window_closes_while_the_model_is_still_thinking(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    def answer() -> Iterator[str]:
        yield "a"
        yield "b"
        # The model stalls (up to 10 s): "b" must go out when its window closes, not with "c".
        for _ in range(1000):
            if any(f.get("content") == "b" for f in api.frames_to("c1")):
                break
            time.sleep(0.01)
        yield "c"

    with make_sender(coalesce_seconds=0.05) as sender:
        result = sender.stream("c1", "conv", answer())
    assert result.completed
    chunks = [f for f in api.frames_to("c1") if f["type"] == "chat_response"]
    assert [c["content"] for c in chunks] == ["a", "b", "c", ""]


def test_coalesced_frames_stay_within_one_32_kb_frame(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    tokens = ['"quoted" ünïcode\n ' * 50] * 100  # JSON escapes make frames bigger than text
    with make_sender(coalesce_seconds=3600) as sender:
        result = sender.stream("c1", "conv", tokens)
    assert result.completed
    assert all(len(data) <= schema.MAX_FRAME_BYTES for _, data in api.delivered)
    chunks = [f for f in api.frames_to("c1") if f["type"] == "chat_response"]
    assert "".join(c["content"] for c in chunks) == "".join(tokens)
    assert [c["sequence"] for c in chunks] == list(range(len(chunks)))
    assert 4 <= len(chunks) < len(tokens)


def test_the_window_doubles_per_frame_up_to_its_maximum() -> None:
    coalescing = Coalescing(0.05, 0.25)
    assert [coalescing.window(n) for n in range(5)] == [0.05, 0.1, 0.2, 0.25, 0.25]
    with pytest.raises(ValueError, match="max_coalesce_seconds"):
        Coalescing(0.5, 0.25)


def test_a_stream_survives_one_dropped_post(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender], fake_time: FakeTime
) -> None:
    """Issue 10 item 10: a 500 on one post mid-stream is retried; the client gets it all."""

    def answer() -> Iterator[str]:
        yield "The "
        yield "answer "
        api.fail("c1", 500)  # the post of the next chunk is dropped once
        yield "is "
        yield "42."

    with make_sender() as sender:
        result = sender.stream("c1", "conv", answer(), message_id="m1")
    assert result.completed
    chunks = [f for f in api.frames_to("c1") if f["type"] == "chat_response"]
    assert "".join(c["content"] for c in chunks) == "The answer is 42."
    assert [c["sequence"] for c in chunks] == list(range(len(chunks)))
    assert chunks[-1]["done"] is True
    assert len(fake_time.sleeps) == 1
    assert len(api.attempts) == len(api.delivered) + 1


def test_stream_names_the_question_it_answers_in_every_frame(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    """``inReplyTo`` is how a client matches an answer to its question (``ChatClient.ask``)."""
    with make_sender() as sender:
        sender.stream("c1", "conv-1", ["a", "b" * 200_000], in_reply_to="question-1")
        sender.stream("c2", "conv-1", ["unmatched"])
    frames = api.frames_to("c1")
    assert len(frames) == 6  # typing, "a", the big chunk split in two, done, typing
    assert {f["inReplyTo"] for f in frames} == {"question-1"}
    assert all("inReplyTo" not in f for f in api.frames_to("c2"))


def test_stream_splits_a_chunk_over_the_message_limit(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    answer = ('Quote "this" — ünïcode \\ and more. ' * 12_000)[: 3 * schema.MAX_MESSAGE_BYTES]
    with make_sender() as sender:
        result = sender.stream("c1", "conv", [answer, "tail"])
    assert result.completed
    assert all(len(data) <= schema.MAX_MESSAGE_BYTES for _, data in api.delivered)
    chunks = [f for f in api.frames_to("c1") if f["type"] == "chat_response"]
    assert len(chunks) > 4
    assert [c["sequence"] for c in chunks] == list(range(len(chunks)))
    assert "".join(c["content"] for c in chunks) == answer + "tail"
    assert chunks[-1]["done"] is True
    assert chunks[-1]["sequence"] == result.chunks


def test_stream_stops_when_the_connection_is_gone(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
) -> None:
    store.add("c1", USER)
    consumed: list[str] = []

    def answer() -> Iterator[str]:
        for part in ("one", "two", "three", "four"):
            consumed.append(part)
            if part == "three":
                api.gone.add("c1")
            yield part

    with make_sender(coalesce_seconds=0) as sender:
        result = sender.stream("c1", "conv", answer())
    assert not result
    assert result.chunks == 2
    assert consumed == ["one", "two", "three"]
    assert store.get("c1") is None
    frames = api.frames_to("c1")
    assert [f.get("content") for f in frames] == [None, "one", "two"]
    assert fake_time.sleeps == []


def test_stream_sends_typing_off_when_the_answer_fails(
    api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    def answer() -> Iterator[str]:
        yield "partial"
        yield " and gathered"
        raise TimeoutError("model timed out")

    with make_sender() as sender, pytest.raises(TimeoutError):
        sender.stream("c1", "conv", answer())
    frames = api.frames_to("c1")
    assert frames[-1] == {**frames[-1], "type": "typing_indicator", "isTyping": False}
    # What was gathered before the failure still goes out, then typing off.
    assert [f.get("content") for f in frames] == [None, "partial", " and gathered", None]


# --- redirect to the user's live connection (answers survive a reconnect) ------------------


def test_stream_continues_on_the_users_new_connection(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
) -> None:
    store.add("old", USER)
    store.add("stranger", OTHER_USER)
    # The client reconnects while the sender waits: its new row appears after the 2nd poll.
    fake_time.on_sleep[2] = lambda: store.add("new", USER)

    def answer() -> Iterator[str]:
        yield "a"
        yield "b"
        api.gone.add("old")  # the socket drops mid-stream
        yield "c"
        yield "d"

    with make_sender(redirect_gone_to_user=True, coalesce_seconds=0) as sender:
        result = sender.stream("old", "conv", answer(), message_id="m1")
    assert result.completed
    assert result.connection_ids == ("new",)
    assert result.chunks == 4
    assert store.get("old") is None
    assert fake_time.sleeps == [REDIRECT_POLL_SECONDS] * 2
    old = api.frames_to("old")
    assert [f.get("sequence") for f in old] == [None, 0, 1]
    new = api.frames_to("new")
    # Everything so far is replayed (typing on, chunks 0-2), then the rest continues there.
    assert [f["type"] for f in new] == ["typing_indicator"] + ["chat_response"] * 5 + [
        "typing_indicator"
    ]
    chunks = [f for f in new if f["type"] == "chat_response"]
    assert [c["sequence"] for c in chunks] == [0, 1, 2, 3, 4]
    assert "".join(c["content"] for c in chunks) == "abcd"
    assert chunks[-1]["done"] is True
    assert {c["messageId"] for c in chunks} == {"m1"}
    assert api.frames_to("stranger") == []


def test_a_stream_follows_the_reconnected_client_not_the_users_other_tab(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
) -> None:
    """``$connect`` of the same client instance recorded that "new" replaces "old" (and closed
    "old"): the redirect waits for "new", while "tab-2", the user's other tab, gets nothing."""
    store.add("old", USER)
    store.add("tab-2", USER)
    store.record_replacement("old", "new")
    fake_time.on_sleep[2] = lambda: store.add("new", USER)  # its $connect stores the row
    api.gone.add("old")
    with make_sender(coalesce_seconds=0) as sender:
        result = sender.stream("old", "conv", ["a", "b"], user_id=USER, redirect_gone_to_user=True)
    assert result.completed
    assert result.connection_ids == ("new",)
    assert "".join(f.get("content", "") for f in api.frames_to("new")) == "ab"
    assert api.frames_to("tab-2") == []


def test_a_replacement_of_a_replacement_is_followed(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    store.add("tab-2", USER)
    store.add("newest", USER)
    store.record_replacement("old", "new")
    store.record_replacement("new", "newest")  # the client reconnected once more
    api.gone.add("old")
    frame = system_frame(SystemEvent.NOTICE, "hi")
    with make_sender() as sender:
        assert sender.send_message("old", frame, user_id=USER, redirect_gone_to_user=True)
    assert [target for target, _ in api.delivered] == ["newest"]


def test_a_replacement_that_never_appears_leaves_the_frames_to_the_users_other_tabs(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
) -> None:
    store.add("tab-2", USER)
    store.record_replacement("old", "new")  # "new" never gets past $connect
    api.gone.add("old")
    frame = system_frame(SystemEvent.NOTICE, "hi")
    with make_sender() as sender:
        assert sender.send_message(
            "old", frame, user_id=USER, redirect_gone_to_user=True, grace_seconds=1
        )
    assert sum(fake_time.sleeps) == pytest.approx(1.0)
    assert [target for target, _ in api.delivered] == ["tab-2"]


def test_redirect_uses_the_given_user_when_disconnect_removed_the_row(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
) -> None:
    store.add("new", USER)  # "old" has no row: $disconnect already deleted it
    api.gone.add("old")
    with make_sender() as sender:
        result = sender.stream(
            "old", "conv", ["x"], user_id=USER, redirect_gone_to_user=True, grace_seconds=1
        )
    assert result.completed
    assert result.connection_ids == ("new",)
    assert [f.get("content") for f in api.frames_to("new")] == [None, "x", "", None]
    assert fake_time.sleeps == []


def test_redirect_gives_up_after_the_grace_period(
    store: ConnectionStore,
    api: FakeManagementApi,
    make_sender: Callable[..., MessageSender],
    fake_time: FakeTime,
) -> None:
    store.add("old", USER)
    api.gone.add("old")
    with make_sender(redirect_gone_to_user=True) as sender:
        result = sender.stream("old", "conv", ["x"], grace_seconds=1.0)
    assert not result
    assert result.connection_ids == ()
    assert sum(fake_time.sleeps) == pytest.approx(1.0)
    assert all(s <= REDIRECT_POLL_SECONDS for s in fake_time.sleeps)
    assert api.delivered == []
    assert api.attempts == ["old"]


def test_send_message_redirects_to_a_live_connection(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    store.add("old", USER)
    store.add("tab-2", USER)
    api.gone.add("old")
    frame = typing_indicator("conv", True)
    with make_sender() as sender:
        assert sender.send_message("old", frame) is False  # redirect is off by default
        store.add("old", USER)
        assert sender.send_message("old", frame, redirect_gone_to_user=True) is True
    # The user was read from the gone row before it was removed.
    assert store.get("old") is None
    assert api.frames_to("tab-2") == [json.loads(frame.to_json())]
    assert metric_total(Metric.STALE_CONNECTIONS_REMOVED) == 2


def test_redirect_skips_connections_that_are_gone_too(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    for connection_id in ("old", "stale", "live"):
        store.add(connection_id, USER)
    api.gone.update({"old", "stale"})
    with make_sender(redirect_gone_to_user=True) as sender:
        assert sender.send_message("old", system_frame(SystemEvent.NOTICE), user_id=USER) is True
    assert [target for target, _ in api.delivered] == ["live"]
    assert store.get("stale") is None
    assert store.get("live") is not None


def test_a_410_during_connect_keeps_the_row_and_the_redirect_tries_again(
    store: ConnectionStore,
    api: FakeManagementApi,
    fake_time: FakeTime,
    make_sender: Callable[..., MessageSender],
) -> None:
    """API Gateway answers 410 to a post while the target's ``$connect`` still runs ("the
    connection is not yet established", DESIGN §4): the user's new connection is not stale."""
    store.add("old", USER)
    store.add("new", USER, int(NOW * 1000))  # connecting right now
    api.gone.update({"old", "new"})
    fake_time.on_sleep[1] = lambda: api.gone.discard("new")  # its $connect returns
    frame = system_frame(SystemEvent.NOTICE, "hi")
    with make_sender() as sender:
        delivered = sender.send_message(
            "old", frame, user_id=USER, redirect_gone_to_user=True, grace_seconds=1
        )
    assert delivered is True
    assert api.attempts == ["old", "new", "new"]
    assert api.frames_to("new") == [json.loads(frame.to_json())]
    assert store.get("old") is None
    assert store.get("new") is not None
    # Only the row removed counts as stale; the one kept while connecting is counted apart.
    assert metric_total(Metric.STALE_CONNECTIONS_REMOVED) == 1
    assert metric_total(Metric.GONE_WHILE_CONNECTING) == 1


def test_a_broadcast_counts_a_connecting_target_as_kept_not_removed(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    store.add("gone", USER)
    store.add("connecting", USER, int(NOW * 1000))
    store.add("live", USER)
    api.gone.update({"gone", "connecting"})
    with make_sender() as sender:
        result = sender.broadcast_to_user(USER, system_frame(SystemEvent.NOTICE))
    assert result == BroadcastResult(sent=1, gone=2, failed=0)
    assert store.get("gone") is None
    assert store.get("connecting") is not None
    assert metric_total(Metric.STALE_CONNECTIONS_REMOVED) == 1
    assert metric_total(Metric.GONE_WHILE_CONNECTING) == 1


def test_a_410_for_a_row_already_deleted_counts_as_neither(
    store: ConnectionStore, api: FakeManagementApi, make_sender: Callable[..., MessageSender]
) -> None:
    """``$disconnect`` deleted the row before the post's 410: nothing was removed here."""
    api.gone.add("closed")
    with make_sender() as sender:
        assert sender.send_message("closed", system_frame(SystemEvent.NOTICE)) is False
    assert metric_total(Metric.STALE_CONNECTIONS_REMOVED) == 0
    assert metric_total(Metric.GONE_WHILE_CONNECTING) == 0
