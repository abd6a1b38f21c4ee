"""Servers the benchmarks start as subprocesses: wait until ready, read their RSS, stop them.

Each server runs in its own session (process group), so stopping it also stops what it spawned
(serverless-offline's Python workers, Architect's handler processes) and nothing else. Its
output goes to a log file, never to a pipe nobody reads: a full pipe would stall the server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from benchmarks.environment import LOOPBACK
from benchmarks.report import progress

STOP_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.1


class ServerProcess:
    """A subprocess writing to ``log_path``; a context manager that stops it on exit."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        stdin_pipe: bool = False,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.name = name
        self.stop_grace_seconds = stop_grace_seconds
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.process.returncode} while starting:\n"
                + self.log_tail()
            )

    def wait_for_line(self, marker: str, timeout: float) -> str:
        """The first line of the log starting with ``marker`` (without it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith(marker):
                    return line.removeprefix(marker)
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def wait_for_port(
        self, port: int, timeout: float, ready: Callable[[], bool] | None = None
    ) -> None:
        """Until ``port`` on loopback accepts connections (and ``ready()``, if given, is true)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
                if ready is None or ready():
                    return
            time.sleep(POLL_SECONDS)
        raise TimeoutError(
            f"{self.name} not listening on {port} after {timeout:.0f} s:\n{self.log_tail()}"
        )

    def rss_mb(self) -> dict[str, float]:
        """Resident and peak resident memory of the server process itself (Linux)."""
        figures: dict[str, float] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    figures["rss_mb" if name == "VmRSS" else "peak_rss_mb"] = round(
                        int(value.split()[0]) / 1024, 1
                    )
        return figures

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``stop_grace_seconds``."""
        began = time.monotonic()
        if self.process.poll() is None:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(self.stop_grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_GRACE_SECONDS)
        # Children that outlived their parent still belong to its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()
        progress(f"{self.name} stopped in {time.monotonic() - began:.1f} s")

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
