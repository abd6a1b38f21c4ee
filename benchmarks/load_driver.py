"""Driving ``benchmarks.load_client`` from a benchmark: a scenario run to its result in a fresh
process (``run_scenario``), or connections held open and asked what they received
(``HeldConnections``). The lines the two processes exchange are defined here."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from benchmarks import PROJECT_ROOT

RESULT_MARKER = "LOAD-CLIENT-RESULT "
READY_LINE = "READY"
REPORT_TIMEOUT_SECONDS = 10.0


def _command(arguments: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.load_client", *arguments]


def run_scenario(
    arguments: Sequence[str], env: Mapping[str, str], timeout: float
) -> dict[str, Any]:
    """Run a ``closed-loop`` or ``open-loop`` scenario in a fresh process; its result."""
    completed = subprocess.run(
        _command(arguments),
        cwd=PROJECT_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_MARKER))
            return result
    raise RuntimeError(
        f"load client {arguments[0]} failed (exit {completed.returncode}): "
        + " | ".join(completed.stderr.strip().splitlines()[-5:])
    )


class HeldConnections:
    """A ``hold`` scenario in its own process: N connections of one user, counting frames."""

    def __init__(
        self,
        url: str,
        connections: int,
        user_id: str,
        token_state_dir: Path,
        env: Mapping[str, str],
        log: IO[bytes],
        timeout: float = 120.0,
    ) -> None:
        self._process = subprocess.Popen(
            _command(
                [
                    "hold",
                    "--url",
                    url,
                    "--connections",
                    str(connections),
                    "--user",
                    user_id,
                    "--token-state-dir",
                    str(token_state_dir),
                ]
            ),
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        ready = self._read_line(READY_LINE + " ", timeout)
        self.connected: int = ready["connected"]
        self.errors: dict[str, int] = ready["errors"]

    @property
    def pid(self) -> int:
        """The holding client's process (the fan-out reads its CPU time)."""
        return self._process.pid

    def _read_line(self, marker: str, timeout: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line:
                raise RuntimeError(f"load client exited (status {self._process.poll()})")
            if line.startswith(marker):
                data: dict[str, Any] = json.loads(line.removeprefix(marker))
                return data
        raise TimeoutError(f"load client gave no {marker.strip()} line in {timeout:.0f} s")

    def report(self, frames_per_connection: int, frames_in_all: int = 0) -> dict[str, Any]:
        """What each connection received, once each holds ``frames_per_connection`` and all
        together ``frames_in_all`` (or after 10 s)."""
        assert self._process.stdin is not None
        self._process.stdin.write(f"report {frames_per_connection} {frames_in_all}\n")
        self._process.stdin.flush()
        return self._read_line(RESULT_MARKER, REPORT_TIMEOUT_SECONDS + 30)

    def close(self) -> None:
        if self._process.poll() is None and self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.write("quit\n")
                self._process.stdin.close()
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> HeldConnections:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
