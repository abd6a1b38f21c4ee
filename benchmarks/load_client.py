"""The one WebSocket load client every benchmark drives, run in its own process.

``python -m benchmarks.load_client <scenario> --url ws://...`` prints its result as one line,
``RESULT_MARKER`` followed by JSON. Scenarios:

- ``closed-loop``: ``--clients`` connections each send a message, wait for its echo, send the
  next; once every client has made ``--warmup-messages`` round trips and ``--warmup`` seconds
  have passed, ``--duration`` seconds are measured (the peers). With ``--cpu-of-session``,
  also the CPU time the emulator's processes (that session's, ``benchmarks.cpu``) and this
  client used in those seconds, per message and in cores, and what the machine did meanwhile.
- ``open-loop``: ``--connections`` connections send ``--body`` at ``--rate`` messages/s in total,
  spread evenly and on schedule whatever the answers do; round trip = send to the next frame
  on that connection (the gateway load); ``--warmup`` seconds of the same load come first and
  are not measured (their errors count). ``--cpu-of-session`` as for ``closed-loop``, from half
  a second before the first measured message is sent until the last answer.
- ``hold``: ``--connections`` connections of one user that only receive; prints ``READY``, then
  on each ``report <per-connection> [<total>]`` line of stdin waits (10 s at most) until every
  connection holds that many frames (and all of them the total, when given) and prints what
  each received; ``quit`` ends (the fan-out).

Connections get a dev token from ``--token-state-dir`` (``local.tokens``) when it is given.
The client runs on one event loop, uvloop's where it is installed (``local.loop``, as the gateway
does): on asyncio's own it spent ~0.16 ms of CPU per closed-loop echo, on uvloop's ~0.11, CPU the
emulators it measures then have on the same machine. Its result names the loop (``event_loop``).
Its connections are ``benchmarks.load_connections``'s.
``benchmarks.load_driver`` (``run_scenario``, ``HeldConnections``) is how a benchmark drives it
from its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import random
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from benchmarks import cpu, stats
from benchmarks.load_connections import Errors, Tokens, close_all, open_all, until
from benchmarks.load_driver import READY_LINE, REPORT_TIMEOUT_SECONDS, RESULT_MARKER
from local.loop import raise_open_file_limit
from local.loop import run as run_loop

ANSWER_TIMEOUT_SECONDS = 30.0  # above API Gateway's 29 s integration timeout


async def _naming_the_loop(scenario: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    result = await scenario
    return {**result, "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0]}


def _print_result(result: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


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

    async def warm(self, messages: int, until: float, errors: Errors) -> bool:
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

    async def measure(self, stop_at: float, rtt_ms: list[float], errors: Errors) -> int:
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


def other_cores(share: dict[str, float], cores: dict[str, float], vcpus: int) -> float | None:
    """The cores busy outside the emulator's processes and the load client: processes outside
    the emulator's session, the kernel's work for none of them. None where not measured."""
    if not {"idle", "steal"} <= share.keys() or not {"emulator", "load_client"} <= cores.keys():
        return None
    busy = (1.0 - share["idle"] - share["steal"]) * vcpus
    return round(busy - cores["emulator"] - cores["load_client"], 3)


class _CpuWindow:
    """CPU time used from its creation to ``figures()``: by the processes of session
    ``session`` (the emulator; ``emulator_server`` its leader, ``emulator_spawned`` the processes
    it started) and by this process (the load client); and the machine's idle and stolen
    shares of its vCPU time meanwhile (``cpu.machine_shares``), and the cores busy outside
    both (``other_cores``): what else the host ran while the figures were made."""

    def __init__(self, session: int | None) -> None:
        self.session = session
        self.before = cpu.session_cpu_seconds(session) if session is not None else {}
        self.machine_before = cpu.machine_cpu_ticks() if session is not None else {}
        self.own_before = time.process_time()

    def figures(self, messages: int, seconds: float) -> dict[str, Any]:
        if self.session is None or messages == 0 or seconds <= 0:
            return {}
        split = cpu.session_cpu_split(
            self.before, cpu.session_cpu_seconds(self.session), self.session
        )
        used = {
            "emulator": split["server"] + split["spawned"],
            "emulator_server": split["server"],
            "emulator_spawned": split["spawned"],
            "load_client": time.process_time() - self.own_before,
        }
        cores = {k: round(v / seconds, 3) for k, v in used.items()}
        share = cpu.machine_shares(self.machine_before, cpu.machine_cpu_ticks())
        figures: dict[str, Any] = {
            "cpu_ms_per_message": {k: round(v * 1000 / messages, 4) for k, v in used.items()},
            "cpu_cores": cores,
            "machine_share": share,
        }
        other = other_cores(share, cores, os.cpu_count() or 1)
        if other is not None:
            figures["machine_other_cores"] = other
        return figures


async def closed_loop(
    url: str,
    clients: int,
    warmup: float,
    warmup_messages: int,
    duration: float,
    padding_bytes: int,
    cpu_of_session: int | None = None,
) -> dict[str, Any]:
    """Warm-up (every client, then a barrier), then ``duration`` seconds measured."""
    errors = Errors()
    websockets, connect_ms = await open_all([url] * clients, errors)
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
        cpu_window = _CpuWindow(cpu_of_session)
        began = time.perf_counter()
        completed = await asyncio.gather(
            *(c.measure(began + duration, rtt_ms, errors) for c in measuring)
        )
        # Until the last round trip ends: a slow emulator's in-flight echoes count, and so does
        # the time they took.
        elapsed = time.perf_counter() - began
        cpu_figures = cpu_window.figures(sum(completed), elapsed)
    finally:
        await close_all(websockets)
    return {
        **cpu_figures,
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


class _Phase:
    """When the measured sends began: an answer to a message sent before (the warm-up's, even
    a late one) pairs with its own send and is not measured."""

    def __init__(self) -> None:
        self.measured_from = math.inf


async def _receive_answers(
    websocket: ClientConnection,
    pending: deque[float],
    rtt_ms: list[float],
    errors: Errors,
    is_error: Callable[[str | bytes], bool],
    phase: _Phase,
) -> None:
    try:
        async for frame in websocket:
            if not pending:
                errors.add("answer: unsolicited frame")
                continue
            began = pending.popleft()
            if began >= phase.measured_from:
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
    errors: Errors,
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
    tokens: Tokens,
    user_prefix: str,
    cpu_of_session: int | None = None,
    warmup: float = 0.0,
) -> dict[str, Any]:
    errors = Errors()
    urls = [tokens.url(url, f"{user_prefix}{index}") for index in range(connections)]
    connect_started = time.perf_counter()
    websockets, connect_ms = await open_all(urls, errors)
    connect_seconds = time.perf_counter() - connect_started
    rtt_ms: list[float] = []
    interval = connections / rate  # each connection's share of the total rate
    queues: list[deque[float]] = [deque() for _ in websockets]

    def is_error(frame: str | bytes) -> bool:
        return expect not in (frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))

    phase = _Phase()
    receivers = [
        asyncio.create_task(_receive_answers(ws, queue, rtt_ms, errors, is_error, phase))
        for ws, queue in zip(websockets, queues, strict=True)
    ]

    async def on_schedule(seconds: float, *, measured: bool) -> list[int]:
        """Every connection sends for ``seconds`` from half a second on; all answered."""
        started = time.perf_counter() + 0.5
        if measured:
            phase.measured_from = started
        sent = await asyncio.gather(
            *(
                _send_on_schedule(
                    ws,
                    queue,
                    started + random.uniform(0, interval),
                    interval,
                    started + seconds,
                    body,
                    errors,
                )
                for ws, queue in zip(websockets, queues, strict=True)
            )
        )
        await until(lambda: not any(queues), ANSWER_TIMEOUT_SECONDS)
        return sent

    try:
        if warmup > 0:
            # The same load, not measured: first calls (imports, connection pools, moto's
            # first writes) are not the steady state. Its errors still count, and a message
            # it leaves unanswered counts at the end.
            await on_schedule(warmup, measured=False)
        cpu_window, window_began = _CpuWindow(cpu_of_session), time.perf_counter()
        sent = await on_schedule(duration, measured=True)
        cpu_figures = cpu_window.figures(len(rtt_ms), time.perf_counter() - window_began)
    finally:
        await close_all(websockets)
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
    unanswered = sum(len(queue) for queue in queues)
    if unanswered:
        errors.kinds[f"answer: none within {ANSWER_TIMEOUT_SECONDS:.0f} s"] = unanswered
    total_sent = sum(sent)
    return {
        **cpu_figures,
        "connections": connections,
        "connected": len(websockets),
        "connect_seconds": round(connect_seconds, 2),
        "connect_ms": stats.summary(connect_ms),
        "target_rate_per_second": rate,
        "achieved_rate_per_second": round(total_sent / duration, 2),
        "duration_seconds": duration,
        "warmup_seconds": warmup,
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


async def hold(url: str, connections: int, tokens: Tokens, user_id: str) -> dict[str, Any]:
    errors = Errors()
    websockets, connect_ms = await open_all(
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
            await until(
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
        await close_all(websockets)
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
    closed.add_argument(
        "--cpu-of-session", type=int, help="also report the CPU of this session's processes"
    )
    opened = scenarios.add_parser("open-loop")
    opened.add_argument("--url", required=True)
    opened.add_argument("--connections", type=int, required=True)
    opened.add_argument("--rate", type=float, required=True)
    opened.add_argument("--duration", type=float, required=True)
    opened.add_argument("--body", default='{"action":"ping"}')
    opened.add_argument("--expect", default='"pong"', help="text every good answer contains")
    opened.add_argument("--token-state-dir", type=Path)
    opened.add_argument("--user-prefix", default="load-user-")
    opened.add_argument(
        "--warmup", type=float, default=0.0, help="seconds of the same load before measuring"
    )
    opened.add_argument(
        "--cpu-of-session", type=int, help="also report the CPU of this session's processes"
    )
    held = scenarios.add_parser("hold")
    held.add_argument("--url", required=True)
    held.add_argument("--connections", type=int, required=True)
    held.add_argument("--token-state-dir", type=Path)
    held.add_argument("--user", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    raise_open_file_limit()  # a thousand connections are over most shells' 1024
    scenario: Awaitable[dict[str, Any]]
    if options.scenario == "closed-loop":
        scenario = closed_loop(
            options.url,
            options.clients,
            options.warmup,
            options.warmup_messages,
            options.duration,
            options.padding_bytes,
            options.cpu_of_session,
        )
    elif options.scenario == "open-loop":
        scenario = open_loop(
            options.url,
            options.connections,
            options.rate,
            options.duration,
            options.body,
            options.expect,
            Tokens(options.token_state_dir),
            options.user_prefix,
            options.cpu_of_session,
            options.warmup,
        )
    else:
        scenario = hold(
            options.url, options.connections, Tokens(options.token_state_dir), options.user
        )
    _print_result(run_loop(_naming_the_loop(scenario)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
