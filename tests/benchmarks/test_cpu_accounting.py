"""CPU accounting of the peer comparison: each emulator's processes, per echo (``/proc``).

Which process bounds a closed loop on a 2-vCPU machine is a question of CPU time, so the peer
benchmark reports each emulator's CPU per echo beside its throughput. These tests check the
accounting on real processes; no figure is asserted beyond what the work itself guarantees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import local.loop
from benchmarks import cpu, echo, gateway, load_client
from benchmarks.echo import POSTINGS
from benchmarks.environment import base_environment
from benchmarks.load_driver import run_scenario
from benchmarks.peer import _combine, _section
from benchmarks.peer_emulators import start_ours
from benchmarks.readme import peer_runs
from runtime.posting import Answer
from tests.support import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not cpu.available(), reason="reads /proc (Linux)")


def _burn(seconds: float) -> str:
    return (
        f"import time\nend = time.process_time() + {seconds}\n"
        "while time.process_time() < end: pass\n"
    )


def _burner(seconds: float) -> subprocess.Popen[bytes]:
    """A session leader that, once it reads a line, spawns a child, both burning ``seconds`` of
    CPU, then waiting."""
    spawn = (
        "import subprocess, sys; sys.stdin.readline()\n"
        f"subprocess.Popen([sys.executable, '-c', {_burn(seconds)!r}])\n"
    )
    return subprocess.Popen(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", spawn + _burn(seconds) + "time.sleep(30)\n"],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )


def test_a_session_counts_its_leader_and_what_it_spawned_and_nothing_else() -> None:
    process = _burner(0.4)
    try:
        before = cpu.session_cpu_seconds(process.pid)
        assert process.pid in before
        assert os.getpid() not in before
        assert process.stdin is not None
        process.stdin.write(b"go\n")  # the child starts only now, after the first reading
        process.stdin.flush()
        deadline = time.monotonic() + 20
        while len(cpu.session_cpu_seconds(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # both burn 0.4 s of CPU, on two vCPUs or one
        after = cpu.session_cpu_seconds(process.pid)
        assert len(after) == 2, after  # the leader and its child
        used = cpu.session_cpu_used(before, after)
        # 0.8 s burnt in all, less what the leader had burnt before the first reading.
        assert 0.4 <= used <= 0.8 + 0.3
        assert cpu.session_cpu_used(after, after) == 0
        split = cpu.session_cpu_split(before, after, process.pid)
        assert split["server"] + split["spawned"] == pytest.approx(used)
        # The child started after the first reading: all of its 0.4 s is the spawned part.
        assert 0.4 <= split["spawned"] <= 0.4 + 0.3
        assert split["server"] <= 0.4 + 0.3
    finally:
        os.killpg(process.pid, 9)
        process.wait()
        assert process.stdin is not None
        process.stdin.close()


def test_the_machine_shares_are_idle_and_stolen_time_over_all_of_it() -> None:
    before = dict.fromkeys(("user", "nice", "system", "idle", "iowait", "irq", "softirq"), 0)
    before["steal"] = 0
    after = {**before, "user": 500, "system": 100, "idle": 150, "iowait": 50, "steal": 200}
    assert cpu.machine_shares(before, after) == {"idle": 0.2, "steal": 0.2}
    assert cpu.machine_shares(after, after) == {}


def test_the_machine_is_read_from_proc_stat_by_state() -> None:
    """proc(5): /proc/stat's ``cpu`` line is user, nice, system, idle, iowait, irq, softirq,
    steal, ... in clock ticks since boot."""
    first = cpu.machine_cpu_ticks()
    assert list(first)[:4] == ["user", "nice", "system", "idle"]
    assert "steal" in first
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    second = cpu.machine_cpu_ticks()
    assert second["user"] + second["system"] > first["user"] + first["system"]
    shares = cpu.machine_shares(first, second)
    assert 0 <= shares["steal"] <= 1
    assert 0 <= shares["idle"] <= 1


def test_a_process_started_between_readings_counts_from_zero() -> None:
    assert cpu.session_cpu_used({1: 2.0}, {1: 2.5, 7: 0.25}) == pytest.approx(0.75)


def _round(throughput: float, emulator_ms: float, cores: float) -> dict[str, Any]:
    return {
        "messages": int(throughput * 10),
        "throughput_per_second": throughput,
        "rtt_ms": {"p50": 10.0, "p99": 20.0},
        "connect_ms": {"p50": 2.0},
        "cpu_ms_per_message": {
            "emulator": emulator_ms,
            "emulator_server": round(emulator_ms * 0.3, 4),
            "emulator_spawned": round(emulator_ms * 0.7, 4),
            "load_client": 0.17,
        },
        "cpu_cores": {"emulator": cores, "load_client": 0.15},
        "machine_share": {"idle": 0.05, "steal": round(cores / 20, 3)},
        "errors": 0,
    }


def test_the_rounds_keep_cpu_per_echo_and_the_section_compares_it() -> None:
    ours = [_round(900, 1.8, 1.62), _round(1000, 1.7, 1.7), _round(800, 1.9, 1.52)]
    theirs = [_round(700, 2.4, 1.68), _round(750, 2.3, 1.73), _round(600, 2.5, 1.5)]
    combined = _combine(ours)
    assert combined["cpu_ms_per_echo"] == 1.8
    assert combined["cpu_cores"] == 1.62
    assert combined["load_client_cpu_ms_per_echo"] == 0.17
    assert combined["samples"][1]["cpu_ms_per_echo"] == 1.7
    assert combined["server_cpu_ms_per_echo"] == 0.54
    assert combined["spawned_cpu_ms_per_echo"] == 1.26
    assert combined["samples"][2]["spawned_cpu_ms_per_echo"] == 1.33
    assert combined["machine_steal_share"] == 0.08  # the median round's 0.081, to 2 places
    assert combined["samples"][1]["machine_steal_share"] == 0.085
    assert combined["machine_idle_share"] == 0.05
    section = _section(
        {
            "ours": {1: ours, 10: ours},
            "serverless_offline": {1: theirs, 10: theirs},
        },
        "versions",
        3,
        3.0,
        10.0,
    )
    assert section.data["serverless_offline"]["cpu_per_echo_ratio"] == pytest.approx(
        1.8 / 2.4, 0.01
    )


def test_rounds_without_cpu_figures_leave_them_out() -> None:
    plain = {k: v for k, v in _round(900, 1.8, 1.6).items() if not k.startswith("cpu")}
    combined = _combine([plain])
    assert "cpu_ms_per_echo" not in combined
    assert "cpu_ms_per_echo" not in combined["samples"][0]


def _measured_on_ours(tmp_path: Path, echo_posting: str, scenario: list[str]) -> dict[str, Any]:
    """The load client's ``scenario`` against ``start_ours`` (the gateway, the echo handler in
    its worker processes), with ``--cpu-of-session`` on the gateway's session."""
    ours = start_ours(tmp_path, echo_posting)
    try:
        return run_scenario(
            [*scenario, "--url", ours.ws_url, "--cpu-of-session", str(ours.process.pid)],
            base_environment({"PYTHONPATH": str(PROJECT_ROOT)}),
            timeout=120,
        )
    finally:
        ours.process.stop()


