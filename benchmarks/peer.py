"""Peer comparison: the same echo handler behind Architect's sandbox, serverless-offline and ours.

All three emulators are started (``benchmarks.peer_emulators``), then each round drives each
of them, in a shuffled order, with the same closed-loop load client at 1 and at 10 clients:
a warm-up (the first invocations load the handler, so they are not counted), then round trips
for a fixed time. Reported per emulator and client count: connect latency, round-trip p50/p99
and throughput, as medians over the rounds; and, for each peer, ours divided by theirs.
"""

from __future__ import annotations

import functools
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import PROJECT_ROOT, cpu, stats
from benchmarks.environment import base_environment
from benchmarks.load_driver import run_scenario
from benchmarks.mode import Mode
from benchmarks.peer_emulators import (
    EMULATORS,
    PeersUnavailable,
    RunningEmulator,
    ensure_installed,
)
from benchmarks.report import STATUS_SKIPPED, Section, lookup

NAME = "peer"
CLIENT_COUNTS = (1, 10)
OURS = "ours"
# Ours over theirs: at 10 clients, throughput >= these, at an equal or better p99.
TARGET_THROUGHPUT_RATIO = {"serverless_offline": 1.5, "architect": 5.0}
TARGET_P99_NOT_WORSE = ("serverless_offline",)


def _drive(
    emulator: RunningEmulator, clients: int, warmup: float, warmup_messages: int, duration: float
) -> dict[str, Any]:
    # Each emulator leads a session of its own (ServerProcess): its CPU is that session's.
    measure_cpu = ["--cpu-of-session", str(emulator.process.pid)] if cpu.available() else []
    return run_scenario(
        [
            "closed-loop",
            *measure_cpu,
            "--url",
            emulator.ws_url,
            "--clients",
            str(clients),
            "--warmup",
            str(warmup),
            "--warmup-messages",
            str(warmup_messages),
            "--duration",
            str(duration),
        ],
        base_environment({"PYTHONPATH": str(PROJECT_ROOT)}),
        timeout=warmup + duration + 180,
    )


def _combine(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of one emulator at one client count."""

    def median_of(dotted: str) -> float | None:
        values = [float(v) for s in samples if isinstance(v := lookup(s, dotted), int | float)]
        return round(stats.median(values), 2) if values else None

    return {
        "rounds": len(samples),
        "throughput_per_second": median_of("throughput_per_second"),
        "rtt_p50_ms": median_of("rtt_ms.p50"),
        "rtt_p99_ms": median_of("rtt_ms.p99"),
        "connect_p50_ms": median_of("connect_ms.p50"),
        **_cpu_figures(median_of),
        "messages": sum(int(s.get("messages", 0)) for s in samples),
        "errors": sum(int(s.get("errors", 0)) for s in samples),
        "samples": [_headline(sample) for sample in samples],
    }


def _cpu_figures(value_of: Callable[[str], Any]) -> dict[str, Any]:
    """The emulator's CPU per echo (in all, and split into its server process and the processes
    it spawned: our gateway and its handler workers, serverless-offline's node and its Python
    handler processes) and in cores, and the load client's per echo, where the round measured
    them (``benchmarks.cpu``; not on systems without ``/proc``); and the shares of the whole
    machine's vCPU time that were stolen by the hypervisor or idle meanwhile."""
    figures = {
        "cpu_ms_per_echo": value_of("cpu_ms_per_message.emulator"),
        "server_cpu_ms_per_echo": value_of("cpu_ms_per_message.emulator_server"),
        "spawned_cpu_ms_per_echo": value_of("cpu_ms_per_message.emulator_spawned"),
        "cpu_cores": value_of("cpu_cores.emulator"),
        "load_client_cpu_ms_per_echo": value_of("cpu_ms_per_message.load_client"),
        "machine_steal_share": value_of("machine_share.steal"),
        "machine_idle_share": value_of("machine_share.idle"),
        "machine_other_cores": value_of("machine_other_cores"),
    }
    return {key: value for key, value in figures.items() if value is not None}


def _headline(sample: dict[str, Any]) -> dict[str, Any]:
    """One round's figures as the results keep them: its headline, not every statistic."""
    rtt, connect = sample.get("rtt_ms") or {}, sample.get("connect_ms") or {}
    headline = {
        "throughput_per_second": sample.get("throughput_per_second"),
        "rtt_p50_ms": rtt.get("p50"),
        "rtt_p99_ms": rtt.get("p99"),
        "connect_p50_ms": connect.get("p50"),
        **_cpu_figures(functools.partial(lookup, sample)),
        "messages": sample.get("messages", 0),
        "errors": sample.get("errors", 0),
    }
    if sample.get("error_kinds"):
        headline["error_kinds"] = sample["error_kinds"]
    return headline


