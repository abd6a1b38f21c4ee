"""Local mode in a process of its own, for the benchmarks and the load tests.

``local_stack(work_dir)`` starts ``python -m benchmarks.local_stack``, which runs
``local.stack.LocalStack`` (moto in its own process, the gateway and this project's handlers,
no responder), prints a ready line with its endpoints, and stops when its stdin closes or it
gets SIGTERM. Its own process, so the clients (and a test's responder) do not share an
interpreter lock with the gateway, and its RSS is the gateway's. Handler settings
(``MESSAGES_PER_MINUTE``, ``MAX_CONNECTIONS_PER_USER``...) come from the environment it is
started with. No access log unless ``--access-log``: a line per event would cost a loaded
gateway more than the event.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks import PROJECT_ROOT
from benchmarks.environment import FAKE_CREDENTIALS, base_environment, patched_environ
from benchmarks.processes import ServerProcess
from benchmarks.report import progress
from local.__main__ import import_object
from local.aws import AwsResources
from local.gateway.access_log import AccessRecord
from local.loop import keep_startup_objects, run
from local.stack import LocalStack, LocalStackSettings
from local.tokens import DevTokens
from runtime import aws, schema
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore

READY_MARKER = "STACK-READY "
READY_TIMEOUT_SECONDS = 90.0
STAGE = "bench"
# A clean stop runs every pending $disconnect against moto (seconds after a 1000-connection
# run); nothing of this stack outlives its user, so it is cut short.
STOP_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class RunningStack:
    """A started local stack: where it listens, its AWS, and its process (for RSS)."""

    process: ServerProcess
    ws_url: str
    management_endpoint: str
    aws: AwsResources
    state_dir: Path
    startup_seconds: float


@contextmanager
def local_stack(
    work_dir: Path,
    handler_settings: Mapping[str, str] | None = None,
    handlers: str | None = None,
    handler_processes: int | None = None,
    function_timeout_seconds: float | None = None,
) -> Iterator[RunningStack]:
    """Start local mode with ``handler_settings`` in its environment; stop it afterwards.

    ``handlers`` names another route table (``package.module:ROUTES``) than the project's;
    ``handler_processes`` overrides ``python -m local``'s number of handler worker processes,
    ``function_timeout_seconds`` its handlers' timeout (Pulumi.yaml's).
    The dev signing key is ``work_dir/state``'s, created before the stack starts.
    """
    state_dir = work_dir / "state"
    DevTokens.load_or_create(state_dir)  # created once, before the stack and the clients race
    env = base_environment({"PYTHONPATH": str(PROJECT_ROOT), **(handler_settings or {})})
    began = time.perf_counter()
    with ServerProcess(
        "local stack",
        [
            sys.executable,
            "-m",
            "benchmarks.local_stack",
            "--state-dir",
            str(state_dir),
            *([] if handlers is None else ["--handlers", handlers]),
            *([] if handler_processes is None else ["--handler-processes", str(handler_processes)]),
            *(
                []
                if function_timeout_seconds is None
                else ["--function-timeout", str(function_timeout_seconds)]
            ),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        log_path=work_dir / "stack.log",
        stdin_pipe=True,
        stop_grace_seconds=STOP_GRACE_SECONDS,
    ) as process:
        ready = json.loads(process.wait_for_line(READY_MARKER, READY_TIMEOUT_SECONDS))
        progress(f"local stack ready in {time.perf_counter() - began:.1f} s")
        yield RunningStack(
            process=process,
            ws_url=ready["ws_url"],
            management_endpoint=ready["management_endpoint"],
            aws=AwsResources(**ready["aws"]),
            state_dir=state_dir,
            startup_seconds=ready["startup_seconds"],
        )


@contextmanager
def runtime_on(stack: RunningStack) -> Iterator[ConnectionStore]:
    """This process's runtime clients (``runtime.aws``) pointed at the stack's moto while the
    block runs; the connections store they read."""
    env = {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": stack.aws.endpoint_url,
        schema.ENV_CONNECTIONS_TABLE: stack.aws.table_name,
    }
    with patched_environ(env):
        aws.reset_clients()
        try:
            yield ConnectionStore(StoreConfig(stack.aws.table_name))
        finally:
            aws.reset_clients()


# --- the stack's process ---------------------------------------------------------------------


def _no_access_log(record: AccessRecord) -> None:
    """Drops the access log's line per event (``--access-log`` keeps it)."""


async def _serve(options: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # stdin closed: its user is done
    defaults = LocalStackSettings()
    settings = LocalStackSettings(
        function_timeout_seconds=(
            defaults.function_timeout_seconds
            if options.function_timeout is None
            else options.function_timeout
        ),
        handler_processes=(
            defaults.handler_processes
            if options.handler_processes is None
            else options.handler_processes
        ),
        port=options.port,
        stage=options.stage,
        responder=None,
        routes=None if options.handlers is None else import_object(options.handlers, "--handlers"),
        state_dir=options.state_dir,
        access_log=None if options.access_log else _no_access_log,
    )
    async with LocalStack(settings) as stack:
        keep_startup_objects()
        ready = {
            "ws_url": stack.ws_url,
            "management_endpoint": stack.management_endpoint,
            "aws": dataclasses.asdict(stack.aws),
            "startup_seconds": round(stack.startup_seconds, 3),
        }
        sys.stdout.write(READY_MARKER + json.dumps(ready) + "\n")
        sys.stdout.flush()
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local_stack")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stage", default=STAGE)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument(
        "--handlers", metavar="MODULE:ROUTES", help="another route table (default: the project's)"
    )
    parser.add_argument(
        "--handler-processes",
        type=int,
        default=None,
        metavar="N",
        help="handler worker processes (default: python -m local's); 0 runs them on threads",
    )
    parser.add_argument(
        "--function-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="each handler's timeout (default: python -m local's, Pulumi.yaml's)",
    )
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run(_serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
