"""Faults on the local stack, over real sockets: what a client sees, what the table keeps.

- ``$connect`` with DynamoDB failing: the handshake fails with 500 and no row is written;
- SQS failing, or its answer lost after queueing: the project's ``ChatClient`` re-sends with the
  same clientMessageId and the message is in the queue exactly once;
- ``broadcast_to_user`` with one connection's post failing, a stale row gone (410) and its
  clean-up throttled: the other connections are served, the result says what happened;
- the connection list throttled for a moment: the SDK retries, everyone is served;
- the management API answering 429: retried with backoff, delivered once; 410 after a
  ``$disconnect`` whose delete failed: the row is removed by the sender.

Faults are injected into the very boto3 clients the handlers and the sender use
(``injection.py``); the SDK's own retry delays are recorded instead of slept.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import ExitStack
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.exceptions import ClientError
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from client import ChatClient, ClientConfig
from local.gateway import AccessRecord
from local.stack import LocalStack
from runtime import aws as runtime_aws
from runtime import schema
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore
from runtime.messages import ErrorFrame, SystemEvent, system_frame
from runtime.sender import BroadcastResult, MessageSender
from tests.reliability.figures import Figures
from tests.reliability.injection import AwsFault, LostResponse, SdkSleeps
from tests.support import connection_rows, queued_ids, wait_until

BASE_BACKOFF_SECONDS = 0.05
injected = Figures("faults: local stack")


@pytest.fixture(scope="module")
def stack(stack: LocalStack) -> LocalStack:
    """Warm the handlers' cached clients, so that the faults below go into those very ones."""
    with connect(stack.connect_url("warm-up"), open_timeout=30) as ws:
        ws.send('{"action":"ping"}')
        assert json.loads(ws.recv(timeout=30))["event"] == "pong"
    return stack


@pytest.fixture(autouse=True)
def sdk_sleeps(monkeypatch: pytest.MonkeyPatch) -> SdkSleeps:
    return SdkSleeps().install(monkeypatch)


def sdk_attempts(client: Any) -> int:
    """How many times the SDK sends a call that keeps failing (``max_attempts`` counts retries)."""
    retries = client.meta.config.retries or {}
    total = retries.get("total_max_attempts")
    return int(total) if total is not None else int(retries.get("max_attempts", 4)) + 1


def to(connection_id: str) -> Any:
    """An ``AwsFault`` filter: management API calls addressed to ``connection_id``."""
    return lambda request: unquote(request.url).endswith(f"/@connections/{connection_id}")


# --- $connect --------------------------------------------------------------------------------


def test_connect_with_dynamodb_failing_is_a_500_handshake_and_no_row(
    stack: LocalStack, store: ConnectionStore, access_log: list[AccessRecord]
) -> None:
    with (
        AwsFault(runtime_aws.dynamodb(), "TransactWriteItems", "ThrottlingException", 400) as fault,
        pytest.raises(InvalidStatus) as refused,
        connect(stack.connect_url("fault-connect"), open_timeout=30),
    ):
        pass
    injected["$connect over the gateway: DynamoDB TransactWriteItems throttled"] += fault.calls
    assert refused.value.response.status_code == 500
    assert fault.calls == sdk_attempts(runtime_aws.dynamodb())
    assert store.list_for_user("fault-connect") == []
    assert access_log[-1].routeKey == "$connect"
    assert access_log[-1].status == 500


# --- chat_message and the client's re-send ---------------------------------------------------


async def _chat_once(stack: LocalStack, user: str, client_message_id: str) -> list[Any]:
    """Send one chat message with ChatClient until accepted; the frames the client received."""
    config = ClientConfig(proxy=None, accept_timeout=60.0)
    async with ChatClient(config) as client:
        frames = client.frames()
        await client.connect(stack.ws_url, lambda: stack.token_for(user))
        await client.send_chat("conv-faults", "a question", client_message_id=client_message_id)
        accepted = await asyncio.wait_for(client.wait_accepted(client_message_id), 60)
        assert accepted.client_message_id == client_message_id
        received = []
        async for frame in frames:
            received.append(frame)
            if getattr(frame, "event", None) is SystemEvent.ACCEPTED:
                return received
    raise AssertionError("the accepted frame was not seen")


def test_sqs_failing_is_resent_by_the_client_and_queued_once(stack: LocalStack) -> None:
    queued_ids(stack.aws)
    # One handler invocation's worth of attempts fails: the client's re-send succeeds.
    sqs = runtime_aws.sqs()
    with AwsFault(sqs, "SendMessage", "ServiceUnavailable", 503, times=sdk_attempts(sqs)) as fault:
        frames = asyncio.run(_chat_once(stack, "fault-sqs", "m-sqs-down"))
    injected["chat_message over the gateway: SQS 503, client re-send"] += fault.calls
    errors = [f for f in frames if isinstance(f, ErrorFrame)]
    assert [(e.code.value, e.retryable, e.client_message_id) for e in errors] == [
        ("SERVICE_UNAVAILABLE", True, "m-sqs-down")
    ]
    assert queued_ids(stack.aws) == ["m-sqs-down"]