@pytest.mark.parametrize("echo_posting", POSTINGS)
def test_the_closed_loop_client_reports_the_cpu_of_our_gateway_and_its_workers(
    tmp_path: Path, echo_posting: str
) -> None:
    """The peer benchmark's own path: ``start_ours`` (the gateway, the echo handler in its
    worker processes, posting either way) driven by the closed-loop load client with
    ``--cpu-of-session``. Every echo must come back: the handler raises if its post fails.
    The client runs on the loop the gateway runs on (uvloop's here, ``local.loop``): on
    asyncio's its CPU per echo was about half again as much, taken from the emulators."""
    result = _measured_on_ours(
        tmp_path,
        echo_posting,
        ["closed-loop", "--clients", "2", "--warmup", "0.5", "--duration", "1"],
    )
    assert result["errors"] == 0, result["error_kinds"]
    assert result["messages"] > 0
    assert result["event_loop"] == ("asyncio" if local.loop.uvloop is None else "uvloop")
    per_message, cores = result["cpu_ms_per_message"], result["cpu_cores"]
    # Every echo runs through the gateway and a worker's boto3 post: some CPU, never none.
    assert per_message["emulator"] > 0
    assert per_message["load_client"] > 0
    # The gateway relays every echo and a worker runs every post: both parts did some work.
    assert per_message["emulator_server"] > 0
    assert per_message["emulator_spawned"] > 0
    assert per_message["emulator_server"] + per_message["emulator_spawned"] == pytest.approx(
        per_message["emulator"], abs=0.001
    )
    assert 0 < cores["emulator"] <= (os.cpu_count() or 1) + 0.1
    shares = result["machine_share"]
    assert 0 <= shares["steal"] <= 1
    assert 0 <= shares["idle"] < 1  # the machine ran the echoes meanwhile


