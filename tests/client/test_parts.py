"""The client's pure parts: backoff, configuration, token URL, answer assembly, fan-out."""

from __future__ import annotations

import asyncio
import random
from urllib.parse import parse_qs, urlsplit

import pytest

from client.answers import AnswerAssembler, AnswerInbox
from client.backoff import Backoff
from client.config import ClientConfig
from client.errors import SubscriptionOverflowError
from client.handshake import fetch_token, url_with_token
from client.subscriptions import Fanout
from runtime.messages import ChatResponse, chat_response
from tests.client.fake_gateway import run


def piece(
    sequence: int, content: str, *, done: bool = False, message_id: str = "m1"
) -> ChatResponse:
    return chat_response("c1", content, message_id=message_id, sequence=sequence, done=done)


# --- Backoff -------------------------------------------------------------------------------


def test_backoff_first_attempt_within_250_ms_then_full_jitter_under_a_growing_capped_ceiling() -> (
    None
):
    backoff = Backoff(rng=random.Random(7))
    ceilings = [backoff.ceiling(n) for n in range(6)]
    assert ceilings == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    for _ in range(200):
        delays = backoff.delays()
        drawn = [next(delays) for _ in range(6)]
        assert all(0.0 <= d <= c for d, c in zip(drawn, ceilings, strict=True))
    many = Backoff(rng=random.Random(1)).delays()
    capped = [next(many) for _ in range(1000)][4:]
    # Full jitter: delays spread over the whole range under the cap, not bunched at its top.
    assert min(capped) < 0.2
    assert max(capped) > 1.8


def test_backoff_ceiling_does_not_overflow_after_many_attempts() -> None:
    assert Backoff().ceiling(10_000) == 2.0


@pytest.mark.parametrize(("initial", "cap"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.5)])
def test_backoff_rejects_bad_delays(initial: float, cap: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        Backoff(initial, cap)


# --- Configuration ------------------------------------------------------------------------


def test_config_defaults_keep_the_connection_alive_and_deduplicated() -> None:
    config = ClientConfig()
    assert config.ping_interval == 300.0
    assert config.reconnect_initial_delay == 0.25
    assert config.accept_timeout <= 300


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ping_interval", 600.0, "idle timeout"),
        ("ping_interval", 0.0, "ping_interval must be a number > 0"),
        ("accept_timeout", 301.0, "deduplication window"),
        ("pong_timeout", -1.0, "pong_timeout"),
        ("reconnect_max_delay", 0.1, "reconnect_max_delay must be at least"),
        ("answer_backlog", 0, "answer_backlog"),
    ],
)
def test_config_names_the_bad_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientConfig(**{field: value})  # type: ignore[arg-type]


# --- Token in the URL ---------------------------------------------------------------------


def test_url_with_token_sets_the_query_parameter_and_keeps_others() -> None:
    url = url_with_token("wss://api.example.test/dev?lang=en&token=old", "a.b+c/=")
    parts = urlsplit(url)
    assert parts.path == "/dev"
    assert parse_qs(parts.query) == {"lang": ["en"], "token": ["a.b+c/="]}


def test_url_with_token_rejects_non_websocket_urls() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        url_with_token("https://api.example.test/dev", "t")


def test_fetch_token_accepts_a_string_a_function_and_a_coroutine_function() -> None:
    async def async_provider() -> str:
        return "async-token"

    async def scenario() -> list[str]:
        return [
            await fetch_token("plain"),
            await fetch_token(lambda: "sync-token"),
            await fetch_token(async_provider),
        ]

    assert run(scenario()) == ["plain", "sync-token", "async-token"]


def test_fetch_token_rejects_an_empty_token() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        run(fetch_token(lambda: ""))


# --- Answer assembly ----------------------------------------------------------------------


def test_assembler_releases_text_in_sequence_order_and_completes_at_done() -> None:
    assembler = AnswerAssembler()
    assert assembler.add(piece(1, "lo ")).text == ""
    first = assembler.add(piece(0, "Hel"))
    assert (first.text, first.answer) == ("Hello ", None)
    assert assembler.add(piece(3, "", done=True)).answer is None  # sequence 2 still missing
    last = assembler.add(piece(2, "world"))
    assert last.text == "world"
    assert last.answer is not None
    assert last.answer.content == "Hello world"
    assert [c.sequence for c in last.answer.chunks] == [0, 1, 2, 3]


def test_assembler_drops_duplicates_by_conversation_message_and_sequence() -> None:
    assembler = AnswerAssembler()
    assert not assembler.add(piece(0, "a")).duplicate
    assert assembler.add(piece(0, "a")).duplicate
    # Another message of the same conversation, same sequence: not a duplicate.
    assert not assembler.add(piece(0, "x", message_id="m2")).duplicate
    assert not assembler.add(piece(1, "", done=True)).duplicate
    # After done, a late replay of the whole answer is dropped chunk by chunk.
    assert assembler.add(piece(0, "a")).duplicate
    assert assembler.add(piece(1, "", done=True)).duplicate
    # Chunks past the done frame are dropped too.
    assert assembler.add(piece(1, "", done=True, message_id="m2")).answer is not None
    assert assembler.add(piece(2, "late", message_id="m2")).duplicate


def test_assembler_takes_content_carried_by_the_done_frame() -> None:
    outcome = AnswerAssembler().add(piece(0, "whole answer", done=True))
    assert outcome.answer is not None
    assert outcome.answer.content == "whole answer"
    assert outcome.text == "whole answer"


