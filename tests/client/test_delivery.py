"""Nothing lost, nothing queued twice: ChatClient's delivery against the fake gateway.

The fake gateway queues each clientMessageId once, as the FIFO queue's deduplication id does;
``gateway.received`` records every copy the client sent, ``gateway.queue`` what was queued.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from client import (
    ChatClientError,
    ClientConfig,
    ConnectionEventKind,
    MessageNotAcceptedError,
    MessageRejectedError,
    Subscription,
)
from client.delivery import RETRY_WITHOUT_HINT_SECONDS
from runtime.messages import (
    ErrorCode,
    ErrorFrame,
    Frame,
    MessageTooLargeError,
    SystemEvent,
    SystemFrame,
    error_frame,
    system_frame,
)
from tests.client.fake_gateway import (
    FakeGateway,
    new_client,
    next_event,
    retryable_error,
    run,
)


def received_ids(gateway: FakeGateway) -> list[str]:
    return [message["clientMessageId"] for message in gateway.received]


def test_a_chat_message_carries_a_client_message_id_and_is_accepted_once() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            message_id = await client.send_chat("c1", "hello")
            accepted = await client.wait_accepted(message_id)
            assert accepted.client_message_id == message_id
            assert accepted.conversation_id == "c1"
            assert accepted.message_id == "m-1"
            assert gateway.received == [
                {
                    "action": "chat_message",
                    "conversationId": "c1",
                    "content": "hello",
                    "clientMessageId": message_id,
                }
            ]
            assert client.pending_ids() == ()
            # A late wait on a finished message still gets its outcome.
            assert await client.wait_accepted(message_id) == accepted
            explicit = await client.send_chat("c1", "again", client_message_id="my-id-1")
            assert explicit == "my-id-1"

    run(scenario())


def test_messages_sent_while_disconnected_go_out_in_order_after_the_reconnect() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            events = client.events()
            await client.connect(gateway.url, "good")
            await gateway.stop()
            await next_event(events, ConnectionEventKind.DISCONNECTED)
            sent = [await client.send_chat("c1", f"offline {n}") for n in range(5)]
            assert client.pending_ids() == tuple(sent)
            await gateway.start()
            for message_id in sent:
                await client.wait_accepted(message_id)
            assert gateway.queued_ids() == sent

    run(scenario())


def test_an_accepted_frame_lost_in_a_drop_means_a_resend_that_is_queued_once() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            events = client.events()
            await client.connect(gateway.url, "good")
            gateway.queue_then_abort = 1
            message_id = await client.send_chat("c1", "queued, answer lost")
            reconnected = await next_event(events, ConnectionEventKind.RECONNECTED)
            await client.wait_accepted(message_id)
            assert received_ids(gateway) == [message_id, message_id]  # re-sent, same id
            assert gateway.queued_ids() == [message_id]  # queued once
            assert reconnected.downtime is not None
            assert reconnected.downtime < 3.0

    run(scenario())


def test_a_retryable_error_is_resent_after_retry_after_ms() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            gateway.errors.append(retryable_error(ErrorCode.RATE_LIMITED, retry_after_ms=200))
            loop = asyncio.get_running_loop()
            started = loop.time()
            message_id = await client.send_chat("c1", "rate limited once")
            await client.wait_accepted(message_id)
            assert loop.time() - started >= 0.2  # not before the server's retryAfterMs
            assert received_ids(gateway) == [message_id, message_id]
            assert gateway.queued_ids() == [message_id]

    run(scenario())


def test_a_retryable_error_without_a_hint_is_resent_after_a_second() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            gateway.errors.append(retryable_error(ErrorCode.SERVICE_UNAVAILABLE, None))
            loop = asyncio.get_running_loop()
            started = loop.time()
            message_id = await client.send_chat("c1", "queue was down")
            await client.wait_accepted(message_id)
            assert loop.time() - started >= RETRY_WITHOUT_HINT_SECONDS
            assert gateway.queued_ids() == [message_id]

    run(scenario())


def test_a_non_retryable_error_rejects_the_message_without_resending() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            gateway.errors.append(error_frame(ErrorCode.BAD_REQUEST, "content is not allowed"))
            message_id = await client.send_chat("c1", "rejected")
            with pytest.raises(MessageRejectedError, match="BAD_REQUEST: content is not allowed"):
                await client.wait_accepted(message_id)
            assert received_ids(gateway) == [message_id]
            assert client.pending_ids() == ()

    run(scenario())


def test_a_message_with_no_answer_is_resent_after_resend_after() -> None:
    config = ClientConfig(proxy=None, resend_after=0.3)

    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client(config) as client:
            await client.connect(gateway.url, "good")
            gateway.swallow = 1
            message_id = await client.send_chat("c1", "first copy vanishes")
            await client.wait_accepted(message_id)
            assert received_ids(gateway) == [message_id, message_id]
            assert gateway.queued_ids() == [message_id]

    run(scenario())


def test_a_message_never_accepted_raises_after_accept_timeout() -> None:
    config = ClientConfig(proxy=None, accept_timeout=1.0, resend_after=0.3)

    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client(config) as client:
            await client.connect(gateway.url, "good")
            gateway.swallow = 1_000
            gateway.errors.append(retryable_error(ErrorCode.SERVICE_UNAVAILABLE, 100))
            message_id = await client.send_chat("c1", "into the void")
            with pytest.raises(MessageNotAcceptedError) as caught:
                await client.wait_accepted(message_id)
            assert caught.value.client_message_id == message_id
            assert "SERVICE_UNAVAILABLE" in str(caught.value)  # the last error is named
            assert client.pending_ids() == ()
            sent_copies = len(gateway.received)
            assert sent_copies >= 2
            assert set(received_ids(gateway)) == {message_id}
            await asyncio.sleep(0.5)
            assert len(gateway.received) == sent_copies  # given up: no more re-sends

    run(scenario())


def test_an_unknown_connection_error_replaces_the_connection_and_resends() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            events = client.events()
            await client.connect(gateway.url, "good")
            gateway.errors.append(
                error_frame(ErrorCode.UNKNOWN_CONNECTION, "this connection is not registered")
            )
            message_id = await client.send_chat("c1", "on a stale connection")
            dropped = await next_event(events, ConnectionEventKind.DISCONNECTED)
            assert "not registered" in dropped.reason
            await client.wait_accepted(message_id)
            assert gateway.queued_ids() == [message_id]
            assert len(gateway.handshakes) == 2

    run(scenario())


def test_many_messages_through_repeated_drops_are_each_queued_exactly_once_in_order() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            events = client.events()
            await client.connect(gateway.url, "good")
            sent: list[str] = []
            for round_number in range(5):
                gateway.queue_then_abort = 1 if round_number % 2 else 0
                sent += [await client.send_chat("c1", f"{round_number}-{n}") for n in range(4)]
                gateway.abort_all()
                await next_event(events, ConnectionEventKind.RECONNECTED)
            for message_id in sent:
                await client.wait_accepted(message_id)
            assert gateway.queued_ids() == sent
            assert len(set(received_ids(gateway))) == len(sent)

    run(scenario())


def test_a_large_message_is_fragmented_below_the_frame_limit_and_arrives_whole() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            content = "é" * 40_000  # 80 KB of UTF-8: over the 32 KB frame, under 128 KB
            await client.wait_accepted(await client.send_chat("c1", content))
            assert gateway.received[0]["content"] == content

    run(scenario())


def test_a_message_over_128_kb_or_with_bad_ids_is_refused_before_sending() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            with pytest.raises(
                MessageTooLargeError, match=r"the chat message is .* send less content"
            ):
                await client.send_chat("c1", "x" * 128 * 1024)
            with pytest.raises(ValueError, match="conversationId"):
                await client.send_chat("has spaces", "hello")
            with pytest.raises(ValueError, match="content"):
                await client.send_chat("c1", "")
            with pytest.raises(KeyError, match="unknown clientMessageId"):
                await client.wait_accepted("never-sent")
            gateway.swallow = 1
            message_id = await client.send_chat("c1", "ok")
            with pytest.raises(ValueError, match="already pending"):
                await client.send_chat("c1", "dup", client_message_id=message_id)
            assert client.pending_ids() == (message_id,)

    run(scenario())


def error_from_the_future(*, retryable: bool) -> dict[str, object]:
    """An error frame whose code this client version does not know."""
    frame = json.loads(
        error_frame(ErrorCode.INTERNAL_ERROR, "over quota", retryable=retryable).to_json()
    )
    return {**frame, "code": "QUOTA_EXCEEDED", "retryAfterMs": 100}


def test_an_error_with_an_unknown_code_is_honoured_and_reaches_frames() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            frames = client.frames()
            await client.connect(gateway.url, "good")
            gateway.errors.append(error_from_the_future(retryable=True))
            retried = await client.send_chat("c1", "re-sent after retryAfterMs")
            await client.wait_accepted(retried)
            assert received_ids(gateway) == [retried, retried]
            gateway.errors.append(error_from_the_future(retryable=False))
            rejected = await client.send_chat("c1", "rejected")
            with pytest.raises(MessageRejectedError, match="QUOTA_EXCEEDED: over quota") as caught:
                await client.wait_accepted(rejected)
            assert caught.value.code == "QUOTA_EXCEEDED"
            codes = [f.code async for f in _errors(frames, 2)]
            assert codes == ["QUOTA_EXCEEDED", "QUOTA_EXCEEDED"]

    run(scenario())


def test_a_system_frame_with_an_unknown_event_reaches_frames() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            frames = client.frames()
            await client.connect(gateway.url, "good")
            future = {
                **json.loads(system_frame(SystemEvent.NOTICE, "x").to_json()),
                "event": "draining",
            }
            await gateway.send_to_all(json.dumps(future), "not json", '{"type": "mystery"}')
            await gateway.send_to_all(system_frame(SystemEvent.NOTICE, "marker").to_json())
            seen = []
            async for frame in frames:
                assert isinstance(frame, SystemFrame)
                if frame.message == "marker":
                    break
                seen.append((frame.event, frame.message))
            assert seen == [("draining", "x")]  # the frames outside the protocol are dropped

    run(scenario())


async def _errors(frames: Subscription[Frame], count: int) -> AsyncIterator[ErrorFrame]:
    async for frame in frames:
        if isinstance(frame, ErrorFrame):
            yield frame
            count -= 1
            if count == 0:
                return


def test_every_error_a_caller_can_see_is_a_chat_client_error() -> None:
    """One ``except ChatClientError`` covers the client; each error is also the builtin type
    (ValueError, RuntimeError, KeyError) that describes it."""

    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            with pytest.raises(ChatClientError, match="connect"):
                await client.send_chat("c1", "before connect()")
            with pytest.raises(ChatClientError, match="ws:// or wss://"):
                await new_client().connect("http://127.0.0.1:1/dev", "good")
            await client.connect(gateway.url, "good")
            with pytest.raises(ChatClientError, match="once"):
                await client.connect(gateway.url, "good")
            with pytest.raises(ChatClientError, match="conversationId"):
                await client.send_chat("has spaces", "hello")
            with pytest.raises(ChatClientError, match="send less content"):
                await client.send_chat("c1", "x" * 128 * 1024)
            with pytest.raises(ChatClientError, match="unknown clientMessageId"):
                await client.wait_accepted("never-sent")
            gateway.swallow = 1
            pending = await client.send_chat("c1", "ok")
            with pytest.raises(ChatClientError, match="already pending"):
                await client.send_chat("c1", "dup", client_message_id=pending)

    run(scenario())
