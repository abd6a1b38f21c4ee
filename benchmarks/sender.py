"""CPU per post: ``MessageSender``'s lean path against the boto3 client path, side by side.

One connection is held open on local mode's gateway by the load client (its own process); this
process posts ``POSTS`` frames to it on each path, alternating the order every round, and reads
its own CPU time (``time.process_time``) around each batch: the gateway's work is in another
process, so what is measured is the sender's. Afterwards the connection must hold every frame.

What a 256 MB Lambda function would see is derived from the measured CPU, not emulated with a
quota: Lambda gives a function CPU in proportion to its memory (1769 MB is one vCPU), and a
post's CPU time is what the quota stretches. Measured CPU per post divided by that share is
the wall time it costs in the function; the posts per second one function sustains are the
share over the CPU per post (a cgroup quota would say the same, but needs root and Linux).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks import PROJECT_ROOT, stats
from benchmarks.environment import base_environment
from benchmarks.load_driver import HeldConnections
from benchmarks.local_stack import RunningStack, local_stack, runtime_on
from benchmarks.mode import Mode
from benchmarks.report import STATUS_FAILED, Section, progress
from runtime import schema
from runtime.connections import ConnectionStore
from runtime.sender import MessageSender, serialize

NAME = "sender"
PATHS = ("lean", "boto3")
TARGET_CPU_RATIO = 0.35
# Lambda allocates CPU in proportion to memory: 1769 MB is one full vCPU.
LAMBDA_MB_PER_VCPU = 1769
LAMBDA_MEMORY_MB = 256
LAMBDA_CPU_SHARE = LAMBDA_MEMORY_MB / LAMBDA_MB_PER_VCPU


@dataclass(frozen=True)
class HeldStack:
    """A local stack, one held connection of ``user_id``, and a store on its table."""

    stack: RunningStack
    held: HeldConnections
    store: ConnectionStore
    connection_ids: list[str]


@contextmanager
def held_stack(work_dir: Path, user_id: str, connections: int = 1) -> Iterator[HeldStack]:
    """Local mode with ``connections`` of one user held open; this process's environment points
    at its embedded moto while the block runs."""
    with local_stack(work_dir, {schema.ENV_MAX_CONNECTIONS_PER_USER: "0"}) as stack:
        env = base_environment({"PYTHONPATH": str(PROJECT_ROOT)})
        with (
            (work_dir / f"hold-{user_id}.log").open("wb") as log,
            HeldConnections(stack.ws_url, connections, user_id, stack.state_dir, env, log) as held,
            runtime_on(stack) as store,
        ):
            if held.connected != connections:
                raise RuntimeError(f"{held.connected} of {connections} connections opened")
            ids = store.connection_ids_for_user(user_id)
            # The sender's EMF metrics (printed every 100 values) would garble the table.
            with contextlib.redirect_stdout(io.StringIO()):
                yield HeldStack(stack, held, store, ids)


def _posts(mode: Mode) -> int:
    return mode.pick(1000, 1000, 50)


def _rounds(mode: Mode) -> int:
    return mode.pick(7, 3, 1)


def _cpu_ms_per_post(sender: MessageSender, connection_id: str, posts: int, tag: str) -> float:
    frames = [
        serialize({"type": "system", "event": "notice", "data": {tag: index}})
        for index in range(posts)
    ]
    began = time.process_time()
    for data in frames:
        if not sender.send_message(connection_id, data.decode("utf-8")):
            raise RuntimeError(f"a post on the {tag} path was not delivered")
    return (time.process_time() - began) * 1000 / posts


def run(mode: Mode) -> Section:
    posts = _posts(mode)
    rounds = _rounds(mode)
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    with (
        tempfile.TemporaryDirectory(prefix="bench-sender-") as temporary,
        held_stack(Path(temporary), "sender-bench") as bench,
    ):
        endpoint = bench.stack.management_endpoint
        (connection_id,) = bench.connection_ids
        with (
            MessageSender(bench.store, endpoint, posting="lean") as lean,
            MessageSender(bench.store, endpoint, posting="boto3") as boto3_path,
        ):
            senders = {"lean": lean, "boto3": boto3_path}
            # Warm both: the first posts open connections and load botocore's models.
            for path, sender in senders.items():
                _cpu_ms_per_post(sender, connection_id, 20, f"warm-{path}")
            for index in range(rounds):
                order = PATHS if index % 2 == 0 else tuple(reversed(PATHS))
                for path in order:
                    samples[path].append(
                        _cpu_ms_per_post(senders[path], connection_id, posts, f"{path}-{index}")
                    )
            progress(f"sender: {rounds} rounds of {posts} posts per path")
        expected = 2 * (20 + rounds * posts)
        report = bench.held.report(expected)
    received = sum(report["distinct_per_connection"])
    return _section(samples, posts, rounds, expected, received)


def lambda_figures(cpu_ms_per_post: float) -> dict[str, float]:
    """What one 256 MB function sees, scaled from the measured CPU per post."""
    return {
        "cpu_share": round(LAMBDA_CPU_SHARE, 4),
        "wall_ms_per_post_cpu": round(cpu_ms_per_post / LAMBDA_CPU_SHARE, 2),
        "posts_per_second_per_function": round(LAMBDA_CPU_SHARE * 1000 / cpu_ms_per_post, 1),
    }


def _section(
    samples: dict[str, list[float]], posts: int, rounds: int, expected: int, received: int
) -> Section:
    section = Section(NAME)
    medians = {path: stats.median(values) for path, values in samples.items()}
    ratio = stats.ratio(medians["lean"], medians["boto3"])
    met = ratio <= TARGET_CPU_RATIO
    section.data = {
        "method": (
            "one held connection on local mode's gateway; this process posts the same frames "
            f"{posts} at a time on each path, alternating, {rounds} rounds after a warm-up; "
            "time.process_time per batch (the gateway is another process); medians. Lambda "
            f"figures scale the measured CPU by a {LAMBDA_MEMORY_MB} MB function's CPU share "
            f"({LAMBDA_MEMORY_MB}/{LAMBDA_MB_PER_VCPU} of a vCPU)"
        ),
        "posts_per_round": posts,
        "rounds": rounds,
        "cpu_ms_per_post": {
            path: stats.summary(values, digits=4) for path, values in samples.items()
        },
        "cpu_per_post_ratio": ratio,
        "target": {"cpu_per_post_ratio_at_most": TARGET_CPU_RATIO, "met": met},
        "lambda_256mb": {path: lambda_figures(medians[path]) for path in PATHS},
        "frames_posted": expected,
        "frames_received": received,
        "messages_lost": max(0, expected - received),
    }
    for path in PATHS:
        figures = section.data["lambda_256mb"][path]
        section.row(
            f"CPU per post, {path} path (median)",
            f"{medians[path]:.3f} ms",
            f"in a 256 MB Lambda: {figures['wall_ms_per_post_cpu']:.1f} ms of CPU per post, "
            f"{figures['posts_per_second_per_function']:.0f} posts/s per function",
        )
    section.row(
        "lean / boto3 CPU per post",
        f"{ratio:.2f}x",
        f"target <= {TARGET_CPU_RATIO}x: " + ("met" if met else "MISSED"),
    )
    if received != expected:
        section.status = STATUS_FAILED
        section.reason = f"{expected - received} of {expected} frames not received"
    return section
