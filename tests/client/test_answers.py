"""Streamed answers through ChatClient: order, duplicates, and a socket killed mid-stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from client import ConnectionEventKind, Subscription
from runtime.messages import ChatResponse, Frame, TypingIndicator
from tests.client.fake_gateway import (
    FakeGateway,
    answer,
    chunk,
    done,
    new_client,
    next_event,
    run,
)


def test_chunks_out_of_order_and_repeated_make_one_answer_and_are_seen_once() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            frames = client.frames()
            await client.connect(gateway.url, "good")
            await gateway.send_to_all(
                chunk("c1", "a1", 1, "world"),
                chunk("c1", "a1", 0, "hello "),
                chunk("c1", "a1", 1, "world"),
                done("c1", "a1", 2),
                chunk("c1", "a1", 0, "hello "),
            )
            answer = await client.receive_answer("c1")
            assert answer.content == "hello world"
            assert answer.message_id == "a1"
            await gateway.send_to_all(done("c1", "marker", 0))
            seen = []
            async for frame in frames:
                assert isinstance(frame, ChatResponse)
                if frame.message_id == "marker":
                    break
                seen.append(frame.sequence)
            assert seen == [1, 0, 2]
            assert client.duplicate_chunks_dropped == 2

    run(scenario())


def test_an_answer_that_finished_before_the_wait_is_not_missed() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            await gateway.send_to_all(
                chunk("c2", "other", 0, "not this one"),
                done("c2", "other", 1),
                chunk("c1", "a1", 0, "first"),
                done("c1", "a1", 1),
                chunk("c1", "a2", 0, "second"),
                done("c1", "a2", 1),
            )
            assert (await client.receive_answer("c1")).content == "first"
            assert (await client.receive_answer("c1")).content == "second"
            assert (await client.receive_answer("c2")).content == "not this one"

    run(scenario())


def test_ask_sends_waits_for_acceptance_and_returns_the_streamed_answer() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            frames = client.frames()
            gateway.auto_answer = True
            await client.connect(gateway.url, "good")
            answer = await client.ask("c1", "What is RAG?")
            assert answer.content == "echo: What is RAG?"
            typing = [f.is_typing async for f in _until_typing_off(frames)]
            assert typing == [True, False]

    run(scenario())


def test_an_ask_that_timed_out_never_hands_its_late_answer_to_the_next_ask() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            frames = client.frames()
            await client.connect(gateway.url, "good")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await client.ask("c1", "first")
            second = asyncio.create_task(client.ask("c1", "second"))
            await gateway.wait_received(2)
            first_question, second_question = gateway.received
            await gateway.send_to_all(*answer(first_question, "late answer to the first"))
            await gateway.send_to_all(*answer(second_question, "answer to the second"))
            assert (await second).content == "answer to the second"
            # The late answer is not lost: frames() and receive_answer have it.
            late = await client.receive_answer("c1")
            assert late.content == "late answer to the first"
            assert late.in_reply_to == first_question["clientMessageId"]
            async for frame in frames:
                if isinstance(frame, ChatResponse) and frame.done:
                    assert frame.in_reply_to == first_question["clientMessageId"]
                    break

    run(scenario())


def test_concurrent_asks_answered_in_the_other_order_each_get_their_own() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            await client.connect(gateway.url, "good")
            asks = [asyncio.create_task(client.ask("c1", f"question {n}")) for n in range(3)]
            await gateway.wait_received(3)
            for question in reversed(gateway.received):
                await gateway.send_to_all(*answer(question, "re: " + question["content"]))
            contents = [(await a).content for a in asks]
            assert contents == ["re: question 0", "re: question 1", "re: question 2"]

    run(scenario())


async def _until_typing_off(frames: Subscription[Frame]) -> AsyncIterator[TypingIndicator]:
    async for frame in frames:
        if isinstance(frame, TypingIndicator):
            yield frame
            if not frame.is_typing:
                return


def test_a_socket_killed_mid_stream_still_yields_the_complete_answer() -> None:
    """The sender replays the answer so far to the new connection; the client keeps one copy."""

    async def scenario() -> None:
        async with FakeGateway() as gateway, new_client() as client:
            events = client.events()
            await client.connect(gateway.url, "good")
            parts = ["Retrieval-", "augmented ", "generation ", "grounds answers."]
            await gateway.send_to_all(
                chunk("c1", "a1", 0, parts[0]), chunk("c1", "a1", 1, parts[1])
            )
            gateway.abort_all()
            reconnected = await next_event(events, ConnectionEventKind.RECONNECTED)
            assert reconnected.downtime is not None
            assert reconnected.downtime < 3.0
            await gateway.wait_connections(2)
            replay = [chunk("c1", "a1", n, part) for n, part in enumerate(parts)]
            await gateway.send_to_all(*replay, done("c1", "a1", len(parts)))
            answer = await client.receive_answer("c1")
            assert answer.content == "".join(parts)
            assert [c.sequence for c in answer.chunks] == [0, 1, 2, 3, 4]
            assert client.duplicate_chunks_dropped == 2

    run(scenario())
