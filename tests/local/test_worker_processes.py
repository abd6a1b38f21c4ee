"""``handler_processes``: handlers in worker processes keep every Lambda behaviour of the thread
pool (context, function errors, timeouts, cold start per process) and run many at once. Until
a worker has loaded, the gateway's threads answer: each test first waits for a worker."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

import pytest
from websockets.sync.client import connect

from local.background import Background
from local.gateway import Gateway, GatewaySettings
from local.gateway.workers import _frame, _take_frames
from tests.local.gateway_handlers import PROCESS_ROUTES
from tests.support import wait_until


def _ask(ws: Any, body: str) -> dict[str, Any]:
    ws.send(body)
    answer: dict[str, Any] = json.loads(ws.recv(timeout=30))
    return answer


def _workers_loaded(gateway: Any, count: int) -> None:
    with connect(gateway.ws_url) as ws:
        wait_until(lambda: _ask(ws, "probe")["pid"] != os.getpid(), 60)
    workers = gateway._invoker.processes
    wait_until(lambda: sum(channel.loaded for channel in workers._channels) == count, 60)


def test_handlers_run_in_their_own_process_with_a_lambda_context(start_gateway):
    gateway = start_gateway(
        PROCESS_ROUTES, handler_processes=1, function_timeout_seconds=7, function_memory_mb=512
    )
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as ws:
        first, second = _ask(ws, "one"), _ask(ws, "two")
    assert first["body"] == "one"
    assert first["pid"] != os.getpid()
    assert first["loaded_in"] == first["pid"]  # the module was loaded in the worker itself
    assert first["function"] == "tests-local-gateway_handlers-describe"
    assert first["request_id"] != second["request_id"]
    assert 5000 < first["remaining"] <= 7000
    assert first["memory"] == 512


def test_each_worker_process_loads_its_own_copy_of_the_module(start_gateway):
    gateway = start_gateway(PROCESS_ROUTES, handler_processes=2)
    _workers_loaded(gateway, 2)
    with connect(gateway.ws_url) as ws:
        # Two held at once: the second goes to the idle worker.
        ws.send("sleep 0.5")
        ws.send("sleep 0.5")
        answers = [json.loads(ws.recv(timeout=30)) for _ in range(2)]
    assert {a["pid"] for a in answers} == {a["loaded_in"] for a in answers}
    assert len({a["pid"] for a in answers}) == 2


def test_one_worker_runs_many_invocations_at_once(start_gateway):
    gateway = start_gateway(PROCESS_ROUTES, handler_processes=1)
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as slow, connect(gateway.ws_url) as fast:
        slow.send("sleep 3")
        assert _ask(fast, "fast")["body"] == "fast"
        with pytest.raises(TimeoutError):
            slow.recv(timeout=0)  # "fast" was answered while "sleep 3" still ran
        assert json.loads(slow.recv(timeout=30))["body"] == "sleep 3"


def test_a_worker_hands_the_reading_on_each_time_every_thread_is_busy(start_gateway):
    """Leader and followers: the thread that reads an invocation runs it, so another must take
    over the reading. Four held at once in one worker, then a fifth is still answered while the
    four run: a thread was started for each, none left the socket unread."""
    gateway = start_gateway(PROCESS_ROUTES, handler_processes=1)
    _workers_loaded(gateway, 1)
    with contextlib.ExitStack() as stack:
        slow = [stack.enter_context(connect(gateway.ws_url)) for _ in range(4)]
        for ws in slow:
            ws.send("sleep 3")
        with connect(gateway.ws_url) as fast:
            assert _ask(fast, "fast")["body"] == "fast"
        for ws in slow:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0)  # still running when "fast" was answered
        assert [json.loads(ws.recv(timeout=30))["body"] for ws in slow] == ["sleep 3"] * 4


@pytest.mark.skipif(sys.platform != "linux", reason="SCHED_BATCH is Linux's")
def test_worker_threads_defer_to_the_gateway_and_the_gateways_own_do_not(start_gateway):
    """A worker's threads run as ``SCHED_BATCH`` (see ``_defer_to_the_gateway``), the one
    started for a second invocation held alongside the first too (threads inherit it); the
    gateway's own threads, which answer until a worker has loaded, keep the normal policy."""
    gateway = start_gateway(PROCESS_ROUTES, handler_processes=1)
    with connect(gateway.ws_url) as ws:
        first = _ask(ws, "probe")  # sent at once: the gateway's threads may answer it
    if first["pid"] == os.getpid():
        assert first["batch"] is False
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as held, connect(gateway.ws_url) as other:
        held.send("sleep 1")
        time.sleep(0.2)  # the worker's first thread is in the handler: a second one reads
        beside = _ask(other, "beside")
        alone = json.loads(held.recv(timeout=30))
    assert beside["pid"] == alone["pid"] != os.getpid()
    assert beside["batch"] is True
    assert alone["batch"] is True
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the gateway's process is untouched


def test_function_errors_in_a_worker_answer_internal_server_error(start_gateway, access_log):
    gateway = start_gateway(PROCESS_ROUTES, handler_processes=1)
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as ws:
        assert _ask(ws, "raise")["message"] == "Internal server error"
        assert _ask(ws, "set")["message"] == "Internal server error"  # Runtime.MarshalError
        assert _ask(ws, "fine")["body"] == "fine"
    assert [r.status for r in access_log if r.eventType == "MESSAGE"][-3:] == [502, 502, 200]


