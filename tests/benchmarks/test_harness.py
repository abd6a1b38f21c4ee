"""The benchmark harness: ``results.json``'s shape and the AWS call counts (counts, not timings).

The cold-start and AWS-call benchmarks run once each (``--smoke``) in a subprocess, as
``make bench`` runs them; no timing is asserted, the machines are shared and noisy.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from benchmarks import stats
from benchmarks.report import BENCHMARK_NAMES, RATIO_SUFFIX, Section, check_ratios, render_table
from tests.support import PROJECT_ROOT


def _ratios(data: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if str(key).endswith(RATIO_SUFFIX):
                found.append(value)
            found.extend(_ratios(value))
    elif isinstance(data, list):
        for item in data:
            found.extend(_ratios(item))
    return found


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("bench") / "results.json"
    command = [sys.executable, "-m", "benchmarks", "cold_start", "aws_calls", "--smoke"]
    completed = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [*command, "--output", str(output)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "cold_start" in completed.stdout
    assert "aws_calls" in completed.stdout
    document: dict[str, Any] = json.loads(output.read_text())
    return document


def test_results_have_one_key_per_benchmark_plus_machine_and_command(
    results: dict[str, Any],
) -> None:
    assert set(results) == {*BENCHMARK_NAMES, "machine", "command"}
    assert "-m benchmarks cold_start aws_calls --smoke" in results["command"]
    assert results["machine"]["nproc"] >= 1
    assert results["machine"]["python"].count(".") == 2
    for name in ("fanout", "gateway", "peer"):
        assert results[name] == {"status": "not run"}
    for name in ("cold_start", "aws_calls"):
        assert results[name]["status"] == "ok"


def test_every_ratio_is_a_finite_number(results: dict[str, Any]) -> None:
    ratios = _ratios(results)
    assert len(ratios) >= 5  # one per handler, at least
    for value in ratios:
        assert isinstance(value, int | float)
        assert not isinstance(value, bool)
        assert math.isfinite(value)
        assert value > 0


def test_cold_start_measures_every_handler_beside_the_baseline(results: dict[str, Any]) -> None:
    cold = results["cold_start"]
    assert set(cold["handlers"]) == {"authorizer", "connect", "disconnect", "chat_message"}
    assert cold["baseline"]["total_ms"]["n"] == cold["rounds"] == 1
    for figures in cold["handlers"].values():
        assert figures["total_ms"]["n"] == 1
        assert figures["vs_baseline_ratio"] > 0
    assert cold["authorizer_imports_boto3"] is False
    # The handlers make botocore clients (runtime.aws); none of them imports boto3.
    assert not any(figures["imports_boto3"] for figures in cold["handlers"].values())


def test_chat_message_and_ping_stay_within_their_aws_call_budgets(
    results: dict[str, Any],
) -> None:
    events = results["aws_calls"]["events"]
    assert events["chat_message"]["calls"] <= 2
    assert events["ping"]["calls"] <= 1
    assert events["chat_message"]["by_operation"] == {
        "dynamodb.UpdateItem": 1,
        "sqs.SendMessage": 1,
    }
    assert events["authorizer"]["calls"] == 0
    # One Query for the user's connections, then one post per connection.
    assert events["broadcast_to_10"]["by_operation"] == {
        "dynamodb.Query": 1,
        "apigatewaymanagementapi.PostToConnection": 10,
    }


def test_cost_lists_its_prices_and_adds_up(results: dict[str, Any]) -> None:
    cost = results["aws_calls"]["cost"]
    assert cost["prices_usd_per_million"]["api_gateway_websocket_messages"] == 1.00
    assert cost["prices_usd_per_million"]["sqs_fifo_requests"] == 0.50
    assert cost["usd_per_million_chat_messages"] == pytest.approx(
        sum(cost["line_items_usd"].values()), abs=0.01
    )
    # The handlers' measured write calls match the model's (else the run fails).
    assert cost["dynamodb_write_units_per_event"] == {
        "connect": 6,
        "chat_message": 2,
        "disconnect": 4,
    }


def test_check_ratios_rejects_a_ratio_that_is_not_a_number() -> None:
    check_ratios({"fanout": {"n10": {"speedup_ratio": 3.5}}})
    for bad in (None, "3x", float("inf"), True):
        with pytest.raises(ValueError, match="speedup_ratio"):
            check_ratios({"fanout": {"n10": {"speedup_ratio": bad}}})


def test_percentiles_interpolate_between_ranks() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert stats.percentile(samples, 0.5) == pytest.approx(50.5)
    assert stats.percentile(samples, 0.99) == pytest.approx(99.01)
    assert stats.summary([])["n"] == 0
    with pytest.raises(ValueError, match="non-positive"):
        stats.ratio(1.0, 0.0)


def test_table_names_each_benchmark_once() -> None:
    section = Section("fanout")
    section.row("n=10", "1 ms", "x")
    section.row("n=100", "2 ms")
    table = render_table([section])
    assert table.count("fanout") == 1
    assert "n=100" in table
