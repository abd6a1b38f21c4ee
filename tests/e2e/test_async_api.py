"""``async with LocalStack(...)``: the in-process API the benchmarks and client tests use, and
a dev token that survives a restart of the stack (same state folder, same key)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from websockets.asyncio.client import connect

from local.stack import LocalStack
from local.tokens import DevTokens

T = TypeVar("T")


async def _ping(url: str) -> str:
    async with connect(url) as ws:
        await ws.send('{"action":"ping"}')
        answer: str = json.loads(await asyncio.wait_for(ws.recv(), 10))["event"]
        return answer


async def _restart_with_the_same_token(state_dir: str) -> list[str]:
    token = DevTokens.load_or_create(state_dir).issue("henry")  # `python -m local token`
    answers = []
    for _ in range(2):
        async with LocalStack(port=0, state_dir=state_dir, access_log=lambda record: None) as stack:
            assert stack.ws_url.startswith("ws://127.0.0.1:")
            assert stack.management_endpoint.endswith("/dev")
            answers.append(await _ping(f"{stack.ws_url}?token={token}"))
    return answers


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Like asyncio.run, but leaves the thread's current event loop alone: later tests (Pulumi
    mocks) still find one."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def test_async_stack_accepts_the_same_token_after_a_restart(tmp_path):
    before = dict(os.environ)
    assert _run(_restart_with_the_same_token(str(tmp_path))) == ["pong", "pong"]
    assert dict(os.environ) == before  # the handlers' environment was restored
