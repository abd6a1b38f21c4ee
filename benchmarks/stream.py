"""Streamed answers: coalesced frames against one frame per token, side by side.

A 500-token answer produced at 50 tokens/s (a generator that sleeps between tokens) is streamed
with ``MessageSender.stream`` to a connection held open on local mode's gateway, once with the
default coalescing and once with ``coalesce_seconds=0`` (a frame per token), alternating. A
wrapper around the sender's transport notes when each frame's post returned; the generator
notes when each token was produced. Reported: frames per token, the delay from the first
token to its frame (both ways), and from the last token to the answer's last content frame.

Then the same answer in a 256 MB Lambda function, on both posting paths, both ways: each post
is delayed by a round trip to API Gateway (``RTT_MS``) plus its own measured CPU time
(``time.thread_time``) stretched by the function's CPU share (see ``benchmarks.sender``). The
four run at once, on four connections: they mostly wait.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import stats
from benchmarks.mode import Mode
from benchmarks.pricing import (
    API_GATEWAY_MESSAGE_USD,
    LAMBDA_ARM64_GB_SECOND_USD,
    LAMBDA_REQUEST_USD,
    PER_MILLION,
    lambda_gb_seconds,
)
from benchmarks.report import STATUS_FAILED, Section, progress
from benchmarks.sender import LAMBDA_CPU_SHARE, LAMBDA_MEMORY_MB, held_stack
from runtime.connections import ConnectionStore
from runtime.posting import Answer, SendStatus, Transport
from runtime.sender import MessageSender
from runtime.streaming import DEFAULT_COALESCE_SECONDS

NAME = "stream"
TOKENS_PER_SECOND = 50.0
RTT_MS = 20.0
TARGET_FRAMES_PER_TOKEN = 0.15
TARGET_FIRST_TOKEN_DELAY_MS = 5.0
# "The answer's last frame within one window of the last token": the default first window, the
# shortest one (the windows grow up to DEFAULT_MAX_COALESCE_SECONDS).
TARGET_LAST_FRAME_LAG_MS = DEFAULT_COALESCE_SECONDS * 1000
WAYS = {"coalesced": {}, "per_token": {"coalesce_seconds": 0.0}}
PATHS = ("lean", "boto3")
FRAMES_AROUND_CONTENT = 3  # typing on, the done frame, typing off
FRAME_USD = API_GATEWAY_MESSAGE_USD  # each outbound frame up to 32 KB is one message


@dataclass
class Timeline:
    """When each token was produced and each content frame's post returned (perf_counter)."""

    tokens: list[float] = field(default_factory=list)
    frames: list[float] = field(default_factory=list)


class TimedTransport:
    """Notes when each ``chat_response`` content frame is accepted; optionally delays each post
    by a round trip plus its CPU time stretched to a Lambda function's share."""

    def __init__(self, transport: Transport, timeline: Timeline, lambda_sized: bool) -> None:
        self._transport = transport
        self._timeline = timeline
        self._lambda_sized = lambda_sized
        self._lock = threading.Lock()

    def post(self, connection_id: str, data: bytes) -> Answer:
        cpu_began = time.thread_time()
        answer = self._transport.post(connection_id, data)
        if self._lambda_sized:
            cpu = time.thread_time() - cpu_began
            time.sleep(RTT_MS / 1000 + cpu * (1 / LAMBDA_CPU_SHARE - 1))
        content = b'"chat_response"' in data and b'"done":true' not in data
        if answer.status is SendStatus.SENT and content:
            with self._lock:
                self._timeline.frames.append(time.perf_counter())
        return answer

    def close(self) -> None:
        self._transport.close()


def _tokens(count: int, rate: float, timeline: Timeline) -> Iterator[str]:
    interval = 1.0 / rate
    began = time.perf_counter()
    for index in range(count):
        delay = began + index * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        timeline.tokens.append(time.perf_counter())
        yield f"tok{index} "


