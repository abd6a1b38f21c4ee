"""Where a benchmark run writes; docs/performance.md rendered from ``benchmarks/results.json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import _consecutive, _parser
from benchmarks.readme import DOCUMENTS, main, render
from benchmarks.report import RESULTS_PATH, RUN_RESULTS_PATH, STATUS_FAILED, Section
from tests.support import PROJECT_ROOT


def test_a_run_writes_outside_the_tracked_tree_by_default() -> None:
    assert _parser().parse_args([]).output == RUN_RESULTS_PATH
    assert RUN_RESULTS_PATH.is_relative_to(PROJECT_ROOT / ".build")
    ignored = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert ".build/" in ignored, "the default results path must be gitignored"


def test_updating_the_committed_results_is_an_explicit_flag() -> None:
    assert _parser().parse_args(["--update-results"]).update_results is True
    assert RESULTS_PATH.name == "results.json"
    assert RESULTS_PATH.parent.name == "benchmarks"


def test_the_performance_tables_and_the_cost_are_rendered_from_the_committed_results() -> None:
    results = json.loads(RESULTS_PATH.read_text())
    for path, blocks in DOCUMENTS:
        text = path.read_text()
        assert render(text, results, blocks) == text, "regenerate them: python -m benchmarks.readme"
        for name in blocks:
            assert f"<!-- bench:{name} -->" in text, path


def test_the_readme_prices_a_million_answers_both_ways() -> None:
    results = json.loads(RESULTS_PATH.read_text())
    (readme, blocks) = DOCUMENTS[1]
    cost = blocks["cost"](results)
    prices = results["stream"]["usd_per_million_answers"]
    assert f"streamed coalesced (the default): their frames | {prices['coalesced']:,.2f} |" in cost
    assert f"a frame per token: their frames | {prices['per_token']:,.2f} |" in cost
    assert cost in readme.read_text()


def test_the_readme_reports_the_three_committed_peer_runs() -> None:
    """Issue 14: the README reports all three runs of the peer comparison, each with its
    throughput ratio, both p99s and its verdict, and the command that made them."""
    results = json.loads(RESULTS_PATH.read_text())
    (readme, blocks) = DOCUMENTS[1]
    table = blocks["peer"](results)
    runs = results["peer"]["consecutive_runs"]
    assert len(runs) == 3
    for index, run in enumerate(runs, start=1):
        ours = run["ours"]["clients_10"]
        theirs = run["serverless_offline"]["clients_10"]
        verdict = "**met**" if run["serverless_offline"]["target"]["met"] else "**missed**"
        assert (
            f"| {index} | {ours['throughput_per_second']:.0f} msg/s "
            f"| {theirs['throughput_per_second']:.0f} msg/s "
            f"| {run['serverless_offline']['throughput_ratio']:.2f}x "
            f"| {ours['rtt_p99_ms']:.1f} / {theirs['rtt_p99_ms']:.1f} ms | {verdict} |"
        ) in table
    assert results["peer"]["command"] in table
    assert table in readme.read_text()


def test_the_check_names_the_file_whose_tables_are_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import benchmarks.readme as rendering

    stale = tmp_path / "README.md"
    stale.write_text(
        "".join(
            f"<!-- bench:{name} -->\nold\n<!-- /bench:{name} -->\n" for name in ("cost", "peer")
        )
    )
    monkeypatch.setattr(rendering, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(rendering, "DOCUMENTS", ((stale, rendering.README_BLOCKS),))
    assert main(["--check"]) == 1
    assert "README.md: tables differ" in capsys.readouterr().out
    assert "old" in stale.read_text()  # --check writes nothing
    assert main([]) == 0
    assert "old" not in stale.read_text()
    assert main(["--check"]) == 0


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


# Every `_ratio` key benchmarks/results.json held when issue 14 was filed (the union of
# 28b9210, where its branch began, and 42f8d72, main when it merged), and the ones it added.
RATIO_KEYS_AT_FILING = (
    "aws_calls.broadcast_calls_per_connection_ratio",
    "cold_start.handlers.authorizer.process_vs_baseline_ratio",
    "cold_start.handlers.authorizer.vs_baseline_ratio",
    "cold_start.handlers.chat_message.process_vs_baseline_ratio",
    "cold_start.handlers.chat_message.vs_baseline_ratio",
    "cold_start.handlers.connect.process_vs_baseline_ratio",
    "cold_start.handlers.connect.vs_baseline_ratio",
    "cold_start.handlers.disconnect.process_vs_baseline_ratio",
    "cold_start.handlers.disconnect.vs_baseline_ratio",
    "fanout.n10.posting_speedup_ratio",
    "fanout.n10.speedup_ratio",
    "fanout.n100.posting_speedup_ratio",
    "fanout.n100.speedup_ratio",
    "fanout.n1000.posting_speedup_ratio",
    "fanout.n1000.speedup_ratio",
    "gateway.emulator.c1000_r200.p99_vs_target_ratio",
    "gateway.emulator.c100_r200.p99_vs_target_ratio",
    "gateway.local_stack.c1000_r200.p99_vs_target_ratio",
    "gateway.local_stack.c100_r200.p99_vs_target_ratio",
    "gateway.local_stack.c100_r50.p99_vs_target_ratio",
    "gateway.local_stack_processes.c100_r200.p99_vs_target_ratio",
    "peer.architect.connect_latency_ratio",
    "peer.architect.p99_ratio",
    "peer.architect.throughput_1_client_ratio",
    "peer.architect.throughput_ratio",
    "peer.serverless_offline.connect_latency_ratio",
    "peer.serverless_offline.p99_ratio",
    "peer.serverless_offline.throughput_1_client_ratio",
    "peer.serverless_offline.throughput_ratio",
)
RATIO_KEYS_ADDED = (
    "sender.cpu_per_post_ratio",
    "stream.frames_per_token_ratio",
    # ... and the ones added since.
    "stream.per_token_frames_per_token_ratio",
    "peer.serverless_offline.cpu_per_echo_ratio",
    "peer.architect.cpu_per_echo_ratio",
    "gateway.local_stack_threads.c100_r200.p99_vs_target_ratio",
)


def test_the_committed_results_keep_every_ratio_and_add_the_new_ones() -> None:
    results = json.loads(RESULTS_PATH.read_text())
    for dotted in (*RATIO_KEYS_AT_FILING, *RATIO_KEYS_ADDED, "stream.first_token_delay_ms"):
        value: object = results
        for key in dotted.split("."):
            assert isinstance(value, dict), dotted
            assert key in value, f"{dotted} is missing"
            value = value[key]
        assert isinstance(value, int | float), dotted


def test_the_sender_and_stream_benchmarks_run(tmp_path: Path) -> None:
    """Once each (``--smoke``), against a real local stack: the harness works; no timing."""
    output = tmp_path / "results.json"
    completed = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "benchmarks", "sender", "stream", "--smoke", "--output", output],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    results = json.loads(output.read_text())
    assert completed.stdout.rstrip().endswith(f"results: {output}")
    assert results["sender"]["frames_received"] == results["sender"]["frames_posted"]
    assert results["sender"]["cpu_ms_per_post"]["lean"]["n"] == 1
    stream = results["stream"]
    assert stream["per_token"]["frames"] == stream["tokens"]
    assert 1 <= stream["coalesced"]["frames"] <= stream["tokens"]
    assert stream["usd_per_million_answers"]["per_token"] == stream["tokens"] + 3


def test_peer_rounds_keep_their_headline_figures_only() -> None:
    """Each round is kept (the README reports all three runs) as its headline, so that a
    re-run's results commit stays a few hundred lines."""
    from benchmarks.peer import _combine

    def round_of(throughput: float, p99: float) -> dict[str, object]:
        return {
            "clients": 10,
            "messages": int(throughput * 10),
            "throughput_per_second": throughput,
            "rtt_ms": {"n": 10, "p50": 1.0, "p99": p99, "min": 0.5, "max": 9.0, "mean": 1.2},
            "connect_ms": {"n": 10, "p50": 2.0, "p99": 3.0, "min": 1.0, "max": 4.0, "mean": 2.1},
            "errors": 0,
            "error_kinds": {},
        }

    combined = _combine([round_of(800.0, 20.0), round_of(600.0, 30.0), round_of(700.0, 25.0)])
    assert combined["throughput_per_second"] == 700.0
    assert combined["rtt_p99_ms"] == 25.0
    assert combined["samples"][1] == {
        "throughput_per_second": 600.0,
        "rtt_p50_ms": 1.0,
        "rtt_p99_ms": 30.0,
        "connect_p50_ms": 2.0,
        "messages": 6000,
        "errors": 0,
    }


def test_the_results_file_keeps_a_sample_on_one_line_and_the_nesting_readable() -> None:
    from benchmarks.report import RESULTS_WIDTH, to_json_text

    sample = {f"figure_{n}": n * 1.25 for n in range(20)}  # wider than RESULTS_WIDTH
    document = {
        "peer": {"ours": {"samples": [sample, sample], "throughput_per_second": 700.0}},
        "command": "python -m benchmarks peer",
        "versions": ["a", "b"],
        "empty": {},
    }
    text = to_json_text(document)
    assert json.loads(text) == document
    lines = text.splitlines()
    assert lines[0] == "{"
    assert lines[4:6] == [" " * 8 + json.dumps(sample) + ",", " " * 8 + json.dumps(sample)]
    assert '  "peer": {' in lines
    assert '  "versions": ["a", "b"],' in lines
    assert len(json.dumps(sample)) > RESULTS_WIDTH


def test_the_committed_results_are_written_as_write_results_writes_them() -> None:
    """``--update-results`` output, not a hand edit or an older layout."""
    from benchmarks.report import to_json_text

    text = RESULTS_PATH.read_text()
    assert text == to_json_text(json.loads(text)) + "\n"
