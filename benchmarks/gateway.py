"""Gateway load: 100 and 1000 concurrent connections sending ``ping`` at a fixed total rate.

The load client, in its own process, opens the connections (one user and one dev token each)
and sends ``{"action":"ping"}`` open-loop at the total rate, spread evenly over the
connections with random phases; round trip = send to the ``pong`` route response. Each load
first runs for ``WARMUP_SECONDS`` unmeasured (the first calls of a fresh stack: imports, pools,
moto's first writes; a 20 s round's p99 is its 40 slowest pings). Local mode
runs in another process, in these configurations, one after the other in one run so that their
ratios are measured on the same machine at the same time:

- ``emulator``: the gateway alone, ``ping`` answered by ``benchmarks.echo.pong`` without any AWS
  call: the emulator's own cost (target: p99 <= 20 ms at 1000 connections and 200 messages/s).
- ``local_stack``: the full stack as ``make dev`` runs it: this project's handlers (authorizer,
  ``$connect``, the message handler) in ``python -m local``'s default 2 worker processes,
  against the embedded moto in its own process; each ping is a real conditional ``UpdateItem``
  (target: p99 <= 50 ms and no error at 100 and at 1000 connections, 200 messages/s; the full
  run also measures it unsaturated, 100 connections at 50 messages/s).
- ``local_stack_threads``: the same with the handlers on the gateway's threads
  (``--handler-processes 0``), to show what the worker processes buy.

The per-connection rate limit is raised (``MESSAGES_PER_MINUTE``) so that 100 connections sharing
200 messages/s (120 a minute each) measure the gateway, not the limiter; every ping still runs
the same ``UpdateItem``.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import PROJECT_ROOT, cpu
from benchmarks.environment import base_environment
from benchmarks.load_driver import run_scenario
from benchmarks.local_stack import RunningStack, local_stack
from benchmarks.mode import Mode
from benchmarks.report import Section
from runtime import schema

NAME = "gateway"
TARGET_RATE_PER_SECOND = 200.0
UNSATURATED_RATE_PER_SECOND = 50.0
WARMUP_SECONDS = 2  # of the same load before each measured load: not the steady state
TARGET_CONNECTIONS = 1000
TARGET_P99_MS = {"emulator": 20.0, "local_stack": 50.0}
MESSAGES_PER_MINUTE = "100000"
EMULATOR_ROUTES = "benchmarks.echo:PING_ROUTES"


@dataclass(frozen=True)
class Load:
    connections: int
    rate: float

    @property
    def key(self) -> str:
        return f"c{self.connections}_r{self.rate:g}"


@dataclass(frozen=True)
class Configuration:
    name: str
    handlers: str | None  # None: the project's
    handler_processes: int | None  # None: python -m local's default
    loads: tuple[Load, ...]


def _configurations(mode: Mode) -> tuple[Configuration, ...]:
    if mode is Mode.SMOKE:
        smoke = (Load(20, 20.0),)
        return (
            Configuration("emulator", EMULATOR_ROUTES, None, smoke),
            Configuration("local_stack", None, None, smoke),
        )
    target = (Load(100, TARGET_RATE_PER_SECOND), Load(TARGET_CONNECTIONS, TARGET_RATE_PER_SECOND))
    # The full run also measures the stack unsaturated (100 connections, 50 pings/s), after
    # the target loads, so that these find the stack as fresh in every mode.
    unsaturated = (Load(100, UNSATURATED_RATE_PER_SECOND),) if mode is Mode.FULL else ()
    configurations = [
        Configuration("emulator", EMULATOR_ROUTES, None, target),
        Configuration("local_stack", None, None, target + unsaturated),
    ]
    if mode is Mode.FULL:
        configurations.append(
            Configuration("local_stack_threads", None, 0, (Load(100, TARGET_RATE_PER_SECOND),))
        )
    return tuple(configurations)


def _drive(
    stack: RunningStack, load: Load, duration: float, warmup: float, target_p99: float
) -> dict[str, Any]:
    env = base_environment({"PYTHONPATH": str(PROJECT_ROOT)})
    # The stack leads a session of its own (ServerProcess): the gateway, its workers and moto.
    measure_cpu = ["--cpu-of-session", str(stack.process.pid)] if cpu.available() else []
    result = run_scenario(
        [
            "open-loop",
            *measure_cpu,
            "--url",
            stack.ws_url,
            "--connections",
            str(load.connections),
            "--rate",
            str(load.rate),
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
            "--token-state-dir",
            str(stack.state_dir),
            "--user-prefix",
            f"load-{load.key}-",
        ],
        env,
        timeout=duration + 600,
    )
    result["gateway_rss"] = stack.process.rss_mb()
    p99 = result["rtt_ms"].get("p99")
    if p99 is not None:
        result["p99_vs_target_ratio"] = round(max(p99, 0.01) / target_p99, 2)
    return result


def _target_of(configuration: str) -> float | None:
    return TARGET_P99_MS.get(configuration)


def run(mode: Mode) -> Section:
    duration = float(mode.pick(20, 5, 2))
    warmup = float(mode.pick(WARMUP_SECONDS, 1, 0))
    results: dict[str, Any] = {}
    settings = {schema.ENV_MESSAGES_PER_MINUTE: MESSAGES_PER_MINUTE}
    for configuration in _configurations(mode):
        with (
            tempfile.TemporaryDirectory(prefix="bench-gateway-") as temporary,
            local_stack(
                Path(temporary),
                settings,
                configuration.handlers,
                configuration.handler_processes,
            ) as stack,
        ):
            figures: dict[str, Any] = {
                "handlers": configuration.handlers
                or "the project's (runtime.handlers) against moto",
                "handler_processes": (
                    "python -m local's default"
                    if configuration.handler_processes is None
                    else configuration.handler_processes
                ),
                "idle_rss": stack.process.rss_mb(),
            }
            target = _target_of(configuration.name) or TARGET_P99_MS["local_stack"]
            for load in configuration.loads:
                figures[load.key] = _drive(stack, load, duration, warmup, target)
            results[configuration.name] = figures
    return _section(results, duration, warmup)


def _host_note(load: dict[str, Any]) -> str:
    """The stack's CPU per ping and what the host did meanwhile, where the round measured it:
    a slow round on a host busy elsewhere or stealing the vCPUs reads differently from one on a
    quiet host."""
    share, other = load.get("machine_share") or {}, load.get("machine_other_cores")
    per_ping = (load.get("cpu_ms_per_message") or {}).get("emulator")
    if per_ping is None or not {"idle", "steal"} <= share.keys() or other is None:
        return ""
    return (
        f"; CPU {per_ping:.1f} ms/ping; host: {share['steal']:.0%} stolen, "
        f"{share['idle']:.0%} idle, {other:.2f} cores busy elsewhere"
    )


def _met(figures: dict[str, Any], target_p99: float) -> bool:
    return bool(figures["rtt_ms"].get("p99", math.inf) <= target_p99 and figures["errors"] == 0)


def _is_target(configuration: str, load: dict[str, Any]) -> bool:
    if configuration == "emulator":
        return bool(load["connections"] == TARGET_CONNECTIONS)
    return configuration == "local_stack"


def _continuity(results: dict[str, Any]) -> dict[str, Any]:
    """Keys earlier runs wrote under other names, so that every ``_ratio`` key results.json
    had stays (``local_stack_processes``: the worker processes, local mode's default since;
    its figure is ``local_stack``'s, not another run)."""
    load = results.get("local_stack", {}).get(Load(100, TARGET_RATE_PER_SECOND).key)
    if not isinstance(load, dict) or "p99_vs_target_ratio" not in load:
        return {}
    return {
        "local_stack_processes": {
            "same_as": "local_stack",
            "c100_r200": {"p99_vs_target_ratio": load["p99_vs_target_ratio"]},
        }
    }


def _section(results: dict[str, Any], duration: float, warmup: float) -> Section:
    section = Section(NAME)
    section.data = {
        "method": (
            "open-loop pings at a fixed total rate from a separate load-client process, after "
            "warmup_seconds of the same load that are not measured (errors in them count); the "
            "configurations run one after the other in one run; RSS of the local-mode process "
            "(gateway, and the handlers when they run on its threads; moto and the handler "
            "workers are processes of their own); CPU per ping of all of local mode's processes "
            "(cpu_ms_per_message.emulator), and the machine's stolen and idle shares and the "
            "cores busy outside local mode and the load client meanwhile (machine_share, "
            "machine_other_cores), where /proc has them"
        ),
        "duration_seconds": duration,
        "warmup_seconds": warmup,
        "target": {
            "emulator": {
                "connections": TARGET_CONNECTIONS,
                "rate_per_second": TARGET_RATE_PER_SECOND,
                "p99_ms": TARGET_P99_MS["emulator"],
                "errors": 0,
            },
            "local_stack": {
                "connections": [100, TARGET_CONNECTIONS],
                "rate_per_second": TARGET_RATE_PER_SECOND,
                "p99_ms": TARGET_P99_MS["local_stack"],
                "errors": 0,
            },
        },
        **results,
        **_continuity(results),
    }
    for configuration, figures in results.items():
        target = _target_of(configuration)
        for load in figures.values():
            if not isinstance(load, dict) or "rtt_ms" not in load:
                continue
            rtt = load["rtt_ms"]
            note = (
                f"p99 {rtt.get('p99', math.nan):.1f} ms; {load['errors']} errors; "
                f"{load['achieved_rate_per_second']:.0f} msg/s sent; "
                f"RSS {load['gateway_rss'].get('rss_mb', 0):.0f} MB" + _host_note(load)
            )
            if (
                target is not None
                and load["target_rate_per_second"] == TARGET_RATE_PER_SECOND
                and _is_target(configuration, load)
            ):
                note += f"; target p99 <= {target:.0f} ms, 0 errors: " + (
                    "met" if _met(load, target) else "MISSED"
                )
            section.row(
                f"{configuration}: {load['connections']} conns, "
                f"{load['target_rate_per_second']:.0f} ping/s, p50",
                f"{rtt.get('p50', math.nan):.1f} ms",
                note,
            )
    return section
