"""Local mode in its own process for the benchmarks that load it (``benchmarks.stack_process``).

It starts ``local.stack.LocalStack`` (embedded moto, the gateway and this project's handlers,
no responder), prints ``READY`` and a JSON line of its endpoints, and stops cleanly when its
stdin closes or it gets SIGTERM. Its own process, so the load client and the gateway do not
share an interpreter (and a GIL), and its RSS is the gateway's (plus the embedded moto's).
Handler settings (``MESSAGES_PER_MINUTE``, ``MAX_CONNECTIONS_PER_USER``...) come from the
environment it is started with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from local.__main__ import import_object
from local.gateway.access_log import AccessRecord
from local.loop import run
from local.stack import LocalStack, LocalStackSettings

READY_MARKER = "STACK-READY "


def _no_access_log(record: AccessRecord) -> None:
    """Drops the access log's line per event (``--access-log`` keeps it)."""


async def _serve(
    port: int,
    stage: str,
    state_dir: Path,
    access_log: bool,
    handlers: str | None,
    handler_processes: int | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # stdin closed: the benchmark is done
    defaults = LocalStackSettings()
    settings = LocalStackSettings(
        handler_processes=(
            defaults.handler_processes if handler_processes is None else handler_processes
        ),
        port=port,
        stage=stage,
        responder=None,
        routes=None if handlers is None else import_object(handlers, "--handlers"),
        state_dir=state_dir,
        access_log=None if access_log else _no_access_log,
    )
    async with LocalStack(settings) as stack:
        ready = {
            "ws_url": stack.ws_url,
            "management_endpoint": stack.management_endpoint,
            "aws_endpoint_url": stack.aws.endpoint_url,
            "table_name": stack.aws.table_name,
            "queue_url": stack.aws.queue_url,
            "startup_seconds": round(stack.startup_seconds, 3),
        }
        sys.stdout.write(READY_MARKER + json.dumps(ready) + "\n")
        sys.stdout.flush()
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stack_process")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stage", default="bench")
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
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run(
        _serve(
            options.port,
            options.stage,
            options.state_dir,
            options.access_log,
            options.handlers,
            options.handler_processes,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
