"""``python -m benchmarks [name ...] [--quick]``: run benchmarks, print one table, write JSON.

With no name, every benchmark runs, in the order of ``BENCHMARK_NAMES``. A benchmark that fails
or must be skipped (npm absent...) says why in its row and in the results; the others still
run, and the exit status is 1 when any failed. Results go to ``.build/bench/results.json``
(``--output`` elsewhere); ``--update-results`` writes the committed ``benchmarks/results.json``
(then ``python -m benchmarks.readme`` renders docs/performance.md's tables and README.md's
cost). ``--repeat N`` runs each benchmark N times in a row and keeps every run's figures under
``consecutive_runs``.
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

from benchmarks.echo import POSTINGS
from benchmarks.mode import Mode
from benchmarks.report import (
    BENCHMARK_NAMES,
    RESULTS_PATH,
    RUN_RESULTS_PATH,
    STATUS_FAILED,
    Row,
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
        "--quick", action="store_true", help="fewer rounds and shorter loads (about 2 minutes)"
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
        "--echo-posting",
        choices=POSTINGS,
        default=None,
        help="peer: how the shared echo handler posts back: with a boto3 client (default) or "
        "on rag-websocket's lean path (runtime.posting)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each benchmark N times in a row; every run's figures are kept",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--output",
        type=Path,
        default=RUN_RESULTS_PATH,
        help="where to write the JSON results (default: .build/bench/results.json)",
    )
    where.add_argument(
        "--update-results",
        action="store_true",
        help="write the committed benchmarks/results.json (docs/performance.md renders it)",
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


def _consecutive(runs: list[Section]) -> Section:
    """The last run's section; with several, every run's figures under ``consecutive_runs``."""
    last = runs[-1]
    if len(runs) > 1:
        last.data["consecutive_runs"] = [
            {key: value for key, value in run.data.items() if key != "consecutive_runs"}
            | {"status": run.status}
            for run in runs
        ]
        if any(run.status == STATUS_FAILED for run in runs):
            last.status = STATUS_FAILED
            last.reason = "; ".join(
                f"run {index + 1}: {run.reason}"
                for index, run in enumerate(runs)
                if run.status == STATUS_FAILED
            )
        last.rows = [
            Row(f"run {index + 1}: {row.measurement}", row.value, row.comparison)
            for index, run in enumerate(runs)
            for row in run.rows
        ]
    return last


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parsed = _parser().parse_args(arguments)
    unknown = [name for name in parsed.names if name not in BENCHMARK_NAMES]
    if unknown:
        _parser().error(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARK_NAMES)}"
        )
    if parsed.repeat < 1:
        _parser().error(f"--repeat {parsed.repeat}: run at least once")
    names = [name for name in BENCHMARK_NAMES if name in parsed.names] or list(BENCHMARK_NAMES)
    output: Path = RESULTS_PATH if parsed.update_results else parsed.output
    mode = Mode.SMOKE if parsed.smoke else Mode.QUICK if parsed.quick else Mode.FULL
    command = _command(arguments)
    sections = []
    for name in names:
        extra: dict[str, Any] = {}
        if name == "fanout" and parsed.latency_ms is not None:
            extra["latency_ms"] = parsed.latency_ms
        if name == "peer" and parsed.echo_posting is not None:
            extra["echo_posting"] = parsed.echo_posting
        runs = [run_benchmark(name, mode, **extra) for _ in range(parsed.repeat)]
        sections.append(_consecutive(runs))
    write_results(sections, command, output)
    print(render_table(sections))
    print(f"\ncommand: {command}\nresults: {output}")
    return 1 if any(section.status == STATUS_FAILED for section in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