class _Recorder:
    def __init__(self, http_status: int = 200) -> None:
        self.posts: list[tuple[str, bytes]] = []
        self.http_status = http_status

    def post(self, connection_id: str, data: bytes) -> Any:
        self.posts.append((connection_id, data))
        return Answer.of_response(self.http_status, "")

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:
        self.posts.append((ConnectionId, Data))


@pytest.mark.parametrize(
    ("echo_posting", "http_status"), [("boto3", 200), ("lean", 200), ("lean", 204)]
)
def test_the_echo_handler_posts_the_way_echo_posting_says(
    monkeypatch: pytest.MonkeyPatch, echo_posting: str, http_status: int
) -> None:
    """Any 2xx is a post done: our gateway answers 200, serverless-offline 204."""
    lean, plain = _Recorder(http_status), _Recorder()
    monkeypatch.setattr(echo, "_lean_transport", lambda endpoint_url: lean)
    monkeypatch.setattr(echo, "_management_api", lambda endpoint_url: plain)
    monkeypatch.setenv(echo.ENDPOINT_VARIABLE, "http://127.0.0.1:9/bench")
    monkeypatch.setenv(echo.POSTING_VARIABLE, echo_posting)
    event = {"requestContext": {"eventType": "MESSAGE", "connectionId": "c1"}, "body": "hi"}
    assert echo.handler(event, None) == {"statusCode": 200}
    used, unused = (lean, plain) if echo_posting == "lean" else (plain, lean)
    assert used.posts == [("c1", b"hi")]
    assert unused.posts == []


def test_a_failed_lean_post_fails_the_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(echo, "_lean_transport", lambda endpoint_url: _Recorder(410))
    monkeypatch.setenv(echo.ENDPOINT_VARIABLE, "http://127.0.0.1:9/bench")
    monkeypatch.setenv(echo.POSTING_VARIABLE, "lean")
    event = {"requestContext": {"eventType": "MESSAGE", "connectionId": "c1"}, "body": "hi"}
    with pytest.raises(RuntimeError, match="post to c1 failed"):
        echo.handler(event, None)


def test_the_runs_table_shows_each_side_split_into_server_and_handlers() -> None:
    ours = _combine([_round(900, 1.8, 1.62)])
    theirs = {k: v for k, v in _combine([_round(700, 2.4, 1.68)]).items() if "_cpu_" not in k}
    row = peer_runs(
        {
            "peer": {
                "consecutive_runs": [
                    {"ours": {"clients_10": ours}, "serverless_offline": {"clients_10": theirs}}
                ]
            }
        }
    ).splitlines()[-1]
    # Ours has the split; theirs (a round without it) shows its total alone.
    assert "1.80 ms [server 0.54, handlers 1.26] (1.62 cores) / 2.40 ms (1.68 cores)" in row
    # The rounds read the machine's stolen vCPU time: a column of its own.
    assert "| 8% / 8% |" in row


