"""CPU time of processes, read from ``/proc`` (Linux): what a benchmark's processes cost.

Wall-clock figures move with whatever else the shared machine runs; the CPU a process used for
a known amount of work does much less, and it says which process a limit comes from.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int | str) -> list[str]:
    """``/proc/<pid>/stat``'s fields after the command name, so field 3 of proc(5) is [0]."""
    return (_PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()


def _cpu_seconds(fields: list[str]) -> float:
    # utime and stime: fields 14 and 15 of proc(5), counted from 1 with the pid.
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and all its threads."""
    return _cpu_seconds(_stat_fields(pid))


def available() -> bool:
    return (_PROC / "self" / "stat").exists()


def session_cpu_seconds(session: int) -> dict[int, float]:
    """User + system CPU time of every live process in session ``session``, by pid.

    A server the benchmarks start leads a session of its own (``ServerProcess``), so this is the
    server and everything it spawned: our gateway's handler workers, serverless-offline's Python
    processes. A process that has exited is no longer listed, and its CPU time with it.
    """
    found: dict[int, float] = {}
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
        except (FileNotFoundError, ProcessLookupError):  # it exited meanwhile
            continue
        # session: field 6 of proc(5).
        if int(fields[3]) == session:
            found[int(entry.name)] = _cpu_seconds(fields)
    return found


def session_cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the session's processes used between two ``session_cpu_seconds`` readings;
    a process started in between counts from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def session_cpu_split(
    before: dict[int, float], after: dict[int, float], session: int
) -> dict[str, float]:
    """``session_cpu_used`` in two parts: ``server``, the session leader itself (the process a
    benchmark started: our gateway, serverless-offline's node), and ``spawned``, everything it
    started (our handler workers and moto, serverless-offline's Python handler processes)."""
    server = after.get(session, 0.0) - before.get(session, 0.0)
    return {"server": server, "spawned": session_cpu_used(before, after) - server}


# /proc/stat's first line: the whole machine's CPU time by state since boot, in clock ticks
# (proc(5); guest time is already counted in user and nice, so it is left out).
_MACHINE_STATES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_cpu_ticks() -> dict[str, int]:
    """All vCPUs' time by state since boot (``/proc/stat``), for ``machine_shares``."""
    fields = (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    return {state: int(value) for state, value in zip(_MACHINE_STATES, fields, strict=False)}


def machine_shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Which share of the machine's CPU time between two ``machine_cpu_ticks`` readings was
    ``idle`` (no process wanted it; iowait included) and ``steal`` (a process wanted it, but the
    hypervisor ran another guest on that vCPU). Steal is a shared host's noise, beyond any
    process's control: a round that lost a fifth of its vCPU time to it is slower for that
    alone. Empty when no time passed."""
    elapsed = {state: after.get(state, 0) - before.get(state, 0) for state in _MACHINE_STATES}
    total = sum(elapsed.values())
    if total <= 0:
        return {}
    return {
        "idle": round((elapsed["idle"] + elapsed["iowait"]) / total, 3),
        "steal": round(elapsed["steal"] / total, 3),
    }
