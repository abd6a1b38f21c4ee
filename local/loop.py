"""The event loop local mode runs on: uvloop's where it is installed, else asyncio's.

Measured with the gateway load benchmark's ``ping`` answered without AWS calls (200 messages/s,
100 connections, the same run): uvloop cuts the gateway process's CPU per message by about a
fifth (0.78 → 0.61 ms), most of it in the loop's own wake-ups around each handler invocation.
It does not run on Windows (``requirements-dev.txt`` installs it elsewhere); there the asyncio
loop serves the same way.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # Windows: asyncio's loop
    uvloop = None  # type: ignore[assignment]

R = TypeVar("R")


def new_event_loop() -> asyncio.AbstractEventLoop:
    if uvloop is None:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coroutine: Coroutine[Any, Any, R]) -> R:
    """``asyncio.run`` on ``new_event_loop()``."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coroutine)


def keep_startup_objects() -> None:
    """Take what a started process has loaded (modules, handlers, clients) out of the garbage
    collector's full collections: it lives as long as the process, and each full collection
    walked all of it (a started stack holds ~77k objects: 33 ms of CPU per full collection, now
    none; under load, with requests' objects on top, 120-220 ms that land in pings' latency).
    Only for a process that serves until it exits (``python -m local``, a handler worker)."""
    gc.collect()
    gc.freeze()
