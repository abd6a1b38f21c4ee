"""The local stack split over two processes, for the load tests.

``python -m tests.reliability.stack_process aws --ready-file F`` runs the embedded AWS
(``local.aws.EmbeddedAws``: moto with this project's table and queues);
``python -m tests.reliability.stack_process gateway --ready-file F --aws-file A --state-dir D``
runs the local gateway serving this project's handlers (``local.project.PROJECT_ROUTES``, with
the environment ``local.project.handler_environment`` gives them), pointed at that AWS. Each
writes its endpoints as JSON to ``--ready-file`` once it listens and stops cleanly (the gateway
closing every socket and running its ``$disconnect``) when its stdin closes.

These are the pieces ``local.stack.LocalStack`` runs in one process; the load tests run them in
two, with the clients and the responder in a third, because on a small machine one interpreter
lock is what would be measured otherwise. The handlers' settings (``MESSAGES_PER_MINUTE``...)
come from the environment the gateway process is started with. No access log: one line per
event would cost the loaded gateway more than the event.

moto runs as ``python -m local`` runs it: patched like AWS (``local.fidelity``) and without
the costs ``local.moto_process`` removes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from local.aws import AwsResources, EmbeddedAws
from local.gateway import AccessRecord, Gateway, GatewaySettings
from local.project import PROJECT_ROUTES, handler_environment
from local.stack import EnvironmentPatch
from local.tokens import DevTokens
from runtime import aws as runtime_aws
from runtime import schema


def _no_access_log(record: AccessRecord) -> None:
    """Drops the access log's records (see the module docstring)."""


def _write_ready(ready_file: Path, endpoints: dict[str, Any]) -> None:
    draft = ready_file.with_suffix(".draft")
    draft.write_text(json.dumps(endpoints))
    draft.replace(ready_file)  # the reader never sees half a file


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # stdin closed: the test is done
    await stop.wait()


async def serve_aws(options: argparse.Namespace) -> None:
    embedded = EmbeddedAws()
    resources = await asyncio.to_thread(embedded.start)
    try:
        _write_ready(options.ready_file, dataclasses.asdict(resources))
        await _until_stopped()
    finally:
        await asyncio.to_thread(embedded.stop)


async def serve_gateway(options: argparse.Namespace) -> None:
    aws = AwsResources(**json.loads(options.aws_file.read_text()))
    tokens = DevTokens.load_or_create(options.state_dir)
    # Bound first, as LocalStack does: the handlers' environment names the port.
    sock = socket.create_server(("127.0.0.1", 0))
    gateway = Gateway(
        PROJECT_ROUTES,
        GatewaySettings(
            port=int(sock.getsockname()[1]), jwks=tokens.jwks(), access_log=_no_access_log
        ),
    )
    environment = EnvironmentPatch(
        {
            **aws.environment(),
            **handler_environment(
                aws,
                management_endpoint=gateway.management_endpoint,
                jwks_url=gateway.jwks_url,
                idle_timeout_seconds=schema.IDLE_TIMEOUT_SECONDS,
            ),
        }
    )
    runtime_aws.reset_clients()
    try:
        await gateway.start(sock)
        try:
            _write_ready(
                options.ready_file,
                {"ws_url": gateway.ws_url, "management_endpoint": gateway.management_endpoint},
            )
            await _until_stopped()
        finally:
            await gateway.stop()
    finally:
        sock.close()
        environment.restore()


ROLES: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, None]]] = {
    "aws": serve_aws,
    "gateway": serve_gateway,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.stack_process")
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--aws-file", type=Path, help="the aws role's ready file (gateway)")
    parser.add_argument("--state-dir", type=Path, help="where the dev signing key is (gateway)")
    options = parser.parse_args()
    asyncio.run(ROLES[options.role](options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
