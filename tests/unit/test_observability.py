from __future__ import annotations

import json
import threading

import pytest

from runtime.observability import Metric, count, emits_metrics, flush_metrics


def test_metrics_survive_concurrent_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    """Local mode runs handlers on a thread pool in one process: counting and flushing at once
    must neither raise nor lose a count."""
    errors: list[BaseException] = []

    @emits_metrics
    def handler(event: dict[str, object], context: object) -> None:
        for _ in range(50):
            count(Metric.MESSAGES_SENT)

    def run() -> None:
        try:
            for _ in range(20):
                handler({}, None)
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flush_metrics()
    assert errors == []
    out = capsys.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert sum(sum(line.get("MessagesSent", [])) for line in emf) == 8 * 20 * 50


def test_nothing_is_flushed_without_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    @emits_metrics
    def handler(event: dict[str, object], context: object) -> str:
        return "ok"

    assert handler({}, None) == "ok"
    assert '"_aws"' not in capsys.readouterr().out


def test_metrics_are_flushed_when_the_handler_raises(capsys: pytest.CaptureFixture[str]) -> None:
    @emits_metrics
    def handler(event: dict[str, object], context: object) -> None:
        count(Metric.AUTHORIZATION_DENIED)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler({}, None)
    out = capsys.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert emf[-1]["AuthorizationDenied"] == [1.0]
