from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from runtime.observability import (
    Metric,
    count,
    flush_metrics,
    handles_invocation,
    logger,
)
from tests.support import lambda_context


def test_metrics_survive_concurrent_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    """Local mode runs handlers on a thread pool in one process: counting and flushing at once
    must neither raise nor lose a count."""
    errors: list[BaseException] = []

    @handles_invocation
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
    @handles_invocation
    def handler(event: dict[str, object], context: object) -> str:
        return "ok"

    assert handler({}, None) == "ok"
    assert '"_aws"' not in capsys.readouterr().out


def test_metrics_are_flushed_when_the_handler_raises(capsys: pytest.CaptureFixture[str]) -> None:
    @handles_invocation
    def handler(event: dict[str, object], context: object) -> None:
        count(Metric.AUTHORIZATION_DENIED)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler({}, None)
    out = capsys.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert emf[-1]["AuthorizationDenied"] == [1.0]


def test_concurrent_invocations_log_their_own_ids(logs: io.StringIO) -> None:
    """Local mode runs invocations of several functions at once on the gateway's threads, with
    one logger: each line must carry its own invocation's connection, request and function,
    where Powertools' ``inject_lambda_context`` and ``append_keys`` (keys shared by every
    thread) put another invocation's ids on it."""
    threads = 8
    inside = threading.Barrier(threads)

    def handler(event: dict[str, Any], context: object) -> None:
        inside.wait()  # every invocation has bound its keys before any logs
        logger.info("working")

    handlers = [handles_invocation(handler), handles_invocation(handler)]

    def invoke(index: int) -> str:
        context = lambda_context(f"function-{index % 2}")
        event = {"requestContext": {"connectionId": f"conn-{index}=", "requestId": f"req-{index}"}}
        handlers[index % 2](event, context)
        return context.aws_request_id

    with ThreadPoolExecutor(threads) as pool:
        request_ids = list(pool.map(invoke, range(threads)))

    records = [json.loads(line) for line in logs.getvalue().splitlines() if "working" in line]
    assert sorted(record["connectionId"] for record in records) == sorted(
        f"conn-{index}=" for index in range(threads)
    )
    for record in records:
        index = int(record["connectionId"].removeprefix("conn-").removesuffix("="))
        assert record["requestId"] == f"req-{index}"
        assert record["function_request_id"] == request_ids[index]
        assert record["function_name"] == f"function-{index % 2}"
    # The first invocation of each function is its cold start, as in its own container.
    assert sorted(record["cold_start"] for record in records) == [False] * 6 + [True] * 2
