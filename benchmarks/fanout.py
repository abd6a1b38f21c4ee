"""Fan-out: ``MessageSender.broadcast_to_user`` against a sequential baseline, side by side.

N = 10, 100, 1000 connections of one user are held open on local mode's gateway by the load
client (its own process). Each round broadcasts one frame with ``broadcast_to_user`` (on its
lean posting path) and one with the original design's loop (list the user's connections, then one
boto3 ``post_to_connection`` after another), in alternating order. Every post gets an injected
latency (default 20 ms) standing for the network round trip and service time of API Gateway's
management API, which answers locally in about a millisecond: botocore's ``before-send`` event
on the loop's client, and a wrapper around the sender's transport, sleep that long in the
calling thread, as a real round trip would block it. Afterwards every connection must hold
every frame exactly once. ``broadcast_cpu_ms`` says where a broadcast's time goes when it is not
waiting: the CPU the sender, local mode and the holding client each used during it.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import PROJECT_ROOT, cpu, stats
from benchmarks.environment import base_environment
from benchmarks.load_driver import HeldConnections
from benchmarks.local_stack import RunningStack, local_stack, runtime_on
from benchmarks.mode import Mode
from benchmarks.report import STATUS_FAILED, Section, progress
from runtime import aws, schema
from runtime.connections import ConnectionStore
from runtime.posting import Answer, Transport
from runtime.sender import DEFAULT_MAX_WORKERS, MessageSender, serialize

NAME = "fanout"
DEFAULT_LATENCY_MS = 20.0
TARGET_SPEEDUP = 20.0
TARGET_SIZE = 1000
QUICK_SEQUENTIAL_SAMPLE = 100


def _sizes(mode: Mode) -> tuple[int, ...]:
    return (10,) if mode is Mode.SMOKE else (10, 100, 1000)


def _sequential_sample(mode: Mode, size: int) -> int | None:
    return (
        QUICK_SEQUENTIAL_SAMPLE if mode is Mode.QUICK and size > QUICK_SEQUENTIAL_SAMPLE else None
    )


def _rounds(mode: Mode, size: int) -> int:
    """Rounds per size: the sequential baseline at N = 1000 alone takes over 20 s a round."""
    if mode is not Mode.FULL:
        return 1
    return 3 if size >= 1000 else 5


class DelayedTransport:
    """The sender's transport, each post delayed like a round trip to API Gateway."""

    def __init__(self, transport: Transport, latency_seconds: float) -> None:
        self._transport = transport
        self._latency_seconds = latency_seconds

    def post(self, connection_id: str, data: bytes) -> Answer:
        time.sleep(self._latency_seconds)
        return self._transport.post(connection_id, data)

    def close(self) -> None:
        self._transport.close()


def _latency_hook(latency_seconds: float) -> Callable[..., None]:
    def delay(**kwargs: Any) -> None:
        time.sleep(latency_seconds)

    return delay


def _frame(kind: str, round_index: int) -> bytes:
    return serialize({"type": "system", "event": "notice", "data": {kind: round_index}})


class BroadcastCpu:
    """CPU time spent during a broadcast, in ms, the mean over the rounds: by this process (the
    sender: its listing, its posting threads; the injected sleeps cost none), by local mode
    (gateway, workers and moto: the session of ``stack``) and by the client holding the
    connections. The last two come from ``/proc`` in clock ticks (10 ms, rounded down per
    process and reading), so each is good to about 10-20 ms a round; the sender's is exact."""

    def __init__(self, stack_session: int, holder: int) -> None:
        self._session, self._holder = stack_session, holder
        self.samples: dict[str, list[float]] = {
            "sender": [],
            "local_stack": [],
            "receiving_client": [],
        }

    def __enter__(self) -> BroadcastCpu:
        self._stack = cpu.session_cpu_seconds(self._session)
        self._receiver = cpu.process_cpu_seconds(self._holder)
        self._sender = time.process_time()  # last: reading /proc costs this process CPU too
        return self

    def __exit__(self, *exc_info: object) -> None:
        sender = time.process_time() - self._sender
        used = {
            "sender": sender,
            "local_stack": cpu.session_cpu_used(
                self._stack, cpu.session_cpu_seconds(self._session)
            ),
            "receiving_client": cpu.process_cpu_seconds(self._holder) - self._receiver,
        }
        for name, seconds in used.items():
            self.samples[name].append(seconds * 1000)

    def means(self) -> dict[str, float]:
        return {name: round(sum(v) / len(v)) for name, v in self.samples.items() if v}