def test_an_sqs_answer_lost_after_queueing_is_resent_and_queued_once(stack: LocalStack) -> None:
    queued_ids(stack.aws)
    with LostResponse(runtime_aws.sqs(), "SendMessage") as lost:
        frames = asyncio.run(_chat_once(stack, "fault-lost", "m-answer-lost"))
    injected["chat_message over the gateway: SQS answer lost, client re-send"] += lost.calls
    assert lost.calls == 1
    assert sum(isinstance(f, ErrorFrame) for f in frames) == 1
    assert queued_ids(stack.aws) == ["m-answer-lost"]  # the second copy was deduplicated


# --- broadcast_to_user -----------------------------------------------------------------------


def _open(
    stack: LocalStack, store: ConnectionStore, exits: ExitStack, user: str, count: int
) -> dict[str, ClientConnection]:
    """``count`` connections of ``user``, by connection id (each found as its new row)."""
    sockets: dict[str, ClientConnection] = {}
    for _ in range(count):
        known = {row.connection_id for row in store.list_for_user(user)}
        ws = exits.enter_context(connect(stack.connect_url(user), open_timeout=30))
        [new] = {row.connection_id for row in store.list_for_user(user)} - known
        sockets[new] = ws
    return sockets


def _sender(stack: LocalStack, **options: Any) -> MessageSender:
    """A sender as the RAG stack runs one, with a connections store and a management client of
    its own (so that faults injected into them touch nobody else)."""
    store = ConnectionStore(StoreConfig(stack.aws.table_name), client=stack.aws.dynamodb())
    management = stack.aws.management_api(stack.management_endpoint)
    return MessageSender(store, client=management, **options)


def test_broadcast_serves_the_others_when_one_post_fails_and_a_cleanup_is_throttled(
    stack: LocalStack, store: ConnectionStore
) -> None:
    user = "fault-broadcast"
    notice = system_frame(SystemEvent.NOTICE, "maintenance at noon")
    with ExitStack() as exits:
        sockets = _open(stack, store, exits, user, 3)
        # Connected a minute ago, its $disconnect never ran: the gateway says 410.
        store.add("StaleConnId0=", user, int((time.time() - 60) * 1000))
        broken = list(sockets)[1]
        sender = exits.enter_context(_sender(stack))
        with (
            AwsFault(
                sender.client, "PostToConnection", "InternalServerError", 500, only=to(broken)
            ) as post_fault,
            AwsFault(sender.store.client, "DeleteItem", "ThrottlingException", 400) as cleanup,
        ):
            result = sender.broadcast_to_user(user, notice)
        injected["broadcast: one connection's post 500"] += post_fault.calls
        injected["broadcast: a gone row's clean-up throttled"] += cleanup.calls
        assert result == BroadcastResult(sent=2, gone=1, failed=1)
        assert cleanup.calls == sdk_attempts(sender.store.client)
        assert store.get("StaleConnId0=") is not None  # left for the next 410, or its TTL
        for connection_id, ws in sockets.items():
            if connection_id != broken:
                assert json.loads(ws.recv(timeout=10))["message"] == "maintenance at noon"
        # The faults gone, the next broadcast reaches all three and removes the stale row.
        assert sender.broadcast_to_user(user, notice) == BroadcastResult(3, 1, 0)
        assert store.get("StaleConnId0=") is None
        for ws in sockets.values():
            assert json.loads(ws.recv(timeout=10))["message"] == "maintenance at noon"


def test_broadcast_with_the_connection_list_throttled_for_a_moment_serves_everyone(
    stack: LocalStack, store: ConnectionStore, sdk_sleeps: SdkSleeps
) -> None:
    user = "fault-list"
    with ExitStack() as exits:
        sockets = _open(stack, store, exits, user, 2)
        sender = exits.enter_context(_sender(stack))
        with AwsFault(sender.store.client, "Query", "ThrottlingException", 400, times=2) as fault:
            result = sender.broadcast_to_user(user, system_frame(SystemEvent.NOTICE, "hello"))
        injected["broadcast: connection list throttled twice"] += fault.calls
        assert result == BroadcastResult(sent=2, gone=0, failed=0)
        assert len(sdk_sleeps.delays) == 2  # the SDK backed off, then read the list
        # Throttled past the SDK's retries there is nobody to send to: the caller hears it.
        with (
            AwsFault(sender.store.client, "Query", "ThrottlingException", 400) as fault,
            pytest.raises(ClientError),
        ):
            sender.broadcast_to_user(user, system_frame(SystemEvent.NOTICE, "not sent"))
        injected["broadcast: connection list throttled throughout"] += fault.calls
        for ws in sockets.values():
            assert json.loads(ws.recv(timeout=10))["message"] == "hello"
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.3)