def _stream_once(
    store: ConnectionStore,
    endpoint: str,
    connection_id: str,
    tokens: int,
    posting: str,
    options: dict[str, Any],
    lambda_sized: bool,
) -> dict[str, Any]:
    timeline = Timeline()
    with MessageSender(store, endpoint, posting=posting, **options) as sender:  # type: ignore[arg-type]
        sender.poster.transport = TimedTransport(sender.poster.transport, timeline, lambda_sized)
        began = time.perf_counter()
        result = sender.stream(connection_id, "bench", _tokens(tokens, TOKENS_PER_SECOND, timeline))
        ended = time.perf_counter()
    if not result.completed or not timeline.frames:
        raise RuntimeError(f"the {posting} stream did not complete")
    return {
        "frames": len(timeline.frames),
        "tokens": len(timeline.tokens),
        "first_token_ms": (timeline.frames[0] - timeline.tokens[0]) * 1000,
        "last_frame_lag_ms": (timeline.frames[-1] - timeline.tokens[-1]) * 1000,
        "stream_seconds": ended - began,
    }


def _tokens_for(mode: Mode) -> int:
    return mode.pick(500, 250, 25)


def run(mode: Mode) -> Section:
    tokens = _tokens_for(mode)
    rounds = mode.pick(3, 1, 1)
    plain: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    sized: dict[str, list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-stream-") as temporary,
        held_stack(Path(temporary), "stream-bench", connections=5) as bench,
    ):
        endpoint = bench.stack.management_endpoint
        first, *others = bench.connection_ids
        for index in range(rounds):
            ways = list(WAYS) if index % 2 == 0 else list(reversed(WAYS))
            for way in ways:
                plain[way].append(
                    _stream_once(bench.store, endpoint, first, tokens, "lean", WAYS[way], False)
                )
            progress(f"stream: round {index + 1} of {rounds}")
        combos = [(path, way) for path in PATHS for way in WAYS]
        with ThreadPoolExecutor(len(combos)) as pool:
            futures = {
                f"{path}_{way}": pool.submit(
                    _stream_once, bench.store, endpoint, cid, tokens, path, WAYS[way], True
                )
                for (path, way), cid in zip(combos, others, strict=True)
            }
            sized = {key: [future.result()] for key, future in futures.items()}
        frames_posted = sum(
            s["frames"] + 1 for runs in (*plain.values(), *sized.values()) for s in runs
        )
    return _section(plain, sized, tokens, rounds, frames_posted)


def _median(samples: list[dict[str, Any]], key: str) -> float:
    return round(stats.median([sample[key] for sample in samples]), 2)


def _section(
    plain: dict[str, list[dict[str, Any]]],
    sized: dict[str, list[dict[str, Any]]],
    tokens: int,
    rounds: int,
    frames_posted: int,
) -> Section:
    section = Section(NAME)
    section.data = _data(plain, sized, tokens, rounds, frames_posted)
    if not _add_rows(section, section.data, tokens):
        section.status = STATUS_FAILED
        section.reason = "stream targets missed"
    return section


