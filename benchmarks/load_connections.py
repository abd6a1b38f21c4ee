"""The load client's connections: opened at a paced rate with dev tokens, every failure
counted by kind, closed together (``benchmarks.load_client``'s scenarios share them)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from runtime.schema import NEW_CONNECTIONS_PER_SECOND

CONNECT_TIMEOUT_SECONDS = 30.0
CONNECT_CONCURRENCY = 50  # connection attempts in flight at once
# Below API Gateway's 500 new connections/s per account, which the local gateway enforces too.
CONNECT_RATE_PER_SECOND = 0.8 * NEW_CONNECTIONS_PER_SECOND


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition`` until it holds or ``seconds`` pass (frames arrive on many sockets at
    once: one cheap check every few milliseconds beats an event set per frame)."""
    deadline = time.perf_counter() + seconds
    while not condition() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


class Tokens:
    """Dev tokens for the connection URLs, or none."""

    def __init__(self, state_dir: Path | None) -> None:
        self._issuer: Any = None
        if state_dir is not None:
            from local.tokens import DevTokens

            self._issuer = DevTokens.load_or_create(state_dir)

    def url(self, base: str, user_id: str) -> str:
        if self._issuer is None:
            return base
        return f"{base}?token={quote(self._issuer.issue(user_id), safe='')}"


@dataclass
class Errors:
    """Every way a request or a connection can fail, counted by kind."""

    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


async def _open(
    url: str, connect_ms: list[float], errors: Errors, gate: asyncio.Semaphore, delay: float
) -> ClientConnection | None:
    await asyncio.sleep(delay)
    async with gate:
        began = time.perf_counter()
        try:
            websocket = await connect(
                url,
                open_timeout=CONNECT_TIMEOUT_SECONDS,
                ping_interval=None,
                compression=None,
                max_size=None,
            )
        except InvalidStatus as exc:
            errors.add(f"connect: HTTP {exc.response.status_code}")
            return None
        except Exception as exc:
            errors.add(f"connect: {type(exc).__name__}")
            return None
        connect_ms.append((time.perf_counter() - began) * 1000)
        return websocket


async def open_all(urls: list[str], errors: Errors) -> tuple[list[ClientConnection], list[float]]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    connect_ms: list[float] = []
    opened = await asyncio.gather(
        *(
            _open(url, connect_ms, errors, gate, index / CONNECT_RATE_PER_SECOND)
            for index, url in enumerate(urls)
        )
    )
    return [websocket for websocket in opened if websocket is not None], connect_ms


async def close_all(websockets: list[ClientConnection]) -> None:
    async def close(websocket: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(), 5)

    await asyncio.gather(*(close(websocket) for websocket in websockets))