# --- the management API: 429 and 410 ---------------------------------------------------------


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def assert_backoff(delays: list[float]) -> None:
    """Exponential with equal jitter: retry ``n`` waits between half and all of base * 2**n."""
    for attempt, delay in enumerate(delays):
        ceiling = BASE_BACKOFF_SECONDS * 2**attempt
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)


def test_management_api_429_is_retried_with_backoff_and_delivered_once(
    stack: LocalStack, store: ConnectionStore
) -> None:
    sleep = RecordingSleep()
    # The production client configuration (runtime/aws.py), as the RAG stack's sender has it.
    management = runtime_aws.management_api(stack.management_endpoint)
    with ExitStack() as exits:
        [(connection_id, ws)] = _open(stack, store, exits, "fault-429", 1).items()
        sender = exits.enter_context(MessageSender(store, client=management, sleep=sleep))
        with AwsFault(management, "PostToConnection", "LimitExceededException", 429, times=2) as f:
            assert sender.send_message(connection_id, system_frame(SystemEvent.NOTICE, "once"))
        injected["management API 429 twice, then delivered"] += f.calls
        assert f.calls == 2
        assert sleep.delays  # the sender backed off
        assert_backoff(sleep.delays)
        assert json.loads(ws.recv(timeout=10))["message"] == "once"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # delivered exactly once


def test_management_api_429_throughout_gives_up_after_the_retries_without_raising(
    stack: LocalStack, store: ConnectionStore
) -> None:
    sleep = RecordingSleep()
    management = runtime_aws.management_api(stack.management_endpoint)
    with ExitStack() as exits:
        [(connection_id, _)] = _open(stack, store, exits, "fault-429-always", 1).items()
        sender = exits.enter_context(
            MessageSender(store, client=management, sleep=sleep, max_retries=3)
        )
        with AwsFault(management, "PostToConnection", "LimitExceededException", 429) as fault:
            assert not sender.send_message(connection_id, system_frame(SystemEvent.NOTICE, "never"))
        injected["management API 429 throughout"] += fault.calls
        assert len(sleep.delays) == 3
        assert_backoff(sleep.delays)
        assert store.get(connection_id) is not None  # throttled is not gone: the row stays


def test_the_management_client_leaves_429_retries_to_the_sender(
    stack: LocalStack, store: ConnectionStore
) -> None:
    management = runtime_aws.management_api(stack.management_endpoint)
    with ExitStack() as exits:
        [(connection_id, _)] = _open(stack, store, exits, "fault-429-count", 1).items()
        sender = exits.enter_context(
            MessageSender(store, client=management, sleep=RecordingSleep())
        )
        with AwsFault(management, "PostToConnection", "LimitExceededException", 429) as fault:
            sender.send_message(connection_id, system_frame(SystemEvent.NOTICE, "never"))
        assert fault.calls == sender.max_retries + 1


def test_410_after_a_failed_disconnect_removes_the_row(
    stack: LocalStack, store: ConnectionStore
) -> None:
    dynamodb = runtime_aws.dynamodb()
    # The tests before closed their sockets; a $disconnect of theirs still running would meet
    # the fault below too.
    wait_until(lambda: not connection_rows(stack.aws), timeout=30)
    # $disconnect's delete is throttled past the SDK's retries: the row outlives the socket.
    with AwsFault(dynamodb, "DeleteItem", "ThrottlingException", 400) as fault:
        with ExitStack() as exits:
            [(connection_id, _)] = _open(stack, store, exits, "fault-410", 1).items()
        wait_until(lambda: fault.calls == sdk_attempts(dynamodb), timeout=30)
    injected["$disconnect over the gateway: DynamoDB DeleteItem throttled"] += fault.calls
    assert store.get(connection_id) is not None
    # Seen once the connection is older than a $connect can take: only then is a 410 staleness.
    later = ConnectionStore(
        StoreConfig(stack.aws.table_name),
        client=stack.aws.dynamodb(),
        clock=lambda: time.time() + schema.INTEGRATION_TIMEOUT_SECONDS,
    )
    management = stack.aws.management_api(stack.management_endpoint)
    with MessageSender(later, client=management) as sender:
        assert not sender.send_message(connection_id, system_frame(SystemEvent.NOTICE, "anyone?"))
    assert store.get(connection_id) is None  # the 410 removed it
