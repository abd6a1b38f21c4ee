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

# Open files (sockets) a local process may hold: a thousand WebSocket connections, moto's pools
# and the workers' sockets, with room. macOS refuses more than OPEN_MAX_MACOS whatever the hard
# limit says.
OPEN_FILES_WANTED = 16384
OPEN_MAX_MACOS = 10240


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


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> int | None:
    """Raise this process's soft limit on open files to ``wanted``, or to the hard limit when that
    is lower, as Go's runtime does for every program; the processes it starts inherit it. The
    soft limit most systems start a shell with (1024 on Linux, 256 on macOS) is below what a
    gateway holding a thousand connections needs, and it then fails to accept with ``EMFILE``.
    The soft limit now; ``None`` where there is none to read (Windows)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    for candidate in (target, min(target, OPEN_MAX_MACOS)):
        if candidate <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (candidate, hard))
        except (ValueError, OSError):
            continue
        return candidate
    return soft