def test_assembler_names_the_question_of_the_last_chunk_that_names_one() -> None:
    """The browser client reads ``inReplyTo`` the same way (web/test/client.test.mjs)."""
    assembler = AnswerAssembler()
    for sequence, question in enumerate(("first", "second")):
        assembler.add(
            chat_response("c1", "x", message_id="m1", sequence=sequence, in_reply_to=question)
        )
    outcome = assembler.add(chat_response("c1", "z", message_id="m1", sequence=2, done=True))
    assert outcome.answer is not None
    assert outcome.answer.in_reply_to == "second"


def test_assembler_memory_is_bounded() -> None:
    assembler = AnswerAssembler(remember=2)
    for n in range(5):
        assembler.add(piece(0, "x", message_id=f"unfinished-{n}"))
        assembler.add(piece(0, "y", done=True, message_id=f"finished-{n}"))
    assert len(assembler._partials) == 2
    assert len(assembler._finished) == 2


def test_assembler_gives_up_the_oldest_unfinished_answers_beyond_the_byte_limit() -> None:
    assembler = AnswerAssembler(max_unfinished_bytes=10)
    assembler.add(piece(0, "ééé", message_id="old"))  # 6 bytes of UTF-8
    assert assembler.unfinished_bytes == 6
    assembler.add(piece(0, "new!!", message_id="new"))  # 11 bytes in all: "old" is given up
    assert assembler.unfinished_bytes == 5
    late = assembler.add(piece(1, "", done=True, message_id="old"))
    assert (late.duplicate, late.answer) == (False, None)  # still a frame, never an answer
    finished = assembler.add(piece(1, "", done=True, message_id="new"))
    assert finished.answer is not None
    assert finished.answer.content == "new!!"
    assert assembler.unfinished_bytes == 0


def test_inbox_hands_out_answers_per_conversation_in_order_and_fails_waiters() -> None:
    async def scenario() -> None:
        inbox = AnswerInbox()
        assembler = AnswerAssembler()
        for message_id in ("m1", "m2"):
            answer = assembler.add(piece(0, message_id, done=True, message_id=message_id)).answer
            assert answer is not None
            inbox.put(answer)
        assert (await inbox.get("c1")).message_id == "m1"
        assert (await inbox.get("c1")).message_id == "m2"
        waiter = asyncio.create_task(inbox.get("c1"))
        other = asyncio.create_task(inbox.get("c2"))
        await asyncio.sleep(0)
        answer = assembler.add(piece(0, "m3", done=True, message_id="m3")).answer
        assert answer is not None
        inbox.put(answer)
        assert (await waiter).message_id == "m3"
        inbox.fail(RuntimeError("stopped"))
        with pytest.raises(RuntimeError, match="stopped"):
            await other
        with pytest.raises(RuntimeError, match="stopped"):
            await inbox.get("c1")

    run(scenario())


# --- Fan-out ------------------------------------------------------------------------------


def test_fanout_buffers_from_subscription_and_ends_with_the_publishers_error() -> None:
    async def scenario() -> None:
        fanout: Fanout[int] = Fanout()
        early = fanout.subscribe()
        fanout.publish(1)
        late = fanout.subscribe()
        fanout.publish(2)
        fanout.close(LookupError("gone"))
        assert [await anext(early), await anext(early)] == [1, 2]
        assert await anext(late) == 2
        with pytest.raises(LookupError):
            await anext(early)
        with pytest.raises(LookupError):
            await anext(fanout.subscribe())

    run(scenario())


def test_fanout_subscription_that_falls_behind_ends_with_an_overflow_error() -> None:
    async def scenario() -> None:
        fanout: Fanout[int] = Fanout(limit=3)
        slow = fanout.subscribe()
        for item in range(5):
            fanout.publish(item)
        assert len(fanout) == 0  # dropped by the publisher at the overflow
        assert [await anext(slow) for _ in range(3)] == [0, 1, 2]  # what came before the gap
        with pytest.raises(SubscriptionOverflowError, match="3 items behind"):
            await anext(slow)

    run(scenario())


def test_fanout_forgets_a_subscription_left_by_break_or_aclose() -> None:
    async def scenario() -> None:
        fanout: Fanout[int] = Fanout()
        fanout.publish(0)
        first = fanout.subscribe()
        fanout.publish(1)
        await first.aclose()
        assert len(fanout) == 0
        fanout.subscribe()  # nobody keeps it
        fanout.publish(2)
        assert len(fanout) == 0
        kept = fanout.subscribe()
        fanout.publish(3)

        async def first_item() -> int:
            async for item in fanout.subscribe():
                return item  # leaves the loop early
            raise AssertionError("ended")

        reader = asyncio.create_task(first_item())
        await asyncio.sleep(0)
        assert len(fanout) == 2
        fanout.publish(4)
        assert await reader == 4
        assert len(fanout) == 1
        assert [await anext(kept), await anext(kept)] == [3, 4]

    run(scenario())


def test_fanout_subscription_closed_by_its_consumer_stops_receiving() -> None:
    async def scenario() -> None:
        fanout: Fanout[int] = Fanout()
        async with fanout.subscribe() as subscription:
            fanout.publish(1)
        fanout.publish(2)
        assert [item async for item in subscription] == []

    run(scenario())
