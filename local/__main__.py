"""``python -m local``: the whole stack on this machine; ``python -m local token --user alice``.

Serving options: ``--host``, ``--port`` (8080), ``--stage`` (dev), ``--idle-timeout`` (600 s),
``--max-duration`` (7200 s), ``--function-timeout`` and ``--function-memory`` (Pulumi.yaml's
``lambdaTimeoutSeconds`` and ``lambdaMemoryMb``), ``--handlers package.module:ROUTES`` (another
route table), ``--responder package.module:function`` / ``--no-responder``,
``--log-format text|json``, ``--state-dir`` (.local). Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from local import IMPORTED_AT
from local.gateway.access_log import LOG_FORMATS
from local.gateway.invoker import split_reference
from local.gateway.models import RouteTable
from local.loop import keep_startup_objects, raise_open_file_limit, run
from local.project import FUNCTION_MEMORY_MB, FUNCTION_TIMEOUT_SECONDS
from local.stack import DEFAULT_HANDLER_PROCESSES, LocalStack, LocalStackSettings
from local.tokens import DEFAULT_STATE_DIR, DEFAULT_TOKEN_TTL_SECONDS, DevTokens
from runtime import schema

EXAMPLE_MESSAGE = '{"action":"chat_message","conversationId":"demo","content":"What is RAG?"}'


def import_object(reference: str, what: str) -> Any:
    """``package.module:NAME`` → the object; a clear error naming the flag otherwise."""
    try:
        module_name, attribute = split_reference(reference, what)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"{what} {reference!r}: cannot import {module_name}: {exc}") from None
    if not hasattr(module, attribute):
        raise SystemExit(f"{what} {reference!r}: {module_name} has no {attribute!r}")
    return getattr(module, attribute)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds > 0")
    return value


def _megabytes(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a whole number of MB > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local",
        description="Run the WebSocket API locally: API Gateway emulator, handlers, moto, "
        "dev tokens and a demo responder.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--stage", default="dev", help="stage name in the URLs (default dev)")
    parser.add_argument(
        "--idle-timeout",
        type=_positive,
        default=float(schema.IDLE_TIMEOUT_SECONDS),
        help="seconds without a client message before closing with 1001 (default 600)",
    )
    parser.add_argument(
        "--max-duration",
        type=_positive,
        default=float(schema.MAX_CONNECTION_SECONDS),
        help="maximum connection seconds before closing with 1001 (default 7200)",
    )
    parser.add_argument(
        "--function-timeout",
        type=_positive,
        default=FUNCTION_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="each handler's Lambda timeout; past it, it fails like a Lambda timeout "
        f"(default {FUNCTION_TIMEOUT_SECONDS:g}: Pulumi.yaml's lambdaTimeoutSeconds)",
    )
    parser.add_argument(
        "--function-memory",
        type=_megabytes,
        default=FUNCTION_MEMORY_MB,
        metavar="MB",
        help="context.memory_limit_in_mb of each handler "
        f"(default {FUNCTION_MEMORY_MB}: Pulumi.yaml's lambdaMemoryMb)",
    )
    parser.add_argument(
        "--handler-processes",
        type=int,
        default=DEFAULT_HANDLER_PROCESSES,
        metavar="N",
        help="run 'module:function' handlers in N worker processes "
        f"(default {DEFAULT_HANDLER_PROCESSES}; 0: on threads of the gateway's process)",
    )
    parser.add_argument(
        "--handlers",
        metavar="MODULE:ROUTES",
        help="serve another route table (a RouteTable or a dict of route key → handler)",
    )
    responders = parser.add_mutually_exclusive_group()
    responders.add_argument(
        "--responder",
        metavar="MODULE:FUNCTION",
        help="answer chat messages with responder(message: dict, sender: MessageSender)",
    )
    responders.add_argument(
        "--no-responder", action="store_true", help="leave the chat queue unconsumed"
    )
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where the dev key is kept"
    )
    commands = parser.add_subparsers(dest="command")
    token = commands.add_parser("token", help="print a dev token (no gateway needed)")
    token.add_argument("--user", required=True, help="the token's subject (userId)")
    token.add_argument(
        "--ttl", type=int, default=DEFAULT_TOKEN_TTL_SECONDS, help="lifetime in seconds"
    )
    token.add_argument("--state-dir", type=Path, default=None, dest="token_state_dir")
    return parser


def settings_from(args: argparse.Namespace) -> LocalStackSettings:
    routes = None
    if args.handlers:
        try:
            routes = RouteTable.coerce(import_object(args.handlers, "--handlers"))
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"--handlers {args.handlers!r}: {exc}") from None
    if args.no_responder:
        responder = None
    elif args.responder:
        responder = import_object(args.responder, "--responder")
        if not callable(responder):
            raise SystemExit(f"--responder {args.responder!r} is not a function")
    else:
        # The demo responder answers this project's chat queue; another table opts in.
        responder = LocalStackSettings.responder if routes is None else None
    return LocalStackSettings(
        host=args.host,
        port=args.port,
        stage=args.stage,
        idle_timeout_seconds=args.idle_timeout,
        max_duration_seconds=args.max_duration,
        function_timeout_seconds=args.function_timeout,
        function_memory_mb=args.function_memory,
        handler_processes=args.handler_processes,
        routes=routes,
        responder=responder,
        state_dir=args.state_dir,
        log_format=args.log_format,
    )


def banner(stack: LocalStack, ready_seconds: float) -> str:
    token = stack.token_for("alice")
    aws = stack.aws
    return "\n".join(
        [
            f"rag-websocket local stack ready in {ready_seconds:.2f} s "
            f"(start-up {stack.startup_seconds:.2f} s after imports)",
            f"  Chat page            {stack.page_url}",
            f"  WebSocket URL        {stack.ws_url}",
            f"  Management endpoint  {stack.management_endpoint}",
            f"  JWKS                 {stack.jwks_url}",
            f"  AWS (moto)           {aws.endpoint_url}  table {aws.table_name}",
            f"                       queue {aws.queue_url}",
            "",
            "Connect as alice (token valid 24 h; others: python -m local token --user bob):",
            f'  wscat -c "{stack.ws_url}?{schema.TOKEN_QUERY_PARAMETER}={token}"',
            "then send:",
            f"  {EXAMPLE_MESSAGE}",
            "",
            "Ctrl-C stops everything.",
        ]
    )


async def serve(settings: LocalStackSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        stop.set()
        for signum in signals:  # a second Ctrl-C interrupts the clean stop
            loop.remove_signal_handler(signum)

    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    async with LocalStack(settings) as stack:
        keep_startup_objects()
        print(banner(stack, time.perf_counter() - IMPORTED_AT), flush=True)
        await stop.wait()
        print("stopping: closing connections (1001) and running their $disconnect...", flush=True)
    print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        tokens = DevTokens.load_or_create(args.token_state_dir or args.state_dir)
        print(tokens.issue(args.user, ttl_seconds=args.ttl))
        return 0
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # Powertools warns on every invocation that records no metric (ping): noise locally.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    settings = settings_from(args)
    raise_open_file_limit()  # before moto's process and the workers start: they inherit it
    try:
        run(serve(settings))
    except OSError as exc:
        print(
            f"cannot start: {exc} (is another gateway on port {settings.port}? try --port)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