def run(mode: Mode, echo_posting: str = "boto3") -> Section:
    """``echo_posting``: how the shared echo handler posts back (``benchmarks.echo``)."""
    rounds = mode.pick(3, 1, 1)
    warmup = float(mode.pick(3, 1, 1))
    warmup_messages = mode.pick(5, 1, 1)
    duration = float(mode.pick(10, 2, 1))
    try:
        versions = ensure_installed()
        names = list(EMULATORS)
        missing = ""
    except PeersUnavailable as exc:
        versions = ""
        names = [OURS]
        missing = str(exc)
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {clients: [] for clients in CLIENT_COUNTS} for name in names
    }
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as temporary:
        work_dir = Path(temporary)
        running: list[RunningEmulator] = []
        startup: dict[str, float] = {}
        try:
            for name in names:
                began = time.perf_counter()
                running.append(EMULATORS[name](work_dir, echo_posting))
                startup[name] = round(time.perf_counter() - began, 2)
            for _ in range(rounds):
                order = list(running)
                random.shuffle(order)
                for emulator in order:
                    for clients in CLIENT_COUNTS:
                        samples[emulator.name][clients].append(
                            _drive(emulator, clients, warmup, warmup_messages, duration)
                        )
        finally:
            for emulator in running:
                emulator.process.stop()
    section = _section(samples, versions, rounds, warmup, duration)
    section.data["echo_posting"] = echo_posting
    for name, seconds in startup.items():
        section.data[name]["startup_seconds"] = seconds
    if missing:
        section.status = STATUS_SKIPPED
        section.reason = f"peers skipped: {missing}"
        section.row("peers", "skipped", missing)
    return section


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs <= 0 or ours <= 0:
        return None
    return stats.ratio(ours, theirs)


def _section(
    samples: dict[str, dict[int, list[dict[str, Any]]]],
    versions: str,
    rounds: int,
    warmup: float,
    duration: float,
) -> Section:
    section = Section(NAME)
    figures: dict[str, dict[str, Any]] = {
        name: {f"clients_{clients}": _combine(runs) for clients, runs in by_clients.items()}
        for name, by_clients in samples.items()
    }
    ours = figures[OURS]
    for name, figure in figures.items():
        if name == OURS:
            continue
        ratios = {
            "throughput_ratio": _ratio(
                ours["clients_10"]["throughput_per_second"],
                figure["clients_10"]["throughput_per_second"],
            ),
            "throughput_1_client_ratio": _ratio(
                ours["clients_1"]["throughput_per_second"],
                figure["clients_1"]["throughput_per_second"],
            ),
            "p99_ratio": _ratio(
                ours["clients_10"]["rtt_p99_ms"], figure["clients_10"]["rtt_p99_ms"]
            ),
            "connect_latency_ratio": _ratio(
                ours["clients_10"]["connect_p50_ms"], figure["clients_10"]["connect_p50_ms"]
            ),
            "cpu_per_echo_ratio": _ratio(
                ours["clients_10"].get("cpu_ms_per_echo"),
                figure["clients_10"].get("cpu_ms_per_echo"),
            ),
        }
        figure.update({key: value for key, value in ratios.items() if value is not None})
        target = TARGET_THROUGHPUT_RATIO[name]
        met = ratios["throughput_ratio"] is not None and ratios["throughput_ratio"] >= target
        if name in TARGET_P99_NOT_WORSE:
            met = met and ratios["p99_ratio"] is not None and ratios["p99_ratio"] <= 1.0
        figure["target"] = {
            "throughput_ratio_at_least": target,
            "p99_not_worse": name in TARGET_P99_NOT_WORSE,
            "met": met,
        }
    section.data = {
        "method": (
            "closed-loop echo round trips from a separate load-client process; same "
            "benchmarks/echo.py handler behind every emulator; warm-up not counted; medians over "
            "rounds; *_ratio = ours / theirs (throughput: higher is better for ours; p99, "
            "connect latency and CPU per echo: lower is better for ours); cpu_ms_per_echo and "
            "cpu_cores: user + system CPU of every process of the emulator's session over the "
            "measured seconds (/proc), per echo and in cores; server_cpu_ms_per_echo is the "
            "session leader's share (our gateway, serverless-offline's node), "
            "spawned_cpu_ms_per_echo that of the processes it started (the handlers); "
            "machine_steal_share and machine_idle_share: the shares of the whole machine's "
            "vCPU time over the measured seconds that the hypervisor gave another guest "
            "(steal, a shared host's noise) and that nothing wanted (idle), /proc/stat; "
            "machine_other_cores: the cores busy meanwhile outside the emulator and the load "
            "client (another guest's work is in steal, not here)"
        ),
        "versions": versions,
        "rounds": rounds,
        "warmup_seconds": warmup,
        "duration_seconds": duration,
        **figures,
    }
    for name, figure in figures.items():
        for clients in CLIENT_COUNTS:
            combined = figure[f"clients_{clients}"]
            note = (
                f"p50 {_ms(combined['rtt_p50_ms'])}, p99 {_ms(combined['rtt_p99_ms'])}, "
                f"connect {_ms(combined['connect_p50_ms'])}, {combined['errors']} errors"
            )
            if name != OURS and clients == 10 and "throughput_ratio" in figure:
                target = figure["target"]
                note += (
                    f"; ours {figure['throughput_ratio']:.1f}x the throughput"
                    + (f", {figure['p99_ratio']:.2f}x the p99" if "p99_ratio" in figure else "")
                    + f" (target >= {target['throughput_ratio_at_least']:g}x"
                    + (", p99 not worse" if target["p99_not_worse"] else "")
                    + "): "
                    + ("met" if target["met"] else "MISSED")
                )
            throughput = combined["throughput_per_second"]
            section.row(
                f"{name}, {clients} client{'s' if clients > 1 else ''}: throughput",
                "-" if throughput is None else f"{throughput:.0f} msg/s",
                note,
            )
    return section


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