def _data(
    plain: dict[str, list[dict[str, Any]]],
    sized: dict[str, list[dict[str, Any]]],
    tokens: int,
    rounds: int,
    frames_posted: int,
) -> dict[str, Any]:
    """The section's figures: medians of each way, the ratios and the targets."""
    figures = {
        way: {
            key: _median(samples, key)
            for key in ("frames", "first_token_ms", "last_frame_lag_ms", "stream_seconds")
        }
        for way, samples in plain.items()
    }
    frames_ratio = stats.ratio(figures["coalesced"]["frames"], tokens)
    first_delay = round(
        figures["coalesced"]["first_token_ms"] - figures["per_token"]["first_token_ms"], 2
    )
    lambda_seconds = {key: _median(samples, "stream_seconds") for key, samples in sized.items()}
    frames_usd = {
        way: round((figures[way]["frames"] + FRAMES_AROUND_CONTENT) * FRAME_USD * PER_MILLION, 2)
        for way in WAYS
    }
    function_usd = {
        key: round(
            (
                lambda_gb_seconds(seconds, LAMBDA_MEMORY_MB) * LAMBDA_ARM64_GB_SECOND_USD
                + LAMBDA_REQUEST_USD
            )
            * PER_MILLION,
            2,
        )
        for key, seconds in lambda_seconds.items()
    }
    return {
        "method": (
            f"a {tokens}-token answer at {TOKENS_PER_SECOND:g} tokens/s streamed to a held "
            "connection on local mode's gateway with the default coalescing and with a frame "
            f"per token, alternating, {rounds} rounds, medians; times from the token's yield to "
            "its frame's post returning. lambda_256mb: each post delayed by "
            f"{RTT_MS:g} ms plus its thread CPU time scaled to a {LAMBDA_MEMORY_MB} MB "
            "function's share, four streams at once on four connections"
        ),
        "tokens": tokens,
        "rounds": rounds,
        "tokens_per_second": TOKENS_PER_SECOND,
        **figures,
        "frames_per_token_ratio": frames_ratio,
        "per_token_frames_per_token_ratio": stats.ratio(figures["per_token"]["frames"], tokens),
        "first_token_delay_ms": first_delay,
        "target": {
            "frames_per_token_ratio_at_most": TARGET_FRAMES_PER_TOKEN,
            "first_token_delay_ms_at_most": TARGET_FIRST_TOKEN_DELAY_MS,
            "last_frame_lag_ms_at_most": TARGET_LAST_FRAME_LAG_MS,
            "met": (
                frames_ratio <= TARGET_FRAMES_PER_TOKEN
                and first_delay <= TARGET_FIRST_TOKEN_DELAY_MS
                and figures["coalesced"]["last_frame_lag_ms"] <= TARGET_LAST_FRAME_LAG_MS
            ),
        },
        "lambda_256mb": {
            "rtt_ms": RTT_MS,
            "stream_seconds": lambda_seconds,
            # There the last frame's own post (a round trip and its CPU) is in the lag.
            "last_frame_lag_ms": {
                key: _median(samples, "last_frame_lag_ms") for key, samples in sized.items()
            },
        },
        # API Gateway bills each outbound frame (up to 32 KB) as one message.
        "usd_per_million_answers": frames_usd,
        # The function streaming the answer is billed for its whole duration (the model's 10 s
        # included): a frame per token keeps it running longer where posting outpaces its CPU.
        "function_usd_per_million_answers": function_usd,
        "usd_per_million_answers_with_function": {
            key: round(frames_usd[key.split("_", 1)[1]] + usd, 2)
            for key, usd in function_usd.items()
        },
        "frames_posted": frames_posted,
    }


def _add_rows(section: Section, data: dict[str, Any], tokens: int) -> bool:
    """The section's table rows; whether the three targets were met."""
    figures = {way: data[way] for way in WAYS}
    frames_ratio = data["frames_per_token_ratio"]
    first_delay = data["first_token_delay_ms"]
    lambda_seconds = data["lambda_256mb"]["stream_seconds"]
    frames_met: bool = frames_ratio <= TARGET_FRAMES_PER_TOKEN
    first_met: bool = first_delay <= TARGET_FIRST_TOKEN_DELAY_MS
    last_lag = figures["coalesced"]["last_frame_lag_ms"]
    last_met: bool = last_lag <= TARGET_LAST_FRAME_LAG_MS
    section.row(
        f"{tokens} tokens at {TOKENS_PER_SECOND:g}/s: frames, coalesced",
        f"{figures['coalesced']['frames']:.0f}",
        f"{frames_ratio:.3f} per token vs {figures['per_token']['frames']:.0f} a frame per "
        f"token; target <= {TARGET_FRAMES_PER_TOKEN}: " + ("met" if frames_met else "MISSED"),
    )
    section.row(
        "first token to its frame, coalesced",
        f"{figures['coalesced']['first_token_ms']:.1f} ms",
        f"per token {figures['per_token']['first_token_ms']:.1f} ms, {first_delay:+.1f} ms; "
        f"target <= +{TARGET_FIRST_TOKEN_DELAY_MS:g} ms: " + ("met" if first_met else "MISSED"),
    )
    section.row(
        "last token to the last frame, coalesced",
        f"{last_lag:.0f} ms",
        f"per token {figures['per_token']['last_frame_lag_ms']:.0f} ms; target <= "
        f"{TARGET_LAST_FRAME_LAG_MS:g} ms (one window): " + ("met" if last_met else "MISSED"),
    )
    lags = data["lambda_256mb"].get("last_frame_lag_ms", {})
    for path in PATHS:
        lag = lags.get(f"{path}_coalesced")
        section.row(
            f"256 MB Lambda, {path} path: whole answer",
            f"{lambda_seconds[f'{path}_coalesced']:.1f} s",
            f"a frame per token: {lambda_seconds[f'{path}_per_token']:.1f} s "
            f"({RTT_MS:g} ms per post + CPU at {LAMBDA_CPU_SHARE:.3f} vCPU)"
            + ("" if lag is None else f"; coalesced, last frame {lag:.0f} ms after the last token"),
        )
    return frames_met and first_met and last_met
