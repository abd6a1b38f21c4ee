"""Sends belong to the client: a stalled peer, a cancelled caller or a failed send never leave
the connection stuck or broken, and ``close()`` ends the client even when it is cancelled."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ProtocolError

from client import ClientClosedError, ClientConfig, ConnectionEventKind
from tests.client.fake_gateway import (
    STALLING_MESSAGES,
    FakeGateway,
    at_once,
    big_message,
    new_client,
    next_event,
    run,
)


def test_a_peer_that_stops_reading_is_replaced_and_send_chat_never_waits() -> None:
    """A silently dead path: big sends block on the full write buffer, and the ping behind
    them can never go out. The ping's send and its answer together get ``pong_timeout``."""
    config = ClientConfig(proxy=None, ping_interval=0.2, pong_timeout=1.0)

    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client(config) as client:
            events = client.events()
            await client.connect(gateway.url, "good")
            gateway.stall()
            sent = [
                await at_once(client.send_chat("c1", big_message(n)))
                for n in range(STALLING_MESSAGES)
            ]
            dropped = await next_event(events, ConnectionEventKind.DISCONNECTED)
            assert "no answer to ping within 1 s" in dropped.reason
            await next_event(events, ConnectionEventKind.RECONNECTED)
            for message_id in sent:
                await client.wait_accepted(message_id)
            assert gateway.queued_ids() == sent

    run(scenario())


def test_a_caller_cancelled_in_the_middle_of_a_send_leaves_the_connection_usable() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            gateway.stall()
            callers = [
                asyncio.create_task(client.send_chat("c1", big_message(n)))
                for n in range(STALLING_MESSAGES)
            ]
            await asyncio.sleep(0.2)  # long enough for the buffers to fill
            for caller in callers:
                caller.cancel()
            gateway.resume()
            after = await client.send_chat("c1", "after the cancellation")
            await client.wait_accepted(after)
            assert client.connected
            assert len(gateway.handshakes) == 1  # the same connection carried everything
            handed_over = [c.result() for c in callers if not c.cancelled()]
            for message_id in handed_over:
                await client.wait_accepted(message_id)
            assert gateway.queued_ids() == [*handed_over, after]

    run(scenario())


def test_a_send_error_drops_the_connection_and_the_message_goes_out_on_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send = ClientConnection.send
    failures = [ProtocolError("expected a continuation frame")]

    async def failing_send(
        self: ClientConnection, message: object, text: bool | None = None
    ) -> None:
        if failures:
            raise failures.pop()
        await send(self, message, text=text)  # type: ignore[arg-type]

    monkeypatch.setattr(ClientConnection, "send", failing_send)

    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            events = client.events()
            await client.connect(gateway.url, "good")
            message_id = await client.send_chat("c1", "first send fails")
            dropped = await next_event(events, ConnectionEventKind.DISCONNECTED)
            assert "sending failed: ProtocolError" in dropped.reason
            await next_event(events, ConnectionEventKind.RECONNECTED)
            await client.wait_accepted(message_id)
            assert gateway.queued_ids() == [message_id]

    run(scenario())


def test_close_cancelled_half_way_still_ends_the_client_and_a_second_close_completes_it() -> None:
    config = ClientConfig(proxy=None, close_timeout=1.0)

    async def scenario() -> None:
        async with FakeGateway() as gateway:
            client = new_client(config)
            frames = client.frames()
            events = client.events()
            await client.connect(gateway.url, "good")
            gateway.swallow = 1
            message_id = await client.send_chat("c1", "unanswered")
            answer = asyncio.create_task(client.receive_answer("c1"))
            gateway.stall()  # the closing handshake waits for a close frame that never comes
            closing = asyncio.create_task(client.close())
            await asyncio.sleep(0.1)
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing  # the caller's cancellation is not swallowed
            with pytest.raises(ClientClosedError):
                await client.wait_accepted(message_id)
            with pytest.raises(ClientClosedError):
                await answer
            with pytest.raises(ClientClosedError):
                await client.send_chat("c1", "too late")
            assert [f async for f in frames] == []
            assert [e.kind async for e in events][-1] is ConnectionEventKind.CLOSED
            await client.close()  # waits for the handshake to time out and the socket to go
            assert not client.connected

    run(scenario())