def _broadcast(sender: MessageSender, user_id: str, data: bytes) -> tuple[float, int]:
    began = time.perf_counter()
    result = sender.broadcast_to_user(user_id, data.decode("utf-8"))
    return (time.perf_counter() - began) * 1000, result.sent


def _sequential(
    store: ConnectionStore, client: Any, user_id: str, data: bytes, sample: int | None
) -> tuple[float, int]:
    """The original design: one post after another, each waiting for the previous.

    With ``sample``, only that many posts are made and the time of the rest is extrapolated
    from them (``--quick`` at N = 1000, where the whole loop takes over 20 s).
    """
    began = time.perf_counter()
    connections = store.list_for_user(user_id)
    listed = time.perf_counter()
    targets = connections if sample is None else connections[:sample]
    for connection in targets:
        client.post_to_connection(ConnectionId=connection.connection_id, Data=data)
    posting = time.perf_counter() - listed
    if targets and len(targets) < len(connections):
        posting *= len(connections) / len(targets)
    return ((listed - began) + posting) * 1000, len(targets)


def _measure_size(
    stack: RunningStack,
    sender: MessageSender,
    client: Any,
    store: ConnectionStore,
    size: int,
    rounds: int,
    sample: int | None,
    work_dir: Path,
) -> dict[str, Any]:
    user_id = f"fanout-{size}"
    env = base_environment({"PYTHONPATH": str(PROJECT_ROOT)})
    began = time.perf_counter()
    with (
        (work_dir / f"hold-{size}.log").open("wb") as log,
        HeldConnections(stack.ws_url, size, user_id, stack.state_dir, env, log) as held,
    ):
        if held.connected != size:
            raise RuntimeError(f"only {held.connected} of {size} connections opened: {held.errors}")
        progress(f"fanout: {size} connections open in {time.perf_counter() - began:.1f} s")
        listed = store.count_for_user(user_id)
        if listed != size:
            raise RuntimeError(f"the table lists {listed} connections of {user_id}, not {size}")
        broadcast_cpu = BroadcastCpu(stack.process.pid, held.pid) if cpu.available() else None
        concurrent_ms: list[float] = []
        sequential_ms: list[float] = []
        list_ms: list[float] = []
        list_ids_ms: list[float] = []
        sent_total = 0
        for index in range(rounds):
            # What each side lists: the loop whole rows, broadcast_to_user the ids only.
            listing_began = time.perf_counter()
            store.list_for_user(user_id)
            listed_rows = time.perf_counter()
            store.connection_ids_for_user(user_id)
            list_ms.append((listed_rows - listing_began) * 1000)
            list_ids_ms.append((time.perf_counter() - listed_rows) * 1000)
            steps = [("concurrent", concurrent_ms), ("sequential", sequential_ms)]
            for kind, samples in steps if index % 2 == 0 else reversed(steps):
                data = _frame(kind, index)
                if kind == "concurrent":
                    with broadcast_cpu or contextlib.nullcontext():
                        elapsed, sent = _broadcast(sender, user_id, data)
                else:
                    elapsed, sent = _sequential(store, client, user_id, data, sample)
                samples.append(elapsed)
                sent_total += sent
        report = held.report(rounds if sample else 2 * rounds, sent_total)
        progress(f"fanout: {size} measured at {time.perf_counter() - began:.1f} s")
    progress(f"fanout: {size} closed at {time.perf_counter() - began:.1f} s")
    received = report["distinct_per_connection"]
    frames = report["frames_per_connection"]
    # Every frame the gateway accepted must have arrived once, and every connection must hold
    # every broadcast (the sequential loop may have posted to a sample only).
    lost = max(0, sent_total - sum(received)) + sum(max(0, rounds - n) for n in received)
    lost += (size - len(received)) * rounds
    duplicated = sum(total - distinct for total, distinct in zip(frames, received, strict=True))
    concurrent = stats.median(concurrent_ms)
    sequential = stats.median(sequential_ms)
    listing = stats.median(list_ms)
    listing_ids = stats.median(list_ids_ms)
    return {
        "connections": size,
        "rounds": rounds,
        "broadcast_ms": stats.summary(concurrent_ms),
        "sequential_ms": stats.summary(sequential_ms),
        "speedup_ratio": stats.ratio(sequential, concurrent),
        # Both include listing the user's connections, which moto answers far slower than
        # DynamoDB (about 0.7 s for 1000 rows): the posting phases alone, compared.
        "list_ms": stats.summary(list_ms),
        "list_ids_ms": stats.summary(list_ids_ms),
        "posting_speedup_ratio": stats.ratio(
            max(sequential - listing, 1.0), max(concurrent - listing_ids, 1.0)
        ),
        "posts_per_second": round(size / (concurrent / 1000), 1),
        # Where a broadcast's time goes when it is not waiting: CPU on the machine's 2 vCPUs.
        "broadcast_cpu_ms": broadcast_cpu.means() if broadcast_cpu else None,
        "sequential_ms_per_post": round(sequential / size, 2),
        "sequential_sampled_posts": sample,
        "frames_sent": sent_total,
        "frames_received": sum(received),
        "messages_lost": lost,
        "messages_duplicated": duplicated,
    }


