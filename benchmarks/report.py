"""What a benchmark hands back, the one table printed, and the results file.

A run writes ``.build/bench/results.json`` unless told otherwise; ``--update-results`` writes the
committed ``benchmarks/results.json`` instead, which docs/performance.md renders. The
file has one top-level key per benchmark plus ``machine`` and ``command``. A
benchmark that was not run by this command keeps what an earlier run wrote (its own ``command``
says which run that was), or ``{"status": "not run"}``. Every ratio is a finite number under a
key ending in ``_ratio``, so other tools can read the file without knowing its layout.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import PROJECT_ROOT

BENCHMARK_NAMES = ("cold_start", "aws_calls", "sender", "stream", "fanout", "gateway", "peer")
# The committed figures docs/performance.md's tables are rendered from (``--update-results``).
RESULTS_PATH = Path(__file__).with_name("results.json")
# Where a run writes by default: outside the tracked tree, so a run leaves the worktree clean.
RUN_RESULTS_PATH = PROJECT_ROOT / ".build" / "bench" / "results.json"
RATIO_SUFFIX = "_ratio"
RESULTS_WIDTH = 100  # columns: see to_json_text

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"
STATUS_NOT_RUN = "not run"


@dataclass(frozen=True)
class Row:
    """One line of the printed table."""

    measurement: str
    value: str
    comparison: str = ""


@dataclass
class Section:
    """One benchmark's outcome: the JSON it contributes and the rows it prints."""

    name: str
    status: str = STATUS_OK
    data: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    reason: str = ""

    def row(self, measurement: str, value: str, comparison: str = "") -> None:
        self.rows.append(Row(measurement, value, comparison))

    def to_json(self, command: str) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "command": command}
        if self.reason:
            body["reason"] = self.reason
        body.update(self.data)
        return body


def lookup(data: Any, dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``, or None where a key is missing."""
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def progress(message: str) -> None:
    """A progress line on stderr (the table goes to stdout at the end)."""
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


def failed(name: str, reason: str) -> Section:
    section = Section(name, STATUS_FAILED, reason=reason)
    section.row("FAILED", "-", reason)
    return section


def _command_output(*command: str) -> str:
    if shutil.which(command[0]) is None:
        return ""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return completed.stdout.strip()


def _lscpu() -> dict[str, str]:
    wanted = {"Model name", "Architecture", "CPU(s)", "Thread(s) per core", "Hypervisor vendor"}
    facts: dict[str, str] = {}
    for line in _command_output("lscpu").splitlines():
        name, _, value = line.partition(":")
        if name.strip() in wanted:
            facts[name.strip()] = value.strip()
    return facts


def _memory_total_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def machine_info() -> dict[str, Any]:
    """The machine a run measured: CPU, core count, memory, OS, Python and Node versions."""
    return {
        "cpu": _lscpu(),
        "nproc": os.cpu_count(),
        "memory_mb": _memory_total_mb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "node": _command_output("node", "--version") or None,
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }


def check_ratios(data: Any, path: str = "") -> None:
    """Raise when a ``*_ratio`` key holds anything but a finite number."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).endswith(RATIO_SUFFIX) and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{where} = {value!r}: a *_ratio key must hold a finite number")
            check_ratios(value, where)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            check_ratios(item, f"{path}[{index}]")


def write_results(
    sections: Iterable[Section], command: str, path: Path = RESULTS_PATH
) -> dict[str, Any]:
    """Merge this run's sections into ``path`` and return the whole document."""
    previous: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            previous = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            previous = {}
    document: dict[str, Any] = {
        name: previous.get(name, {"status": STATUS_NOT_RUN}) for name in BENCHMARK_NAMES
    }
    for section in sections:
        document[section.name] = section.to_json(command)
    document["machine"] = machine_info()
    document["command"] = command
    check_ratios(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json_text(document) + "\n")
    return document


def to_json_text(value: Any, indent: int = 0) -> str:
    """``value`` as indented JSON, where an object or list stays on one line when it holds no
    object or list (a round's sample: one line, not a dozen) or fits in ``RESULTS_WIDTH``
    columns at its depth. A new run of the peer comparison then changes a few hundred lines of
    the committed file instead of two thousand, and the nesting still reads at a glance."""
    flat = json.dumps(value)
    if not isinstance(value, dict | list) or indent + len(flat) <= RESULTS_WIDTH:
        return flat
    children = value.values() if isinstance(value, dict) else value
    if not any(isinstance(child, dict | list) for child in children):
        return flat
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(key)}: {to_json_text(item, indent + 2)}"
            for key, item in value.items()
        ]
        opening, closing = "{", "}"
    else:
        items = [f"{inner}{to_json_text(item, indent + 2)}" for item in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(items) + "\n" + " " * indent + closing


def render_table(sections: Iterable[Section]) -> str:
    """The single table ``python -m benchmarks`` prints."""
    header = ("benchmark", "measurement", "value", "comparison / target")
    lines: list[tuple[str, str, str, str]] = []
    for section in sections:
        for index, row in enumerate(section.rows):
            lines.append(
                (section.name if index == 0 else "", row.measurement, row.value, row.comparison)
            )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(3)]

    def format_line(line: tuple[str, str, str, str]) -> str:
        return (
            f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  {line[2]:>{widths[2]}}  {line[3]}"
        ).rstrip()

    rule = "-" * (sum(widths) + 6 + max(len(line[3]) for line in [header, *lines]))
    return "\n".join([format_line(header), rule, *(format_line(line) for line in lines)])
