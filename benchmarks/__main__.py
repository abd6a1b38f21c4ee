"""``python -m benchmarks [name ...] [--quick]``: run benchmarks, print one table, write JSON.

With no name, every benchmark runs, in the order of ``BENCHMARK_NAMES``. A benchmark that fails
or must be skipped (npm absent...) says why in its row and in ``results.json``; the others still
run, and the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.mode import Mode
from benchmarks.report import (
    BENCHMARK_NAMES,
    RESULTS_PATH,
    STATUS_FAILED,
    Section,
    failed,
    progress,
    render_table,
    write_results,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure rag-websocket: " + ", ".join(BENCHMARK_NAMES) + ".",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help="benchmarks to run (default: all): " + ", ".join(BENCHMARK_NAMES),
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quick", action="store_true", help="fewer rounds and shorter loads (< 2 minutes)"
    )
    group.add_argument(
        "--smoke",
        action="store_true",
        help="one round of each, to check the harness (the test suite); timings mean nothing",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=None,
        help="fanout: the latency injected into each PostToConnection (default 20)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_PATH,
        help=f"where to write the JSON results (default: {RESULTS_PATH.name} beside this code)",
    )
    return parser


def _command(argv: Sequence[str]) -> str:
    executable = Path(sys.executable)
    try:
        shown = os.path.relpath(executable)
    except ValueError:
        shown = str(executable)
    if shown.startswith(".."):
        shown = str(executable)
    return " ".join([shown, "-m", "benchmarks", *argv])


def run_benchmark(name: str, mode: Mode, **options: Any) -> Section:
    """One benchmark; an exception becomes a failed section instead of ending the run."""
    began = time.perf_counter()
    progress(f"{name} ({mode}) ...")
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        section: Section = module.run(mode, **options)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        section = failed(name, f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - began
    section.data.setdefault("mode", str(mode))
    section.data.setdefault("seconds", round(seconds, 1))
    progress(f"{name}: {section.status} in {seconds:.1f} s")
    return section


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parsed = _parser().parse_args(arguments)
    unknown = [name for name in parsed.names if name not in BENCHMARK_NAMES]
    if unknown:
        _parser().error(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARK_NAMES)}"
        )
    names = [name for name in BENCHMARK_NAMES if name in parsed.names] or list(BENCHMARK_NAMES)
    mode = Mode.SMOKE if parsed.smoke else Mode.QUICK if parsed.quick else Mode.FULL
    command = _command(arguments)
    sections = []
    for name in names:
        extra: dict[str, Any] = {}
        if name == "fanout" and parsed.latency_ms is not None:
            extra["latency_ms"] = parsed.latency_ms
        sections.append(run_benchmark(name, mode, **extra))
    write_results(sections, command, parsed.output)
    print(render_table(sections))
    print(f"\ncommand: {command}\nresults: {parsed.output}")
    return 1 if any(section.status == STATUS_FAILED for section in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