def run(mode: Mode, latency_ms: float = DEFAULT_LATENCY_MS) -> Section:
    sizes = _sizes(mode)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as temporary:
        work_dir = Path(temporary)
        # One user holds up to 1000 connections here; the per-user cap is off for this test.
        with local_stack(work_dir, {schema.ENV_MAX_CONNECTIONS_PER_USER: "0"}) as stack:
            with runtime_on(stack) as store:
                # The original design's loop posts through the boto3 client, delayed by a
                # before-send hook; the sender posts on its lean path, delayed alike.
                client = aws.management_api(stack.management_endpoint)
                client.meta.events.register(
                    "before-send.apigatewaymanagementapi.PostToConnection",
                    _latency_hook(latency_ms / 1000),
                )
                with MessageSender(store, stack.management_endpoint) as sender:
                    sender.poster.transport = DelayedTransport(
                        sender.poster.transport, latency_ms / 1000
                    )
                    for size in sizes:
                        results[f"n{size}"] = _measure_size(
                            stack,
                            sender,
                            client,
                            store,
                            size,
                            _rounds(mode, size),
                            _sequential_sample(mode, size),
                            work_dir,
                        )
            rss = stack.process.rss_mb()
    return _section(results, latency_ms, rss)


def _section(results: dict[str, Any], latency_ms: float, rss: dict[str, float]) -> Section:
    section = Section(NAME)
    section.data = {
        "method": (
            "broadcast_to_user (lean posting path) vs a sequential loop through a boto3 client, "
            "alternating, medians; each post delayed by the same latency (botocore before-send "
            "on the loop's client, a wrapper around the sender's transport); list_ms: the loop's "
            "listing (whole rows), list_ids_ms: the broadcast's (ids only)"
        ),
        "injected_latency_ms": latency_ms,
        "sender_max_workers": DEFAULT_MAX_WORKERS,
        "target": {"connections": TARGET_SIZE, "speedup": TARGET_SPEEDUP},
        "gateway_rss": rss,
        **results,
    }
    problems = []
    for key, figures in results.items():
        size = figures["connections"]
        comparison = (
            f"{figures['speedup_ratio']:.1f}x faster than sequential "
            f"({figures['sequential_ms']['p50']:.0f} ms); posting alone "
            f"{figures['posting_speedup_ratio']:.1f}x"
        )
        if size == TARGET_SIZE:
            met = figures["speedup_ratio"] >= TARGET_SPEEDUP
            comparison += f"; target >= {TARGET_SPEEDUP:.0f}x: " + ("met" if met else "MISSED")
        section.row(
            f"broadcast to {size} ({latency_ms:.0f} ms/post, median)",
            f"{figures['broadcast_ms']['p50']:.0f} ms",
            comparison,
        )
        if figures["messages_lost"] or figures["messages_duplicated"]:
            problems.append(
                f"{key}: {figures['messages_lost']} lost, "
                f"{figures['messages_duplicated']} duplicated"
            )
    section.row(
        "messages lost / duplicated",
        str(sum(f["messages_lost"] for f in results.values()))
        + " / "
        + str(sum(f["messages_duplicated"] for f in results.values())),
        "every connection must receive every frame once",
    )
    if problems:
        section.status = STATUS_FAILED
        section.reason = "; ".join(problems)
    return section
