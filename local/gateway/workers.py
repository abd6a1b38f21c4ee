"""Handler worker processes: each takes many invocations at once over one socket.

The gateway and a worker exchange length-prefixed JSON frames (a 4-byte big-endian length, then
UTF-8 JSON) over a socket pair: ``{"id", "ref", "event", "context"}`` one way, ``{"id", "ok"}``
or ``{"id", "error": [type, message]}`` the other. A worker loads its functions before it reads
the first invocation (its cold start), runs each invocation on a thread of its own pool, and
answers in whatever order they finish; the gateway reads the answers on its event loop. No
pickling and no executor thread on the gateway's side: what a worker's handler costs (botocore)
runs on another core, outside the gateway's interpreter lock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import socket
import struct
import sys
import threading
from multiprocessing.process import BaseProcess
from typing import Any, cast

from local.gateway.exceptions import FunctionError
from local.gateway.invoker import LambdaContext, encode_result, function_for, run_handler
from local.loop import keep_startup_objects

_HEADER = struct.Struct(">I")
EXIT_ERROR = "Runtime.ExitError"
EXIT_MESSAGE = "Runtime exited without providing a reason"
READY_ID = 0  # a worker's first frame: its functions are loaded
_READ_SIZE = 1 << 16


def _frame(message: dict[str, Any]) -> bytes:
    return _framed(json.dumps(message, separators=(",", ":")).encode("utf-8"))


def _framed(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def _take_frames(buffer: bytearray) -> list[bytes]:
    """The payloads of the complete frames at the start of ``buffer``, taken out of it."""
    payloads = []
    start = 0
    while len(buffer) - start >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer, start)
        end = start + _HEADER.size + size
        if len(buffer) < end:
            break
        payloads.append(bytes(buffer[start + _HEADER.size : end]))
        start = end
    del buffer[:start]
    return payloads


# --- in the worker process -------------------------------------------------------------------


def _defer_to_the_gateway() -> None:
    """Run this worker's threads (those started later inherit it) as ``SCHED_BATCH``: Linux
    never lets a woken ``SCHED_BATCH`` thread preempt the running one (sched(7)); it runs when a
    core is free or the running thread's slice ends.

    The gateway wakes a worker thread with each invocation and each management API answer; as
    ``SCHED_OTHER`` threads they preempted the gateway's event loop, whose next write then
    waited behind a handler. Measured on 2 vCPUs, alternating 8 s peer rounds at 10 clients
    against the same workers without it: more echoes per second in 11 of 14 pairs (medians
    1.06x and 1.10x in two runs), 8-9% less CPU per echo, and per echo 0.58 preemptions of the
    gateway instead of 1.09 and 1.6 blocking waits of a worker instead of 2.8. Not on other
    systems (no ``SCHED_BATCH``), nor where a sandbox forbids it: only speed depends on it.
    """
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def serve(channel: socket.socket, refs: tuple[str, ...], max_threads: int) -> None:
    """A worker's life: load ``refs``, then run invocations until the gateway closes.

    Leader and followers: of up to ``max_threads`` threads, the one holding ``reading`` reads
    the socket; once it has a frame it hands the reading on and runs that invocation itself,
    then writes its answer. No reader thread queues frames for others: each invocation wakes
    one thread, not two, and crosses no queue (against a reader thread with a queue, 16 pairs
    of alternating peer rounds at 10 clients: median 1.1x the echoes per second, 5-10% less
    CPU per echo). A thread is started only when every started one is busy, and stays. No
    ``ThreadPoolExecutor``: nothing here needs the Future, work item and idle-semaphore check
    it makes per invocation.
    """
    _defer_to_the_gateway()
    functions = {ref: function_for(ref) for ref in refs}
    keep_startup_objects()
    try:
        channel.sendall(_frame({"id": READY_ID}))
    except ConnectionError:  # the gateway stopped while this worker loaded: nothing to serve
        os._exit(0)
    sending = threading.Lock()
    reading = threading.Lock()  # held by the one thread that reads the socket: the leader
    frames: collections.deque[bytes] = collections.deque()
    buffer = bytearray()
    threads = 1
    busy = 0  # threads running an invocation; raised and lowered under ``counting``
    counting = threading.Lock()

    def answer(frame: bytes) -> None:
        with sending:
            try:
                channel.sendall(frame)
            except OSError:  # the gateway has gone (see ``take``)
                os._exit(0)

    def invoke(request: dict[str, Any]) -> None:
        function = functions[request["ref"]]  # the gateway sends only the refs it started with
        try:
            context = LambdaContext(**request["context"])
            encoded = encode_result(function, run_handler(function, request["event"], context))
        except FunctionError as exc:
            answer(_frame({"id": request["id"], "error": [exc.error_type, exc.error_message]}))
            return
        answer(_framed(b'{"id":%d,"ok":%s}' % (request["id"], encoded.encode("utf-8"))))

    def take() -> bytes:
        nonlocal threads, busy
        with reading:
            while not frames:
                chunk = channel.recv(_READ_SIZE)
                if not chunk:
                    # The gateway has gone: nobody is left to answer, so handlers still
                    # running are cut off.
                    os._exit(0)
                buffer.extend(chunk)
                frames.extend(_take_frames(buffer))
            with counting:
                busy += 1
                spawn = busy >= threads and threads < max_threads
                if spawn:
                    threads += 1
            if spawn:  # every thread busy: one more leads the reading
                threading.Thread(target=run, name=f"lambda-{threads}", daemon=True).start()
            return frames.popleft()

    def run() -> None:
        nonlocal busy
        while True:
            request = json.loads(take())
            try:
                invoke(request)
            except BaseException:
                # A handler's sys.exit: Lambda's runtime would exit and fail the invocation as
                # Runtime.ExitError; this thread must not end with it (it would never be replaced).
                answer(_frame({"id": request["id"], "error": [EXIT_ERROR, EXIT_MESSAGE]}))
            with counting:
                busy -= 1

    run()


# --- in the gateway's process ----------------------------------------------------------------


class _Channel(asyncio.Protocol):
    """The gateway's end of one worker's socket: sends invocations, resolves their futures."""

    def __init__(self, process: BaseProcess, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.loaded = False  # its functions are loaded: it takes invocations
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        for payload in _take_frames(self._buffer):
            message = json.loads(payload)
            if message["id"] == READY_ID:
                self.loaded = True
                continue
            future = self.pending.pop(message["id"], None)
            if future is None or future.done():
                continue  # timed out meanwhile: the answer is dropped, as Lambda's would be
            if "error" in message:
                future.set_exception(FunctionError(*message["error"]))
            else:
                future.set_result(message["ok"])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.loaded = False
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(FunctionError(EXIT_ERROR, EXIT_MESSAGE))

    def send(self, message: dict[str, Any], future: asyncio.Future[Any]) -> None:
        assert self.transport is not None
        self.pending[message["id"]] = future
        self.transport.write(_frame(message))


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class WorkerProcesses:
    """``count`` spawned workers, each running up to ``max_threads`` invocations at once; an
    invocation goes to the loaded worker with the fewest running. A worker that died is
    replaced; until one is loaded (its cold start), ``available()`` is False."""

    def __init__(self, count: int, max_threads: int) -> None:
        self.count = count
        self.max_threads = max_threads
        self._refs: tuple[str, ...] = ()
        self._channels: list[_Channel] = []
        self._connecting: set[asyncio.Task[Any]] = set()
        self._next_id = 0
        self._stopped = False

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._channels if c.process.pid is not None]

    def start(self, refs: tuple[str, ...]) -> None:
        """Spawn the workers, each loading ``refs`` (their cold starts run side by side)."""
        self._refs = refs
        self._channels = [self._spawn() for _ in range(self.count)]

    def _spawn(self) -> _Channel:
        ours, theirs = socket.socketpair()
        # Spawned, not forked: the gateway's process holds an event loop and moto's threads.
        process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(theirs, self._refs, self.max_threads), daemon=True
        )
        process.start()
        theirs.close()
        channel = _Channel(process, ours)
        loop = asyncio.get_running_loop()
        connecting = loop.create_task(loop.connect_accepted_socket(lambda: channel, ours))
        self._connecting.add(connecting)
        connecting.add_done_callback(self._connecting.discard)
        return channel

    def available(self) -> bool:
        """Whether a worker has loaded its functions and can take an invocation now."""
        if self._stopped:
            return False
        for index, channel in enumerate(self._channels):
            if channel.closed:
                channel.process.join(0)
                self._channels[index] = self._spawn()
        return any(channel.loaded for channel in self._channels)

    async def invoke(
        self, ref: str, event: dict[str, Any], context: LambdaContext, within: float
    ) -> Any:
        """The handler's JSON-safe result, or its ``FunctionError``; when ``available()``.
        ``TimeoutError`` when no answer came ``within`` seconds (a late one is dropped).

        One timer on the answer's future, not ``asyncio.wait_for``: that wraps the wait in a
        task of its own, on every message of every connection."""
        loaded = [channel for channel in self._channels if channel.loaded]
        if not loaded:  # the last one exited since available()
            raise FunctionError(EXIT_ERROR, EXIT_MESSAGE)
        channel = min(loaded, key=lambda channel: len(channel.pending))
        self._next_id += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        channel.send(
            {
                "id": self._next_id,
                "ref": ref,
                "event": event,
                "context": vars(context),  # flat: asdict's recursive copy costs more
            },
            future,
        )
        timer = loop.call_later(within, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def shutdown(self) -> None:
        """Close the sockets: each worker exits when it reads the end of its socket. A worker
        with invocations still running is killed: its threads may all be in handlers, none
        reading, and the end of its socket would cut those invocations off anyway."""
        self._stopped = True
        for connecting in self._connecting:
            connecting.cancel()
        for channel in self._channels:
            if channel.transport is not None:
                channel.transport.close()
            else:
                channel.sock.close()
            if channel.pending:
                channel.process.kill()
        self._channels = []
