"""Local mode (``benchmarks.stack_process``) started for a benchmark, and its endpoints."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import base_environment
from benchmarks.processes import ServerProcess
from benchmarks.report import progress
from local.tokens import DevTokens

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 60.0
STAGE = "bench"
STOP_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class RunningStack:
    """A started local stack: where it listens, and its process (for RSS)."""

    process: ServerProcess
    ws_url: str
    management_endpoint: str
    aws_endpoint_url: str
    table_name: str
    state_dir: Path
    startup_seconds: float


@contextmanager
def local_stack(
    work_dir: Path,
    handler_settings: Mapping[str, str] | None = None,
    handlers: str | None = None,
    handler_processes: int | None = None,
) -> Iterator[RunningStack]:
    """Start local mode with ``handler_settings`` in its environment; stop it afterwards.

    ``handlers`` names another route table (``package.module:ROUTES``) than the project's;
    ``handler_processes`` overrides ``python -m local``'s number of handler worker processes.
    """
    from benchmarks.stack_process import READY_MARKER

    state_dir = work_dir / "state"
    DevTokens.load_or_create(state_dir)  # created once, before the stack and the clients race
    env = base_environment({"PYTHONPATH": str(PROJECT_ROOT), **(handler_settings or {})})
    began = time.perf_counter()
    with ServerProcess(
        "local stack",
        [
            sys.executable,
            "-m",
            "benchmarks.stack_process",
            "--stage",
            STAGE,
            "--state-dir",
            str(state_dir),
            *([] if handlers is None else ["--handlers", handlers]),
            *([] if handler_processes is None else ["--handler-processes", str(handler_processes)]),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        log_path=work_dir / "stack.log",
        stdin_pipe=True,
        # A clean stop runs every pending $disconnect against moto (seconds after a 1000-
        # connection test); nothing of this stack outlives the benchmark, so it is cut short.
        stop_grace_seconds=STOP_GRACE_SECONDS,
    ) as process:
        ready = json.loads(process.wait_for_line(READY_MARKER, READY_TIMEOUT_SECONDS))
        progress(f"local stack ready in {time.perf_counter() - began:.1f} s")
        yield RunningStack(
            process=process,
            ws_url=ready["ws_url"],
            management_endpoint=ready["management_endpoint"],
            aws_endpoint_url=ready["aws_endpoint_url"],
            table_name=ready["table_name"],
            state_dir=state_dir,
            startup_seconds=ready["startup_seconds"],
        )
