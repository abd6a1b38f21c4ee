"""docs/performance.md's tables and README.md's cost and peer runs, rendered from
``benchmarks/results.json``.

``python -m benchmarks.readme`` rewrites each block between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` in those two files; ``--check`` only says whether they match (the test
``tests/benchmarks/test_results_and_readme.py`` does the same). Figures are never pasted by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import PROJECT_ROOT
from benchmarks.report import BENCHMARK_NAMES, RESULTS_PATH, lookup

PERFORMANCE_DOC = PROJECT_ROOT / "docs" / "performance.md"
README_DOC = PROJECT_ROOT / "README.md"
NOT_MEASURED = "not measured"


def _num(value: Any, spec: str, suffix: str = "") -> str:
    return NOT_MEASURED if not isinstance(value, int | float) else f"{value:{spec}}{suffix}"


def _verdict(met: Any) -> str:
    if met is None:
        return NOT_MEASURED
    return "**met**" if met else "**missed**"


def targets(results: dict[str, Any]) -> str:
    """One row per target of the performance issues, with the figure that decides it."""
    cold = "cold_start.handlers"
    chat = lookup(results, f"{cold}.chat_message.vs_baseline_ratio")
    connect = lookup(results, f"{cold}.connect.vs_baseline_ratio")
    disconnect = lookup(results, f"{cold}.disconnect.vs_baseline_ratio")
    authorizer = lookup(results, f"{cold}.authorizer.vs_baseline_ratio")
    cold_values = (chat, connect, disconnect)
    cold_met = None if any(v is None for v in cold_values) else all(v <= 1.3 for v in cold_values)
    fanout = lookup(results, "fanout.n1000.speedup_ratio")
    lost = lookup(results, "fanout.n1000.messages_lost")
    peer_runs = lookup(results, "peer.consecutive_runs") or []
    peer_met = [lookup(run, "serverless_offline.target.met") for run in peer_runs]
    rows = [
        (
            "CPU per post, lean path <= 0.35x the boto3 client's",
            lookup(results, "sender.target.met"),
            _num(lookup(results, "sender.cpu_per_post_ratio"), ".2f", "x"),
        ),
        (
            "streamed answer: <= 0.15 frames per token (500 tokens at 50/s)",
            None
            if lookup(results, "stream.frames_per_token_ratio") is None
            else lookup(results, "stream.frames_per_token_ratio") <= 0.15,
            _num(lookup(results, "stream.frames_per_token_ratio"), ".3f"),
        ),
        (
            "streamed answer: first token within 5 ms of a frame per token",
            None
            if lookup(results, "stream.first_token_delay_ms") is None
            else lookup(results, "stream.first_token_delay_ms") <= 5,
            _num(lookup(results, "stream.first_token_delay_ms"), "+.1f", " ms"),
        ),
        (
            "streamed answer: last frame within one window (50 ms) of the last token",
            None
            if lookup(results, "stream.coalesced.last_frame_lag_ms") is None
            else lookup(results, "stream.coalesced.last_frame_lag_ms") <= 50,
            _num(lookup(results, "stream.coalesced.last_frame_lag_ms"), ".1f", " ms"),
        ),
        (
            "fan-out to 1000 at 20 ms per post >= 20x the sequential loop, nothing lost",
            None if fanout is None else fanout >= 20 and lost == 0,
            f"{_num(fanout, '.1f', 'x')}, {_num(lost, 'd')} lost",
        ),
        (
            "cold start: chat_message, connect, disconnect <= 1.3x import boto3 + client",
            cold_met,
            " / ".join(_num(v, ".2f", "x") for v in cold_values),
        ),
        (
            "cold start: authorizer <= 0.6x, without boto3",
            None
            if authorizer is None
            else authorizer <= 0.6 and not lookup(results, "cold_start.authorizer_imports_boto3"),
            _num(authorizer, ".2f", "x"),
        ),
        (
            "gateway emulator: p99 <= 20 ms at 1000 connections, 200 msg/s, 0 errors",
            None
            if lookup(results, "gateway.emulator.c1000_r200.p99_vs_target_ratio") is None
            else lookup(results, "gateway.emulator.c1000_r200.p99_vs_target_ratio") <= 1
            and lookup(results, "gateway.emulator.c1000_r200.errors") == 0,
            _cell(results, "gateway.emulator.c1000_r200.rtt_ms.p99", ".1f", " ms"),
        ),
        (
            ">= 1.5x serverless-offline's throughput at 10 clients, p99 not worse, "
            "three runs in a row",
            None if len(peer_met) < 3 else all(peer_met[-3:]),
            ", ".join(
                _num(lookup(run, "serverless_offline.throughput_ratio"), ".2f", "x")
                for run in peer_runs
            )
            or NOT_MEASURED,
        ),
    ]
    lines = ["| target | result | measured |", "|---|---|---|"]
    lines += [f"| {target} | {_verdict(met)} | {figure} |" for target, met, figure in rows]
    return "\n".join(lines)


def _cell(results: dict[str, Any], dotted: str, spec: str, suffix: str = "") -> str:
    return _num(lookup(results, dotted), spec, suffix)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def sender(results: dict[str, Any]) -> str:
    lines = [
        _row(("posting path", "CPU per post (median)", "256 MB Lambda: CPU per post", "posts/s")),
        "|---|---|---|---|",
    ]
    for path in ("lean", "boto3"):
        lambda_sized = f"sender.lambda_256mb.{path}"
        cells = (
            path,
            _cell(results, f"sender.cpu_ms_per_post.{path}.p50", ".3f", " ms"),
            _cell(results, f"{lambda_sized}.wall_ms_per_post_cpu", ".1f", " ms"),
            _cell(results, f"{lambda_sized}.posts_per_second_per_function", ".0f"),
        )
        lines.append(_row(cells))
    return "\n".join(lines)


def stream(results: dict[str, Any]) -> str:
    lines = [
        _row(
            (
                "way",
                "frames",
                "first token to its frame",
                "last token to last frame",
                "USD per million answers",
                "whole answer, 256 MB Lambda, lean / boto3",
            )
        ),
        "|---|---|---|---|---|---|",
    ]
    for way, label in (("coalesced", "coalesced (default)"), ("per_token", "a frame per token")):
        seconds = "stream.lambda_256mb.stream_seconds"
        cells = (
            label,
            _cell(results, f"stream.{way}.frames", ".0f"),
            _cell(results, f"stream.{way}.first_token_ms", ".1f", " ms"),
            _cell(results, f"stream.{way}.last_frame_lag_ms", ".0f", " ms"),
            _cell(results, f"stream.usd_per_million_answers.{way}", ",.2f"),
            _cell(results, f"{seconds}.lean_{way}", ".1f", " s")
            + " / "
            + _cell(results, f"{seconds}.boto3_{way}", ".1f", " s"),
        )
        lines.append(_row(cells))
    tokens = _cell(results, "stream.tokens", "d")
    rate = _cell(results, "stream.tokens_per_second", "g")
    return "\n".join([*lines, "", f"({tokens} tokens at {rate} tokens/s.)"])


def cost(results: dict[str, Any]) -> str:
    """README's price list: a million chat messages, and a million streamed answers both ways."""
    tokens = _cell(results, "stream.tokens", "d")
    rows = (
        (
            "chat messages, before the answer (API Gateway, Lambda, DynamoDB, SQS)",
            "aws_calls.cost.usd_per_million_chat_messages",
        ),
        (
            f"{tokens}-token answers streamed coalesced (the default): their frames",
            "stream.usd_per_million_answers.coalesced",
        ),
        (
            f"{tokens}-token answers streamed a frame per token: their frames",
            "stream.usd_per_million_answers.per_token",
        ),
    )
    lines = [_row(("a million", "USD")), "|---|---|"]
    lines += [_row((label, _cell(results, dotted, ",.2f"))) for label, dotted in rows]
    with_function = "stream.usd_per_million_answers_with_function"
    for way, label in (("coalesced", "coalesced"), ("per_token", "a frame per token")):
        lines.append(
            _row(
                (
                    f"{tokens}-token answers streamed {label}: frames + the 256 MB function "
                    "streaming them (lean path / boto3 client)",
                    _cell(results, f"{with_function}.lean_{way}", ",.2f")
                    + " / "
                    + _cell(results, f"{with_function}.boto3_{way}", ",.2f"),
                )
            )
        )
    return "\n".join(lines)