def test_a_handler_past_its_function_timeout_in_a_worker_fails_like_a_lambda_timeout(
    start_gateway, access_log
):
    gateway = start_gateway(PROCESS_ROUTES, handler_processes=1, function_timeout_seconds=0.5)
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as ws:
        assert _ask(ws, "sleep 2")["message"] == "Internal server error"
        assert _ask(ws, "after")["body"] == "after"
    assert [r.status for r in access_log if r.eventType == "MESSAGE"][-2:] == [502, 200]


def test_a_handler_past_the_integration_timeout_in_a_worker_answers_endpoint_request_timed_out(
    start_gateway, access_log
):
    """The 29 s integration timeout (here 0.5 s) bounds a worker's invocation like a thread's:
    API Gateway's own frame, and the late answer is dropped, not sent."""
    gateway = start_gateway(PROCESS_ROUTES, handler_processes=1, integration_timeout_seconds=0.5)
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as ws:
        assert _ask(ws, "sleep 2")["message"] == "Endpoint request timed out"
        assert _ask(ws, "after")["body"] == "after"
        time.sleep(2)  # the slept invocation answers now, to nobody
        assert _ask(ws, "last")["body"] == "last"
    assert [r.status for r in access_log if r.eventType == "MESSAGE"][-3:] == [504, 200, 200]


def test_a_worker_that_exits_fails_its_invocation_and_is_replaced(start_gateway, access_log):
    gateway = start_gateway(PROCESS_ROUTES, handler_processes=1)
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as ws:
        before = _ask(ws, "before")["pid"]
        assert _ask(ws, "exit")["message"] == "Internal server error"  # Runtime.ExitError
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as ws:
        after = _ask(ws, "after")["pid"]
    assert after not in (before, os.getpid())
    assert [r.status for r in access_log if r.eventType == "MESSAGE"].count(502) == 1


def test_a_handler_calling_sys_exit_fails_like_a_runtime_exit_and_its_thread_serves_on(
    start_gateway, access_log
):
    """Lambda's Python runtime exits when a handler raises SystemExit, and the invocation fails
    as Runtime.ExitError: answered at once, not after the function timeout. With one thread per
    worker, the next invocation proves that thread still serves."""
    gateway = start_gateway(
        PROCESS_ROUTES,
        handler_processes=1,
        max_concurrent_invocations=1,
        function_timeout_seconds=60,
    )
    _workers_loaded(gateway, 1)
    with connect(gateway.ws_url) as ws:
        before = _ask(ws, "before")["pid"]
        ws.send("sys.exit")
        assert json.loads(ws.recv(timeout=20))["message"] == "Internal server error"
        assert _ask(ws, "after")["pid"] == before
    assert [r.status for r in access_log if r.eventType == "MESSAGE"][-3:] == [200, 502, 200]


def test_a_worker_whose_gateway_stopped_while_it_loaded_exits_quietly(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Short-lived stacks (tests, restarts) stop before their workers load: a worker that finds
    its gateway gone exits 0 without a traceback on the terminal."""
    settings = GatewaySettings(port=0, handler_processes=1, access_log=lambda record: None)
    with Background(Gateway(PROCESS_ROUTES, settings)) as gateway:
        (channel,) = gateway._invoker.processes._channels
        assert not channel.loaded  # the gateway does not wait for its workers to load
    channel.process.join(60)
    assert channel.process.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err


def test_a_worker_whose_threads_are_all_in_handlers_ends_when_its_gateway_stops() -> None:
    """The thread that reads a worker's socket is also one that runs handlers: with every one
    busy, none reads the end of the socket when the gateway stops. Stopping must still end the
    worker (its running invocations are cut off, as they were when a reader saw the end)
    rather than leave it until its handlers return."""
    settings = GatewaySettings(
        port=0, handler_processes=1, max_concurrent_invocations=1, access_log=lambda record: None
    )
    with Background(Gateway(PROCESS_ROUTES, settings)) as gateway:
        _workers_loaded(gateway, 1)
        (channel,) = gateway._invoker.processes._channels
        with connect(gateway.ws_url) as ws:
            ws.send("sleep 120")
            wait_until(lambda: len(channel.pending) == 1, 30)
    channel.process.join(60)
    assert channel.process.exitcode is not None, "the worker outlived its gateway"


def test_frames_are_taken_whole_however_the_socket_splits_them() -> None:
    """A worker reads its socket in chunks that need not end where a frame does: a large event
    arrives in pieces, a burst of small ones in one read."""
    sizes = (0, 70_000, 5)
    frames = [_frame({"id": index, "body": "x" * size}) for index, size in enumerate(sizes)]
    stream = b"".join(frames)
    for chunk_size in (1, 3, 4096, len(stream)):
        buffer = bytearray()
        taken: list[bytes] = []
        for start in range(0, len(stream), chunk_size):
            buffer += stream[start : start + chunk_size]
            taken += _take_frames(buffer)
        assert [json.loads(payload)["id"] for payload in taken] == [0, 1, 2]
        assert taken == [frame[4:] for frame in frames]
        assert not buffer
