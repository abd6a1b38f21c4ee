"""frames() and events() in bounded memory: a slow consumer is ended, not served forever."""

from __future__ import annotations

import random

import pytest

from client import ChatClient, ClientConfig, SubscriptionOverflowError
from runtime.messages import ChatResponse
from tests.client.fake_gateway import FakeGateway, chunk, done, run


def test_a_frames_consumer_that_falls_behind_reads_up_to_the_gap_then_an_overflow_error() -> None:
    config = ClientConfig(proxy=None, subscription_limit=3)

    async def scenario() -> None:
        async with FakeGateway() as gateway, ChatClient(config, rng=random.Random(1)) as client:
            slow = client.frames()
            await client.connect(gateway.url, "good")
            await gateway.send_to_all(*(chunk("c1", "a1", n, f"{n} ") for n in range(4)))
            await gateway.send_to_all(done("c1", "a1", 4))
            answer = await client.receive_answer("c1")  # every frame has been handled
            assert answer.content == "0 1 2 3 "
            seen = [await anext(slow) for _ in range(3)]
            assert [f.sequence for f in seen if isinstance(f, ChatResponse)] == [0, 1, 2]
            with pytest.raises(SubscriptionOverflowError, match="3 items behind"):
                await anext(slow)
            async with client.frames() as fresh:  # subscribing again carries on
                await gateway.send_to_all(done("c1", "a2", 0))
                frame = await anext(fresh)
                assert isinstance(frame, ChatResponse)
                assert frame.message_id == "a2"

    run(scenario())
