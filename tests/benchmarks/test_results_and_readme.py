"""Where a benchmark run writes; the README's tables rendered from ``benchmarks/results.json``."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.__main__ import _consecutive, _parser
from benchmarks.readme import BLOCKS, README_PATH, render
from benchmarks.report import RESULTS_PATH, RUN_RESULTS_PATH, STATUS_FAILED, Section

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_a_run_writes_outside_the_tracked_tree_by_default() -> None:
    assert _parser().parse_args([]).output == RUN_RESULTS_PATH
    assert RUN_RESULTS_PATH.is_relative_to(PROJECT_ROOT / ".build")
    ignored = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert ".build/" in ignored, "the default results path must be gitignored"


def test_updating_the_committed_results_is_an_explicit_flag() -> None:
    assert _parser().parse_args(["--update-results"]).update_results is True
    assert RESULTS_PATH.name == "results.json"
    assert RESULTS_PATH.parent.name == "benchmarks"


def test_the_readme_tables_are_rendered_from_the_committed_results() -> None:
    readme = README_PATH.read_text()
    results = json.loads(RESULTS_PATH.read_text())
    assert render(readme, results) == readme, "regenerate them: python -m benchmarks.readme"
    for name in BLOCKS:
        assert f"<!-- bench:{name} -->" in readme


def test_the_three_peer_runs_are_in_the_committed_results() -> None:
    peer = json.loads(RESULTS_PATH.read_text())["peer"]
    runs = peer["consecutive_runs"]
    assert len(runs) >= 3
    assert all(run["mode"] == "full" for run in runs)
    assert all("throughput_ratio" in run["serverless_offline"] for run in runs)


def test_consecutive_runs_keep_every_runs_figures() -> None:
    first, second = Section("peer", data={"x": 1}), Section("peer", data={"x": 2})
    first.row("throughput", "1")
    second.row("throughput", "2")
    second.status, second.reason = STATUS_FAILED, "missed"
    merged = _consecutive([first, second])
    assert merged.data["consecutive_runs"] == [
        {"x": 1, "status": "ok"},
        {"x": 2, "status": "failed"},
    ]
    assert merged.status == STATUS_FAILED
    assert merged.reason == "run 2: missed"
    assert [row.measurement for row in merged.rows] == [
        "run 1: throughput",
        "run 2: throughput",
    ]
