"""Fan-out of frames and connection events to any number of async iterators.

A subscription starts buffering when it is created, not when it is first iterated, so nothing
published between ``client.frames()`` and the first ``__anext__`` is missed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Subscription(Generic[T]):
    """One consumer's view: every item published after it was created, in order.

    Iteration ends when the publisher closes cleanly and raises the publisher's error when it
    closes with one (``AuthenticationError`` after a rejected token, for example). Call
    ``close()`` (or leave an ``async with`` block) to stop receiving.
    """

    def __init__(self, fanout: Fanout[T]) -> None:
        self._fanout = fanout
        self._items: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._ended = False
        self._error: BaseException | None = None

    def _push(self, item: T) -> None:
        self._items.append(item)
        self._wakeup.set()

    def _end(self, error: BaseException | None) -> None:
        self._ended = True
        self._error = error
        self._wakeup.set()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()

    def close(self) -> None:
        self._fanout.unsubscribe(self)
        self._end(None)
        self._items.clear()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class Fanout(Generic[T]):
    """Publishes each item to every live subscription."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription[T]] = []
        self._closed = False
        self._error: BaseException | None = None

    def subscribe(self) -> Subscription[T]:
        subscription = Subscription(self)
        if self._closed:
            subscription._end(self._error)
        else:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[T]) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, item: T) -> None:
        for subscription in self._subscriptions:
            subscription._push(item)

    def close(self, error: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = error
        for subscription in self._subscriptions:
            subscription._end(error)
        self._subscriptions.clear()