def test_runs_without_a_steal_share_get_no_column_for_it() -> None:
    def without_steal(round_: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in _combine([round_]).items() if not k.startswith("machine_")}

    table = peer_runs(
        {
            "peer": {
                "consecutive_runs": [
                    {
                        "ours": {"clients_10": without_steal(_round(900, 1.8, 1.62))},
                        "serverless_offline": {"clients_10": without_steal(_round(700, 2.4, 1.6))},
                    }
                ]
            }
        }
    )
    assert "stolen" not in table
    header, rule, row = table.splitlines()
    assert header.count("|") == rule.count("|") == row.count("|") == 8


def test_the_cores_busy_outside_the_emulator_and_the_load_client_are_reported() -> None:
    share = {"idle": 0.068, "steal": 0.032}
    cores = {"emulator": 1.283, "load_client": 0.11}
    assert load_client.other_cores(share, cores, 2) == pytest.approx(1.8 - 1.283 - 0.11, abs=1e-3)
    assert load_client.other_cores(share, {"emulator": 1.0}, 2) is None
    assert load_client.other_cores({}, cores, 2) is None
    sample = {"machine_share": share, "cpu_cores": cores, "machine_other_cores": 0.407}
    assert _combine([sample])["machine_other_cores"] == 0.41


def test_the_open_loop_client_reports_the_cpu_and_the_host_like_the_closed_loop(
    tmp_path: Path,
) -> None:
    """The gateway benchmark's path: ``--cpu-of-session`` on the open-loop scenario gives its
    rounds the figures the peer rounds have (local mode's CPU per message, the machine's stolen
    and idle shares, the cores busy elsewhere), so that a slow round can be told from a busy
    host. Our gateway with the echo handler, which posts each body back. A second of warm-up
    comes first: its messages are answered but neither counted nor timed."""
    result = _measured_on_ours(
        tmp_path,
        "boto3",
        [
            *("open-loop", "--connections", "3", "--rate", "30", "--duration", "1"),
            *("--warmup", "1", "--body", '{"hello":"again"}', "--expect", "again"),
        ],
    )
    assert result["errors"] == 0, result["error_kinds"]
    assert result["answered"] == result["sent"] == result["rtt_ms"]["n"] > 0
    assert result["sent"] <= 30  # 3 connections at 10/s for the measured second, not the warm-up
    assert result["warmup_seconds"] == 1.0
    assert result["cpu_ms_per_message"]["emulator"] > 0
    assert result["cpu_ms_per_message"]["emulator_spawned"] > 0  # the echo ran in a worker
    assert 0 <= result["machine_share"]["idle"] < 1
    vcpus = os.cpu_count() or 1
    # What the other processes used, less what /proc's tick granularity gets wrong.
    assert -0.2 < result["machine_other_cores"] <= vcpus


def test_the_gateway_rows_say_what_the_host_did_where_it_was_measured() -> None:
    def load(**extra: Any) -> dict[str, Any]:
        return {
            "connections": 100,
            "target_rate_per_second": 200.0,
            "achieved_rate_per_second": 200.0,
            "rtt_ms": {"p50": 8.0, "p99": 40.0},
            "errors": 0,
            "gateway_rss": {"rss_mb": 90.0},
            **extra,
        }

    measured = load(
        cpu_ms_per_message={"emulator": 5.94},
        machine_share={"idle": 0.412, "steal": 0.031},
        machine_other_cores=0.052,
    )
    rows = gateway._section(
        {"local_stack": {"c100_r200": measured}, "local_stack_threads": {"c100_r200": load()}},
        20.0,
        2.0,
    ).rows
    with_host, without = (row.comparison for row in rows)
    assert "CPU 5.9 ms/ping; host: 3% stolen, 41% idle, 0.05 cores busy elsewhere" in with_host
    assert "host:" not in without
