"""Fan-out of frames and connection events to any number of async iterators, in bounded memory.

A subscription starts buffering when it is created, not when it is first iterated, so nothing
published between ``client.frames()`` and the first ``__anext__`` is missed.

Overflow policy: a subscription holds at most ``limit`` unread items. A consumer that falls
further behind is not slowed down or silently skipped: its subscription ends. It still reads
every item buffered before the overflow, then ``SubscriptionOverflowError``; nothing after the
gap is delivered. Subscribe again to carry on from the present.

A subscription leaves its publisher on ``close()``/``aclose()``, at the end of an
``async with`` block, and when nothing refers to it any more (the publisher holds it weakly),
so an ``async for`` left with ``break`` costs nothing afterwards.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import Generic, TypeVar

from client.errors import SubscriptionOverflowError

T = TypeVar("T")

DEFAULT_SUBSCRIPTION_LIMIT = 4096


class Subscription(Generic[T]):
    """One consumer's view: every item published after it was created, in order.

    Iteration ends when the publisher closes cleanly and raises the publisher's error when it
    closes with one (``AuthenticationError`` after a rejected token, for example), or
    ``SubscriptionOverflowError`` once the consumer fell ``limit`` items behind.
    """

    def __init__(self, fanout: Fanout[T], limit: int) -> None:
        self._fanout = fanout
        self._limit = limit
        self._items: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._ended = False
        self._error: BaseException | None = None

    def _push(self, item: T) -> None:
        if len(self._items) >= self._limit:
            self._fanout.unsubscribe(self)
            self._end(SubscriptionOverflowError(self._limit))
            return
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
        """Stop receiving and drop what is buffered; iteration ends."""
        self._fanout.unsubscribe(self)
        self._end(None)
        self._items.clear()

    async def aclose(self) -> None:
        """``close()``, for ``contextlib.aclosing`` and code written for async generators."""
        self.close()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class Fanout(Generic[T]):
    """Publishes each item to every live subscription."""

    def __init__(self, limit: int = DEFAULT_SUBSCRIPTION_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"the subscription limit must be at least 1, got {limit}")
        self._limit = limit
        self._subscriptions: weakref.WeakSet[Subscription[T]] = weakref.WeakSet()
        self._closed = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        """How many subscriptions receive items."""
        return len(self._subscriptions)

    def subscribe(self) -> Subscription[T]:
        subscription = Subscription(self, self._limit)
        if self._closed:
            subscription._end(self._error)
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[T]) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, item: T) -> None:
        for subscription in list(self._subscriptions):
            subscription._push(item)

    def close(self, error: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = error
        for subscription in list(self._subscriptions):
            subscription._end(error)
        self._subscriptions.clear()
