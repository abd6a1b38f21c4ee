"""Run an async service (a ``Gateway``, a ``LocalStack``) on its own event-loop thread.

Synchronous code — pytest tests, benchmarks, a boto3 script — then talks to it over real
sockets without blocking the loop that serves it::

    with in_background(Gateway(routes, GatewaySettings(port=0))) as gateway:
        ...  # websockets.sync.client.connect(gateway.ws_url), boto3 calls...
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, TypeVar

from local.loop import new_event_loop

T = TypeVar("T")
R = TypeVar("R")


class Background(Generic[T]):
    """A context manager entering ``service`` on a private loop in a daemon thread."""

    def __init__(self, service: AbstractAsyncContextManager[T], name: str = "local-loop") -> None:
        self._service = service
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def call(self, coroutine: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        """Run a coroutine on the service's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def __enter__(self) -> T:
        self._thread.start()
        try:
            return self.call(self._service.__aenter__())
        except BaseException:
            self._stop_loop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.call(self._service.__aexit__(exc_type, exc, traceback))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def in_background(service: AbstractAsyncContextManager[T]) -> Background[T]:
    return Background(service)
