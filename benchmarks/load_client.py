"""The one WebSocket load client every benchmark drives, run in its own process.

``python -m benchmarks.load_client <scenario> --url ws://...`` prints its result as one line,
``RESULT_MARKER`` followed by JSON. Scenarios:

- ``closed-loop``: ``--clients`` connections each send a message, wait for its echo, send the
  next; once every client has made ``--warmup-messages`` round trips and ``--warmup`` seconds
  have passed, ``--duration`` seconds are measured (the peers).
- ``open-loop``: ``--connections`` connections send ``--body`` at ``--rate`` messages/s in total,
  spread evenly and on schedule whatever the answers do; round trip = send to the next frame
  on that connection (the gateway load).
- ``hold``: ``--connections`` connections of one user that only receive; prints ``READY``, then
  on each ``report <per-connection> [<total>]`` line of stdin waits (10 s at most) until every
  connection holds that many frames (and all of them the total, when given) and prints what
  each received; ``quit`` ends (the fan-out).

Connections get a dev token from ``--token-state-dir`` (``local.tokens``) when it is given.
The client runs on one asyncio loop. ``run_scenario`` and ``HeldConnections`` are how a
benchmark drives it from its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from benchmarks import stats
from runtime.schema import NEW_CONNECTIONS_PER_SECOND

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULT_MARKER = "LOAD-CLIENT-RESULT "
READY_LINE = "READY"
CONNECT_TIMEOUT_SECONDS = 30.0
ANSWER_TIMEOUT_SECONDS = 30.0  # above API Gateway's 29 s integration timeout
REPORT_TIMEOUT_SECONDS = 10.0
CONNECT_CONCURRENCY = 50  # connection attempts in flight at once
# Below API Gateway's 500 new connections/s per account, which the local gateway enforces too.
CONNECT_RATE_PER_SECOND = 0.8 * NEW_CONNECTIONS_PER_SECOND


async def _until(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition`` until it holds or ``seconds`` pass (frames arrive on many sockets at
    once: one cheap check every few milliseconds beats an event set per frame)."""
    deadline = time.perf_counter() + seconds
    while not condition() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def _print_result(result: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


class _Tokens:
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
class _Errors:
    """Every way a request or a connection can fail, counted by kind."""

    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


async def _open(
    url: str, connect_ms: list[float], errors: _Errors, gate: asyncio.Semaphore, delay: float
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


async def _open_all(urls: list[str], errors: _Errors) -> tuple[list[ClientConnection], list[float]]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    connect_ms: list[float] = []
    opened = await asyncio.gather(
        *(
            _open(url, connect_ms, errors, gate, index / CONNECT_RATE_PER_SECOND)
            for index, url in enumerate(urls)
        )
    )
    return [websocket for websocket in opened if websocket is not None], connect_ms


async def _close_all(websockets: list[ClientConnection]) -> None:
    async def close(websocket: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(), 5)

    await asyncio.gather(*(close(websocket) for websocket in websockets))


# --- closed loop (the peer comparison) ---------------------------------------------------------


class _EchoClient:
    """One connection sending a message, waiting for its echo, and so on."""

    def __init__(self, websocket: ClientConnection, client: int, padding: str) -> None:
        self.websocket = websocket
        self.client = client
        self.padding = padding
        self.sequence = 0

    async def round_trip(self) -> float:
        """Seconds for one echo; raises TimeoutError or ConnectionClosed."""
        self.sequence += 1
        tag = f'"{self.client}-{self.sequence}"'
        message = json.dumps({"action": "echo", "id": tag.strip('"'), "padding": self.padding})
        began = time.perf_counter()
        await self.websocket.send(message)
        while True:
            answer = await asyncio.wait_for(self.websocket.recv(), ANSWER_TIMEOUT_SECONDS)
            text = answer if isinstance(answer, str) else answer.decode("utf-8", "replace")
            if tag in text:
                return time.perf_counter() - began

    async def warm(self, messages: int, until: float, errors: _Errors) -> bool:
        """At least ``messages`` round trips and until ``until``: every handler is loaded."""
        done = 0
        while done < messages or time.perf_counter() < until:
            try:
                await self.round_trip()
            except (TimeoutError, ConnectionClosed) as exc:
                errors.add(f"warm-up: {type(exc).__name__}")
                return False
            done += 1
        return True

    async def measure(self, stop_at: float, rtt_ms: list[float], errors: _Errors) -> int:
        """Round trips while it is before ``stop_at`` (the last one may end after it)."""
        completed = 0
        while time.perf_counter() < stop_at:
            try:
                seconds = await self.round_trip()
            except TimeoutError:
                errors.add("echo: timeout")
                return completed
            except ConnectionClosed:
                errors.add("echo: connection closed")
                return completed
            rtt_ms.append(seconds * 1000)
            completed += 1
        return completed


async def closed_loop(
    url: str,
    clients: int,
    warmup: float,
    warmup_messages: int,
    duration: float,
    padding_bytes: int,
) -> dict[str, Any]:
    """Warm-up (every client, then a barrier), then ``duration`` seconds measured."""
    errors = _Errors()
    websockets, connect_ms = await _open_all([url] * clients, errors)
    echo_clients = [
        _EchoClient(websocket, index, "x" * padding_bytes)
        for index, websocket in enumerate(websockets)
    ]
    rtt_ms: list[float] = []
    try:
        warm_began = time.perf_counter()
        warm = await asyncio.gather(
            *(c.warm(warmup_messages, warm_began + warmup, errors) for c in echo_clients)
        )
        warm_seconds = time.perf_counter() - warm_began
        measuring = [c for c, ok in zip(echo_clients, warm, strict=True) if ok]
        began = time.perf_counter()
        completed = await asyncio.gather(
            *(c.measure(began + duration, rtt_ms, errors) for c in measuring)
        )
        # Until the last round trip ends: a slow emulator's in-flight echoes count, and so does
        # the time they took.
        elapsed = time.perf_counter() - began
    finally:
        await _close_all(websockets)
    return {
        "clients": clients,
        "connected": len(websockets),
        "warmup_seconds": round(warm_seconds, 2),
        "duration_seconds": round(elapsed, 2),
        "messages": sum(completed),
        "throughput_per_second": round(sum(completed) / elapsed, 2),
        "connect_ms": stats.summary(connect_ms),
        "rtt_ms": stats.summary(rtt_ms),
        "errors": errors.total,
        "error_kinds": errors.kinds,
    }


# --- open loop (the gateway load) --------------------------------------------------------------


async def _receive_answers(
    websocket: ClientConnection,
    pending: deque[float],
    rtt_ms: list[float],
    errors: _Errors,
    is_error: Callable[[str | bytes], bool],
) -> None:
    try:
        async for frame in websocket:
            if not pending:
                errors.add("answer: unsolicited frame")
                continue
            began = pending.popleft()
            rtt_ms.append((time.perf_counter() - began) * 1000)
            if is_error(frame):
                errors.add("answer: error frame")
    except ConnectionClosed:
        pass


async def _send_on_schedule(
    websocket: ClientConnection,
    pending: deque[float],
    first_at: float,
    interval: float,
    stop_at: float,
    body: str,
    errors: _Errors,
) -> int:
    sent = 0
    next_at = first_at
    while next_at < stop_at:
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(time.perf_counter())
        try:
            await websocket.send(body)
        except ConnectionClosed:
            pending.pop()
            errors.add("send: connection closed")
            return sent
        sent += 1
        next_at += interval
    return sent


async def open_loop(
    url: str,
    connections: int,
    rate: float,
    duration: float,
    body: str,
    expect: str,
    tokens: _Tokens,
    user_prefix: str,
) -> dict[str, Any]:
    errors = _Errors()
    urls = [tokens.url(url, f"{user_prefix}{index}") for index in range(connections)]
    connect_started = time.perf_counter()
    websockets, connect_ms = await _open_all(urls, errors)
    connect_seconds = time.perf_counter() - connect_started
    rtt_ms: list[float] = []
    interval = connections / rate  # each connection's share of the total rate
    queues: list[deque[float]] = [deque() for _ in websockets]

    def is_error(frame: str | bytes) -> bool:
        return expect not in (frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))

    receivers = [
        asyncio.create_task(_receive_answers(ws, queue, rtt_ms, errors, is_error))
        for ws, queue in zip(websockets, queues, strict=True)
    ]
    started = time.perf_counter() + 0.5
    stop_at = started + duration
    try:
        sent = await asyncio.gather(
            *(
                _send_on_schedule(
                    ws,
                    queue,
                    started + random.uniform(0, interval),
                    interval,
                    stop_at,
                    body,
                    errors,
                )
                for ws, queue in zip(websockets, queues, strict=True)
            )
        )
        await _until(lambda: not any(queues), ANSWER_TIMEOUT_SECONDS)
    finally:
        await _close_all(websockets)
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
    unanswered = sum(len(queue) for queue in queues)
    if unanswered:
        errors.kinds[f"answer: none within {ANSWER_TIMEOUT_SECONDS:.0f} s"] = unanswered
    total_sent = sum(sent)
    return {
        "connections": connections,
        "connected": len(websockets),
        "connect_seconds": round(connect_seconds, 2),
        "connect_ms": stats.summary(connect_ms),
        "target_rate_per_second": rate,
        "achieved_rate_per_second": round(total_sent / duration, 2),
        "duration_seconds": duration,
        "sent": total_sent,
        "answered": len(rtt_ms),
        "rtt_ms": stats.summary(rtt_ms),
        "errors": errors.total,
        "error_kinds": errors.kinds,
    }


# --- hold (the fan-out's receivers) ------------------------------------------------------------


async def _count_frames(websocket: ClientConnection, frames: list[str]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for frame in websocket:
            frames.append(frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))


def _holds(received: list[list[str]], per_connection: int, in_all: int) -> bool:
    return all(len(frames) >= per_connection for frames in received) and (
        sum(map(len, received)) >= in_all
    )


async def _read_line() -> str:
    return await asyncio.to_thread(sys.stdin.readline)


async def hold(url: str, connections: int, tokens: _Tokens, user_id: str) -> dict[str, Any]:
    errors = _Errors()
    websockets, connect_ms = await _open_all(
        [tokens.url(url, user_id) for _ in range(connections)], errors
    )
    received: list[list[str]] = [[] for _ in websockets]
    readers = [
        asyncio.create_task(_count_frames(ws, frames))
        for ws, frames in zip(websockets, received, strict=True)
    ]
    sys.stdout.write(
        READY_LINE + " " + json.dumps({"connected": len(websockets), "errors": errors.kinds}) + "\n"
    )
    sys.stdout.flush()
    try:
        while True:
            line = (await _read_line()).strip()
            if not line or line == "quit":
                break
            _, per_connection, in_all = [*line.split(), "0", "0"][:3]
            await _until(
                functools.partial(_holds, received, int(per_connection), int(in_all)),
                REPORT_TIMEOUT_SECONDS,
            )
            _print_result(
                {
                    "connections": len(websockets),
                    "frames_per_connection": [len(frames) for frames in received],
                    "distinct_per_connection": [len(set(frames)) for frames in received],
                    "connect_ms": stats.summary(connect_ms),
                }
            )
    finally:
        await _close_all(websockets)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return {"connections": len(websockets), "closed": True}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_client")
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    closed = scenarios.add_parser("closed-loop")
    closed.add_argument("--url", required=True)
    closed.add_argument("--clients", type=int, required=True)
    closed.add_argument("--warmup", type=float, default=2.0, help="seconds, at least")
    closed.add_argument("--warmup-messages", type=int, default=5, help="per client, at least")
    closed.add_argument("--duration", type=float, required=True)
    closed.add_argument("--padding-bytes", type=int, default=64)
    opened = scenarios.add_parser("open-loop")
    opened.add_argument("--url", required=True)
    opened.add_argument("--connections", type=int, required=True)
    opened.add_argument("--rate", type=float, required=True)
    opened.add_argument("--duration", type=float, required=True)
    opened.add_argument("--body", default='{"action":"ping"}')
    opened.add_argument("--expect", default='"pong"', help="text every good answer contains")
    opened.add_argument("--token-state-dir", type=Path)
    opened.add_argument("--user-prefix", default="load-user-")
    held = scenarios.add_parser("hold")
    held.add_argument("--url", required=True)
    held.add_argument("--connections", type=int, required=True)
    held.add_argument("--token-state-dir", type=Path)
    held.add_argument("--user", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    scenario: Awaitable[dict[str, Any]]
    if options.scenario == "closed-loop":
        scenario = closed_loop(
            options.url,
            options.clients,
            options.warmup,
            options.warmup_messages,
            options.duration,
            options.padding_bytes,
        )
    elif options.scenario == "open-loop":
        scenario = open_loop(
            options.url,
            options.connections,
            options.rate,
            options.duration,
            options.body,
            options.expect,
            _Tokens(options.token_state_dir),
            options.user_prefix,
        )
    else:
        scenario = hold(
            options.url, options.connections, _Tokens(options.token_state_dir), options.user
        )
    _print_result(asyncio.run(scenario))
    return 0


# --- driving the client from a benchmark -------------------------------------------------------


def _command(arguments: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.load_client", *arguments]


def run_scenario(
    arguments: Sequence[str], env: Mapping[str, str], timeout: float
) -> dict[str, Any]:
    """Run a ``closed-loop`` or ``open-loop`` scenario in a fresh process; its result."""
    completed = subprocess.run(
        _command(arguments),
        cwd=PROJECT_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_MARKER))
            return result
    raise RuntimeError(
        f"load client {arguments[0]} failed (exit {completed.returncode}): "
        + " | ".join(completed.stderr.strip().splitlines()[-5:])
    )


class HeldConnections:
    """A ``hold`` scenario in its own process: N connections of one user, counting frames."""

    def __init__(
        self,
        url: str,
        connections: int,
        user_id: str,
        token_state_dir: Path,
        env: Mapping[str, str],
        log: IO[bytes],
        timeout: float = 120.0,
    ) -> None:
        self._process = subprocess.Popen(
            _command(
                [
                    "hold",
                    "--url",
                    url,
                    "--connections",
                    str(connections),
                    "--user",
                    user_id,
                    "--token-state-dir",
                    str(token_state_dir),
                ]
            ),
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        ready = self._read_line(READY_LINE + " ", timeout)
        self.connected: int = ready["connected"]
        self.errors: dict[str, int] = ready["errors"]

    def _read_line(self, marker: str, timeout: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line:
                raise RuntimeError(f"load client exited (status {self._process.poll()})")
            if line.startswith(marker):
                data: dict[str, Any] = json.loads(line.removeprefix(marker))
                return data
        raise TimeoutError(f"load client gave no {marker.strip()} line in {timeout:.0f} s")

    def report(self, frames_per_connection: int, frames_in_all: int = 0) -> dict[str, Any]:
        """What each connection received, once each holds ``frames_per_connection`` and all
        together ``frames_in_all`` (or after 10 s)."""
        assert self._process.stdin is not None
        self._process.stdin.write(f"report {frames_per_connection} {frames_in_all}\n")
        self._process.stdin.flush()
        return self._read_line(RESULT_MARKER, REPORT_TIMEOUT_SECONDS + 30)

    def close(self) -> None:
        if self._process.poll() is None and self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.write("quit\n")
                self._process.stdin.close()
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> HeldConnections:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
