"""Cold start of each handler: a fresh process imports it and serves its first event against moto.

Each round starts one process per target, in a shuffled order, beside the baseline
``import boto3; boto3.client("dynamodb")`` measured the same way in the same round; the
figures are medians over the rounds. ``total_ms`` is measured inside the process, from just
before the import to the first answer (what Lambda's Init + first Invoke add to a request);
``process_ms`` is the whole process, interpreter start-up included, timed from outside. A first
round warms the file cache and ``__pycache__`` and is not counted.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from benchmarks import PROJECT_ROOT, stats
from benchmarks.cold_start_probe import BASELINE, RESULT_MARKER
from benchmarks.environment import REGION, AwsResources, base_environment, moto_server
from benchmarks.events import ConnectionEvents
from benchmarks.jwks import Issuer, serve_issuer
from benchmarks.mode import Mode
from benchmarks.report import STATUS_FAILED, Section
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore

NAME = "cold_start"
PROBE_MODULE = "benchmarks.cold_start_probe"
PROBE_TIMEOUT_SECONDS = 60
FULL_ROUNDS = 20
QUICK_ROUNDS = 10  # the floor: a median of at least 10 processes
SMOKE_ROUNDS = 1


@dataclass(frozen=True)
class Target:
    """A handler module and how to make (and check) its first event."""

    name: str
    module: str
    event: Callable[[ConnectionEvents], dict[str, Any]]
    answered: Callable[[Any], bool]
    needs_row: bool = False


def _status_200(answer: Any) -> bool:
    return isinstance(answer, dict) and answer.get("statusCode") == 200


def _allowed(answer: Any) -> bool:
    try:
        return bool(answer["policyDocument"]["Statement"][0]["Effect"] == "Allow")
    except (KeyError, IndexError, TypeError):
        return False


def _accepted(answer: Any) -> bool:
    if not _status_200(answer):
        return False
    frame = json.loads(answer.get("body") or "{}")
    return bool(frame.get("type") == "system" and frame.get("event") == "accepted")


TARGETS = (
    Target("authorizer", "runtime.handlers.authorizer", ConnectionEvents.authorizer, _allowed),
    Target("connect", "runtime.handlers.connect", ConnectionEvents.connect, _status_200),
    Target(
        "disconnect",
        "runtime.handlers.disconnect",
        ConnectionEvents.disconnect,
        _status_200,
        needs_row=True,
    ),
    Target(
        "chat_message",
        "runtime.handlers.message",
        ConnectionEvents.chat_message,
        _accepted,
        needs_row=True,
    ),
)


def _run_probe(request: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    began = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", PROBE_MODULE],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=PROBE_TIMEOUT_SECONDS,
        check=False,
    )
    process_ms = (time.perf_counter() - began) * 1000
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise RuntimeError(
            f"cold start of {request['target']} failed (exit {completed.returncode}): "
            + " | ".join(tail)
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(RESULT_MARKER))
    result["process_ms"] = process_ms
    return result


class _Runner:
    def __init__(self, resources: AwsResources, issuer: Issuer) -> None:
        self.env = base_environment(
            {
                **resources.handler_environment(),
                **issuer.auth_environment(),
                "PYTHONPATH": str(PROJECT_ROOT),
            }
        )
        self.issuer = issuer
        self.store = ConnectionStore(
            StoreConfig(resources.table_name),
            client=boto3.client(
                "dynamodb", endpoint_url=resources.endpoint_url, region_name=REGION
            ),
        )

    def run(self, target: Target | None) -> dict[str, Any]:
        if target is None:
            return _run_probe({"target": BASELINE}, self.env)
        user_id = f"cold-{uuid.uuid4().hex[:12]}"
        # As both clients connect: with their instance id (a first connect of the instance).
        connection = ConnectionEvents.new(
            user_id, self.issuer.token(user_id), instance_id=uuid.uuid4().hex
        )
        if target.needs_row:
            self.store.add(connection.connection_id, user_id, connection.facts.connected_at_ms)
        result = _run_probe({"target": target.module, "event": target.event(connection)}, self.env)
        if not target.answered(result["answer"]):
            raise RuntimeError(
                f"cold start of {target.name}: unexpected answer {result['answer']!r}"
            )
        return result


def run(mode: Mode) -> Section:
    count = mode.pick(FULL_ROUNDS, QUICK_ROUNDS, SMOKE_ROUNDS)
    samples: dict[str, list[dict[str, Any]]] = {BASELINE: [], **{t.name: [] for t in TARGETS}}
    order: list[Target | None] = [None, *TARGETS]
    with moto_server() as resources, serve_issuer() as issuer:
        runner = _Runner(resources, issuer)
        for round_index in range(count + 1):
            random.shuffle(order)
            for target in order:
                result = runner.run(target)
                if round_index > 0:  # round 0 warms caches
                    samples[BASELINE if target is None else target.name].append(result)
    return _section(samples, count)


def _medians(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        key: stats.summary([r[key] for r in results])
        for key in ("import_ms", "first_event_ms", "total_ms", "process_ms")
    }


def _section(samples: dict[str, list[dict[str, Any]]], rounds: int) -> Section:
    section = Section(NAME)
    baseline = _medians(samples[BASELINE])
    baseline_total = baseline["total_ms"]["p50"]
    baseline_process = baseline["process_ms"]["p50"]
    handlers: dict[str, Any] = {}
    section.row(
        "baseline: import boto3 + client (median)",
        f"{baseline_total:.0f} ms",
        f"process {baseline_process:.0f} ms",
    )
    for target in TARGETS:
        figures = _medians(samples[target.name])
        total = figures["total_ms"]["p50"]
        boto3_loaded = any(r["boto3_loaded"] for r in samples[target.name])
        handlers[target.name] = {
            "module": target.module,
            **figures,
            "imports_boto3": boto3_loaded,
            "vs_baseline_ratio": stats.ratio(total, baseline_total),
            "process_vs_baseline_ratio": stats.ratio(
                figures["process_ms"]["p50"], baseline_process
            ),
        }
        note = f"{stats.ratio(total, baseline_total):.2f}x baseline"
        if target.name == "authorizer":
            note += "; imports boto3: " + ("YES (target: no)" if boto3_loaded else "no")
        section.row(
            f"{target.name}: import + first event (median)",
            f"{total:.0f} ms",
            f"{note}; import {figures['import_ms']['p50']:.0f} + event "
            f"{figures['first_event_ms']['p50']:.0f} ms",
        )
    authorizer_boto3 = handlers["authorizer"]["imports_boto3"]
    section.data = {
        "rounds": rounds,
        "method": (
            "fresh process per sample (python -m benchmarks.cold_start_probe), targets shuffled "
            "within each round, first round discarded; total_ms = import + first event inside "
            "the process, process_ms = whole process from outside; medians (p50)"
        ),
        "baseline": {"code": 'import boto3; boto3.client("dynamodb")', **baseline},
        "handlers": handlers,
        "authorizer_imports_boto3": authorizer_boto3,
    }
    if authorizer_boto3:
        section.status = STATUS_FAILED
        section.reason = "the authorizer imports boto3"
    return section
