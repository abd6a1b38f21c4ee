"""``python -m local``: flags, ``--handlers`` serving another table, ``--log-format json``,
the startup banner, and Ctrl-C stopping everything cleanly (a real subprocess)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from local.__main__ import build_parser, settings_from
from local.gateway import RouteTable
from local.responder import demo_responder
from tests.local.gateway_handlers import ROUTES, echo
from tests.support import PROJECT_ROOT

FIELDS = {"time", "connectionId", "eventType", "routeKey", "status", "latency"}


def _settings(*argv: str):
    return settings_from(build_parser().parse_args(list(argv)))


def test_defaults_serve_this_project_with_the_demo_responder():
    settings = _settings()
    assert (settings.host, settings.port, settings.stage) == ("127.0.0.1", 8080, "dev")
    assert settings.idle_timeout_seconds == 600
    assert settings.max_duration_seconds == 7200
    assert settings.routes is None
    assert settings.responder is demo_responder
    assert settings.log_format == "text"


def test_function_timeout_and_memory_default_to_the_stacks_and_take_flags():
    config = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())["config"]
    defaults = _settings()
    assert defaults.function_timeout_seconds == config["lambdaTimeoutSeconds"]["default"]
    assert defaults.function_memory_mb == config["lambdaMemoryMb"]["default"]
    assert defaults.integration_timeout_seconds == 29  # the outer bound stays API Gateway's
    flagged = _settings("--function-timeout", "2.5", "--function-memory", "1024")
    assert (flagged.function_timeout_seconds, flagged.function_memory_mb) == (2.5, 1024)
    for bad in (["--function-timeout", "0"], ["--function-memory", "-1"]):
        with pytest.raises(SystemExit):
            _settings(*bad)


def test_flags_reach_the_settings():
    settings = _settings(
        "--port", "0", "--stage", "test", "--idle-timeout", "5", "--max-duration", "60",
        "--handlers", "tests.local.gateway_handlers:ROUTES",
        "--responder", "tests.local.gateway_handlers:echo", "--log-format", "json",
    )  # fmt: skip
    assert (settings.port, settings.stage) == (0, "test")
    assert (settings.idle_timeout_seconds, settings.max_duration_seconds) == (5, 60)
    assert settings.routes is ROUTES
    assert settings.responder is echo
    assert settings.log_format == "json"
    plain = _settings("--handlers", "tests.local.gateway_handlers:PLAIN_ROUTES")
    assert isinstance(plain.routes, RouteTable)
    assert plain.responder is None  # another table does not get the demo responder
    assert _settings("--no-responder").responder is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--handlers", "no_such_module:ROUTES"], "cannot import no_such_module"),
        (["--handlers", "tests.local.gateway_handlers"], "package.module:NAME"),
        (["--handlers", "tests.local.gateway_handlers:NOPE"], "has no 'NOPE'"),
        (["--handlers", "tests.local.gateway_handlers:echo"], "RouteTable"),
        (["--responder", "tests.local.gateway_handlers:FIELDS_X"], "has no"),
    ],
)
def test_bad_references_name_the_flag_and_the_fix(argv, message):
    with pytest.raises(SystemExit, match=message):
        _settings(*argv)


def test_bad_numbers_are_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--idle-timeout", "0"])
    assert "must be a number of seconds > 0" in capsys.readouterr().err


def _lines(stream) -> Iterator[str]:
    yield from iter(stream.readline, "")


@contextlib.contextmanager
def _serving(
    state_dir: Path, *flags: str, preexec_fn: Callable[[], None] | None = None
) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """``python -m local --port 0 *flags`` in a subprocess, and a queue of its stdout lines."""
    command = [sys.executable, "-m", "local", "--port", "0", "--state-dir", str(state_dir), *flags]
    process = subprocess.Popen(  # noqa: S603 - this project's own CLI, fixed arguments
        command,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=preexec_fn,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in _lines(process.stdout)], daemon=True
    )
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """``python -m local`` serving the echo table with JSON access logs, on a free port."""
    with _serving(
        tmp_path, "--log-format", "json", "--handlers", "tests.local.gateway_handlers:ROUTES"
    ) as served:
        yield served


def _next_matching(lines: queue.Queue[str], pattern: str) -> re.Match[str]:
    while True:
        line = lines.get(timeout=30)
        found = re.search(pattern, line)
        if found:
            return found


def test_serve_banner_json_access_log_and_ctrl_c(served):
    process, lines = served
    ready = _next_matching(lines, r"ready in ([0-9.]+) s")
    assert float(ready.group(1)) > 0
    page_url = _next_matching(lines, r"Chat page\s+(\S+)").group(1)
    ws_url = _next_matching(lines, r"WebSocket URL\s+(\S+)").group(1)
    # Issue 13 item 4: the chat page is at the root of local mode, and the banner says where.
    assert page_url == f"http://{urlsplit(ws_url).netloc}/"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    with direct.open(page_url, timeout=10) as page:
        assert page.headers.get_content_type() == "text/html"
    assert _next_matching(lines, r"Management endpoint\s+(\S+)").group(1) == ws_url.replace(
        "ws://", "http://"
    )
    wscat = _next_matching(lines, r'wscat -c "(ws://\S+\?token=\S+)"').group(1)
    assert wscat.startswith(ws_url)
    with connect(ws_url + "?token=carol") as ws:
        ws.send("hello")
        assert json.loads(ws.recv(timeout=10))["echo"] == "hello"
    records = [json.loads(_next_matching(lines, r"^\{.*\}$").group(0)) for _ in range(3)]
    assert all(set(record) == FIELDS for record in records)
    assert [r["eventType"] for r in records] == ["CONNECT", "MESSAGE", "DISCONNECT"]

    with connect(ws_url + "?token=dave") as ws:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert process.wait(timeout=30) == 0
    _next_matching(lines, r"^stopped$")


def _open_files_soft_limit(pid: int) -> int:
    for line in open(f"/proc/{pid}/limits").read().splitlines():  # noqa: SIM115 - /proc
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files limit in /proc/{pid}/limits")


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for thread in os.listdir(f"/proc/{pid}/task")
        for child in open(f"/proc/{pid}/task/{thread}/children").read().split()
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_raises_its_open_file_limit_for_itself_and_what_it_starts(tmp_path):
    """Started from a shell whose soft limit is 256 (macOS's default; Linux's is 1024), local
    mode could not hold the thousand connections its gateway benchmark opens: it raises the
    soft limit up to the hard one (at most ``OPEN_FILES_WANTED``) before it starts moto's
    process and the handler workers, which inherit it."""
    import resource

    from local.loop import OPEN_FILES_WANTED

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(OPEN_FILES_WANTED, hard)
    if expected <= 256:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    # Named "module:function", the handlers run in the handler worker processes.
    flags = ("--handlers", "benchmarks.echo:ROUTES", "--handler-processes", "2")
    with _serving(
        tmp_path,
        *flags,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
    ) as (process, lines):
        _next_matching(lines, r"ready in ([0-9.]+) s")
        children = _children(process.pid)
        deadline = time.monotonic() + 30
        while len(children) < 3 and time.monotonic() < deadline:  # workers spawn on their own
            time.sleep(0.1)
            children = _children(process.pid)
        # moto's process and the two handler workers (and multiprocessing's resource tracker)
        assert len(children) >= 3
        assert _open_files_soft_limit(process.pid) == expected
        assert {_open_files_soft_limit(pid) for pid in children} == {expected}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_the_open_file_limit_goes_no_higher_than_the_hard_limit():
    """With a hard limit under ``OPEN_FILES_WANTED``, the soft limit is raised to it."""
    code = (
        "import resource; from local.loop import raise_open_file_limit; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2000)); "
        "print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    completed = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.split() == ["2000", "(2000,", "2000)"]
