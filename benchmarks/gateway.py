"""Gateway load: 100 and 1000 concurrent connections sending ``ping`` at a fixed total rate.

The load client, in its own process, opens the connections (one user and one dev token each)
and sends ``{"action":"ping"}`` open-loop at the total rate, spread evenly over the
connections with random phases; round trip = send to the ``pong`` route response. Local mode
runs in another process, in two configurations:

- ``emulator``: the gateway alone, ``ping`` answered by ``benchmarks.echo.pong`` without any AWS
  call. This is what the target (p99 <= 20 ms at 1000 connections and 200 messages/s) is about:
  the emulator's own cost.
- ``local_stack``: this project's handlers (authorizer, ``$connect``, the message handler) against
  the embedded moto, as ``make dev`` runs them: each ping is a real conditional ``UpdateItem``,
  which moto serves in the same interpreter. Also run at a lower rate, to show local mode
  unsaturated.

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

from benchmarks.environment import base_environment
from benchmarks.load_client import run_scenario
from benchmarks.local_stack import PROJECT_ROOT, RunningStack, local_stack
from benchmarks.mode import Mode
from benchmarks.report import Section
from runtime import schema

NAME = "gateway"
TARGET_RATE_PER_SECOND = 200.0
UNSATURATED_RATE_PER_SECOND = 50.0
TARGET_CONNECTIONS = 1000
TARGET_P99_MS = 20.0
MESSAGES_PER_MINUTE = "100000"
EMULATOR_ROUTES = "benchmarks.echo:PING_ROUTES"


@dataclass(frozen=True)
class Load:
    connections: int
    rate: float

    @property
    def key(self) -> str:
        return f"c{self.connections}_r{self.rate:g}"


def _loads(mode: Mode) -> dict[str, tuple[Load, ...]]:
    if mode is Mode.SMOKE:
        return {"emulator": (Load(20, 20.0),), "local_stack": (Load(20, 20.0),)}
    emulator = (Load(100, TARGET_RATE_PER_SECOND), Load(1000, TARGET_RATE_PER_SECOND))
    stack: tuple[Load, ...]
    if mode is Mode.QUICK:
        stack = (Load(100, UNSATURATED_RATE_PER_SECOND),)
    else:
        stack = (
            Load(100, UNSATURATED_RATE_PER_SECOND),
            Load(100, TARGET_RATE_PER_SECOND),
            Load(1000, TARGET_RATE_PER_SECOND),
        )
    return {"emulator": emulator, "local_stack": stack}


def _drive(stack: RunningStack, load: Load, duration: float) -> dict[str, Any]:
    env = base_environment({"PYTHONPATH": str(PROJECT_ROOT)})
    result = run_scenario(
        [
            "open-loop",
            "--url",
            stack.ws_url,
            "--connections",
            str(load.connections),
            "--rate",
            str(load.rate),
            "--duration",
            str(duration),
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
        result["p99_vs_target_ratio"] = round(max(p99, 0.01) / TARGET_P99_MS, 2)
    return result


def run(mode: Mode) -> Section:
    duration = float(mode.pick(20, 3, 2))
    results: dict[str, Any] = {}
    settings = {schema.ENV_MESSAGES_PER_MINUTE: MESSAGES_PER_MINUTE}
    for configuration, loads in _loads(mode).items():
        handlers = EMULATOR_ROUTES if configuration == "emulator" else None
        with (
            tempfile.TemporaryDirectory(prefix="bench-gateway-") as temporary,
            local_stack(Path(temporary), settings, handlers) as stack,
        ):
            figures: dict[str, Any] = {
                "handlers": handlers or "the project's (runtime.handlers) against moto",
                "idle_rss": stack.process.rss_mb(),
            }
            for load in loads:
                figures[load.key] = _drive(stack, load, duration)
            results[configuration] = figures
    return _section(results, duration)


def _met(figures: dict[str, Any]) -> bool:
    return bool(figures["rtt_ms"].get("p99", math.inf) <= TARGET_P99_MS and figures["errors"] == 0)


def _section(results: dict[str, Any], duration: float) -> Section:
    section = Section(NAME)
    section.data = {
        "method": (
            "open-loop pings at a fixed total rate from a separate load-client process; "
            "RSS of the local-mode process (gateway, handlers and embedded moto)"
        ),
        "duration_seconds": duration,
        "target": {
            "configuration": "emulator",
            "connections": TARGET_CONNECTIONS,
            "rate_per_second": TARGET_RATE_PER_SECOND,
            "p99_ms": TARGET_P99_MS,
            "errors": 0,
        },
        **results,
    }
    for configuration, figures in results.items():
        for load in figures.values():
            if not isinstance(load, dict) or "rtt_ms" not in load:
                continue
            rtt = load["rtt_ms"]
            note = (
                f"p99 {rtt.get('p99', math.nan):.1f} ms; {load['errors']} errors; "
                f"{load['achieved_rate_per_second']:.0f} msg/s sent; "
                f"RSS {load['gateway_rss'].get('rss_mb', 0):.0f} MB"
            )
            is_target = (
                configuration == "emulator"
                and load["connections"] == TARGET_CONNECTIONS
                and load["target_rate_per_second"] == TARGET_RATE_PER_SECOND
            )
            if is_target:
                note += f"; target p99 <= {TARGET_P99_MS:.0f} ms, 0 errors: " + (
                    "met" if _met(load) else "MISSED"
                )
            section.row(
                f"{configuration}: {load['connections']} conns, "
                f"{load['target_rate_per_second']:.0f} ping/s, p50",
                f"{rtt.get('p50', math.nan):.1f} ms",
                note,
            )
    return section