def _cpu_per_echo(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """Each emulator's CPU per echo (all its processes; where measured, its server process +
    the handler processes it spawned) and the cores it kept busy."""
    if ours.get("cpu_ms_per_echo") is None or theirs.get("cpu_ms_per_echo") is None:
        return NOT_MEASURED

    def split(side: dict[str, Any]) -> str:
        server, spawned = side.get("server_cpu_ms_per_echo"), side.get("spawned_cpu_ms_per_echo")
        if server is None or spawned is None:
            return ""
        # Medians over the rounds, each of its own: the parts need not add up to the total.
        return f" [server {_num(server, '.2f')}, handlers {_num(spawned, '.2f')}]"

    return " / ".join(
        f"{_num(side.get('cpu_ms_per_echo'), '.2f', ' ms')}{split(side)} "
        f"({_num(side.get('cpu_cores'), '.2f')} cores)"
        for side in (ours, theirs)
    )


def peer_runs(results: dict[str, Any]) -> str:
    runs = lookup(results, "peer.consecutive_runs") or []
    sides = [
        (lookup(run, "ours.clients_10") or {}, lookup(run, "serverless_offline.clients_10") or {})
        for run in runs
    ]
    # Runs made before the benchmark read /proc/stat have no steal share: no column for them.
    steal = any("machine_steal_share" in side for pair in sides for side in pair)
    lines = [
        "| run | ours, 10 clients | serverless-offline, 10 clients | throughput ratio "
        "| p99 ours / theirs | CPU per echo ours / theirs "
        + ("| vCPU time stolen ours / theirs " if steal else "")
        + "| target |",
        "|---|---|---|---|---|---|" + ("---|" if steal else "") + "---|",
    ]
    for index, (run, (ours, theirs)) in enumerate(zip(runs, sides, strict=True), start=1):
        stolen = (
            f"| {_percent(ours.get('machine_steal_share'))} / "
            f"{_percent(theirs.get('machine_steal_share'))} "
            if steal
            else ""
        )
        lines.append(
            f"| {index} | {_num(ours.get('throughput_per_second'), '.0f', ' msg/s')}, "
            f"p99 {_num(ours.get('rtt_p99_ms'), '.1f', ' ms')} "
            f"| {_num(theirs.get('throughput_per_second'), '.0f', ' msg/s')}, "
            f"p99 {_num(theirs.get('rtt_p99_ms'), '.1f', ' ms')} "
            f"| {_num(lookup(run, 'serverless_offline.throughput_ratio'), '.2f', 'x')} "
            f"| {_num(ours.get('rtt_p99_ms'), '.1f')} / {_num(theirs.get('rtt_p99_ms'), '.1f')} "
            f"| {_cpu_per_echo(ours, theirs)} "
            f"{stolen}"
            f"| {_verdict(lookup(run, 'serverless_offline.target.met'))} |"
        )
    if not runs:
        lines.append(f"| - | {NOT_MEASURED} | | | | | |")
    return "\n".join(lines)


def peer_summary(results: dict[str, Any]) -> str:
    """README's speed table: each committed peer run at 10 clients, ours against
    serverless-offline (the whole table, with CPU and steal, is ``peer_runs``)."""
    peer = results.get("peer") or {}
    runs = peer.get("consecutive_runs") or []
    lines = [
        _row(
            ("run", "ours", "serverless-offline", "throughput ratio", "p99 ours / theirs", "target")
        ),
        "|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        ours = lookup(run, "ours.clients_10") or {}
        theirs = lookup(run, "serverless_offline.clients_10") or {}
        lines.append(
            _row(
                (
                    str(index),
                    _num(ours.get("throughput_per_second"), ".0f", " msg/s"),
                    _num(theirs.get("throughput_per_second"), ".0f", " msg/s"),
                    _num(lookup(run, "serverless_offline.throughput_ratio"), ".2f", "x"),
                    f"{_num(ours.get('rtt_p99_ms'), '.1f')} / "
                    f"{_num(theirs.get('rtt_p99_ms'), '.1f', ' ms')}",
                    _verdict(lookup(run, "serverless_offline.target.met")),
                )
            )
        )
    if not runs:
        lines.append(_row(("-", NOT_MEASURED, "", "", "", "")))
    command = f"`{peer['command']}`" if "command" in peer else NOT_MEASURED
    return "\n".join([*lines, "", f"(10 clients, the same echo handler behind both: {command}.)"])


def _percent(share: Any) -> str:
    return _num(share * 100 if isinstance(share, int | float) else None, ".0f", "%")


def runs(results: dict[str, Any]) -> str:
    """Which command produced each section, on which machine."""
    machine = results.get("machine") or {}
    cpu = machine.get("cpu") or {}
    lines = [_row(("benchmark", "mode", "seconds", "command")), "|---|---|---|---|"]
    for name in BENCHMARK_NAMES:
        section = results.get(name) or {}
        lines.append(
            _row(
                (
                    name,
                    str(section.get("mode", section.get("status", NOT_MEASURED))),
                    _num(section.get("seconds"), ".0f"),
                    f"`{section['command']}`" if "command" in section else NOT_MEASURED,
                )
            )
        )
    load = ", ".join(str(value) for value in machine.get("load_average") or [])
    lines += [
        "",
        f"Machine of the last run: {cpu.get('Model name', 'unknown CPU')}, "
        f"{machine.get('nproc', '?')} vCPUs, {machine.get('memory_mb', '?')} MB, "
        f"Python {machine.get('python', '?')}, Node {machine.get('node') or 'absent'}; "
        f"load average {load or '?'} at the end (the machine is shared).",
    ]
    return "\n".join(lines)


BLOCKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "runs": runs,
    "targets": targets,
    "sender": sender,
    "stream": stream,
    "peer-runs": peer_runs,
}
README_BLOCKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "cost": cost,
    "peer": peer_summary,
}
DOCUMENTS = ((PERFORMANCE_DOC, BLOCKS), (README_DOC, README_BLOCKS))


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- bench:{re.escape(name)} -->\n).*?(<!-- /bench:{re.escape(name)} -->)", re.S
    )


def _replacement(text: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return match.group(1) + text + "\n" + match.group(2)

    return replace


def render(
    text: str,
    results: dict[str, Any],
    blocks: dict[str, Callable[[dict[str, Any]], str]] = BLOCKS,
) -> str:
    """``text`` (docs/performance.md unless ``blocks`` says otherwise) with every one of
    ``blocks`` rendered from ``results``."""
    for name, block in blocks.items():
        pattern = _pattern(name)
        if not pattern.search(text):
            raise ValueError(f"no <!-- bench:{name} --> block to render")
        text = pattern.sub(_replacement(block(results)), text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on a mismatch")
    arguments = parser.parse_args(argv)
    results = json.loads(RESULTS_PATH.read_text())
    stale = []
    for path, blocks in DOCUMENTS:
        current = path.read_text()
        rendered = render(current, results, blocks)
        if rendered == current:
            continue
        stale.append(path.relative_to(PROJECT_ROOT))
        if not arguments.check:
            path.write_text(rendered)
    if arguments.check and stale:
        names = " and ".join(str(path) for path in stale)
        print(f"{names}: tables differ from the results: run python -m benchmarks.readme")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
