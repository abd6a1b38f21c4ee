"""``python -m client``: chat in the terminal through a reconnecting ``ChatClient``.

Each line typed is one chat message. Answers stream to stdout as their chunks arrive; typing,
reconnects and errors go to stderr, so ``echo "hi" | python -m client --local > answer.txt``
keeps only the answer. At the end of input it waits (``--answer-timeout``) for an answer to
every message sent, then exits.

Exit status: 0 done, 1 some message not accepted or answered, 2 bad arguments, 3 token refused,
4 server unreachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit
from uuid import uuid4

from client.answers import AnswerAssembler
from client.chat_client import ChatClient
from client.config import (
    DEFAULT_ACCEPT_TIMEOUT_SECONDS,
    DEFAULT_PING_INTERVAL_SECONDS,
    ClientConfig,
)
from client.errors import AuthenticationError, ChatClientError, ConnectError
from client.events import ConnectionEvent, ConnectionEventKind
from client.handshake import TokenProvider
from client.subscriptions import Subscription
from runtime.messages import ChatResponse, ErrorFrame, Frame, SystemEvent, SystemFrame
from runtime.messages import TypingIndicator as TypingFrame
from runtime.schema import SQS_ID_PATTERN

EXIT_OK = 0
EXIT_UNFINISHED = 1
EXIT_USAGE = 2
EXIT_AUTH_REJECTED = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130

TOKEN_ENVIRONMENT_VARIABLE = "RAG_WEBSOCKET_TOKEN"  # noqa: S105 (a name, not a secret)
LOCAL_URL = "ws://127.0.0.1:8080/dev"
LOCAL_USER = "alice"
LOCAL_TOKEN_PATH = "/_local/token"  # noqa: S105 (a URL path, not a secret)
LOCAL_TOKEN_TIMEOUT_SECONDS = 5.0
DEFAULT_ANSWER_TIMEOUT_SECONDS = 60.0

# Connection events worth a line on the terminal (CONNECTED gets its own greeting).
_SHOWN_EVENTS = frozenset(
    {
        ConnectionEventKind.DISCONNECTED,
        ConnectionEventKind.RECONNECTING,
        ConnectionEventKind.RECONNECT_FAILED,
        ConnectionEventKind.RECONNECTED,
    }
)


@dataclass(frozen=True)
class ChatOptions:
    url: str
    token_provider: TokenProvider
    conversation_id: str
    config: ClientConfig
    answer_timeout: float = DEFAULT_ANSWER_TIMEOUT_SECONDS


@dataclass
class _Progress:
    sent: int = 0
    answered: int = 0
    undelivered: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def bump(self) -> None:
        self.changed.set()


def local_token_url(url: str, user: str) -> str:
    """Local mode's dev-token endpoint on the gateway serving ``url`` (same host and port)."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, LOCAL_TOKEN_PATH, urlencode({"user": user}), ""))


def _fetch_local_token(endpoint: str) -> str:
    # Local mode listens on loopback only: never through a proxy of the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(endpoint, timeout=LOCAL_TOKEN_TIMEOUT_SECONDS) as response:
            token = json.load(response).get("token")
    except urllib.error.HTTPError as exc:
        raise ConnectionError(
            f"{endpoint} answered HTTP {exc.code}: --local needs local mode "
            "(python -m local) at --url"
        ) from None
    if not isinstance(token, str) or not token:
        raise ConnectionError(f"{endpoint} answered no token")
    return token


def local_token_provider(url: str, user: str) -> Callable[[], Awaitable[str]]:
    """Dev tokens for ``user`` from local mode's ``GET /_local/token`` (a fresh one per connect).

    The client speaks only the wire protocol and HTTP: it never imports local mode's code.
    """
    endpoint = local_token_url(url, user)

    async def provider() -> str:
        return await asyncio.to_thread(_fetch_local_token, endpoint)

    return provider


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m client",
        description="Chat over the rag-websocket API: each line typed is one chat message.",
    )
    parser.add_argument("--url", help=f"WebSocket URL (with --local: {LOCAL_URL})")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--token", help=f"the JWT to connect with (default: ${TOKEN_ENVIRONMENT_VARIABLE})"
    )
    source.add_argument(
        "--local", action="store_true", help="take a dev token from local mode (python -m local)"
    )
    parser.add_argument("--user", default=LOCAL_USER, help="with --local: the token's user")
    parser.add_argument(
        "--conversation", help="the conversationId (default: a new one per session)"
    )
    parser.add_argument(
        "--ping-interval", type=float, default=DEFAULT_PING_INTERVAL_SECONDS, help="seconds"
    )
    parser.add_argument(
        "--accept-timeout", type=float, default=DEFAULT_ACCEPT_TIMEOUT_SECONDS, help="seconds"
    )
    parser.add_argument(
        "--answer-timeout",
        type=float,
        default=DEFAULT_ANSWER_TIMEOUT_SECONDS,
        help="at the end of input, how long to wait for the answers still streaming (seconds)",
    )
    args = parser.parse_args(argv)
    if args.url is None:
        if not args.local:
            parser.error("--url is required (or --local for local mode)")
        args.url = LOCAL_URL
    if not args.local and not (args.token or os.environ.get(TOKEN_ENVIRONMENT_VARIABLE)):
        parser.error(f"give --token, set ${TOKEN_ENVIRONMENT_VARIABLE}, or use --local")
    return args


def options_from(args: argparse.Namespace) -> ChatOptions:
    token_provider: TokenProvider
    if args.local:
        token_provider = local_token_provider(args.url, args.user)
    else:
        token_provider = args.token or os.environ[TOKEN_ENVIRONMENT_VARIABLE]
    conversation_id = args.conversation or f"cli-{uuid4().hex[:12]}"
    if not re.fullmatch(SQS_ID_PATTERN, conversation_id):
        raise ValueError(
            f"--conversation {conversation_id!r} must be 1-128 printable ASCII characters"
        )
    return ChatOptions(
        url=args.url,
        token_provider=token_provider,
        conversation_id=conversation_id,
        config=ClientConfig(
            ping_interval=args.ping_interval,
            accept_timeout=args.accept_timeout,
            # Local mode is on loopback: never through a proxy of the environment.
            proxy=None if args.local else True,
        ),
        answer_timeout=args.answer_timeout,
    )


async def stdin_lines() -> AsyncIterator[str]:
    """Lines of stdin, read on a daemon thread so that Ctrl-C never waits for Enter."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:  # the loop closed first: the chat is over
            return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


class _Terminal:
    """Writes frames and connection events for people: answers to ``out``, the rest to ``err``."""

    def __init__(self, conversation_id: str, out: TextIO, err: TextIO) -> None:
        self._conversation_id = conversation_id
        self._out = out
        self._err = err
        self._assembler = AnswerAssembler()
        self._typing = False

    def note(self, text: str) -> None:
        self._err.write(f"[{text}]\n")
        self._err.flush()

    def on_event(self, event: ConnectionEvent) -> None:
        if event.kind in _SHOWN_EVENTS:
            self.note(event.describe())

    def show(self, frame: Frame, progress: _Progress) -> None:
        if getattr(frame, "conversation_id", self._conversation_id) != self._conversation_id:
            return
        if isinstance(frame, ChatResponse):
            outcome = self._assembler.add(frame)
            self._out.write(outcome.text)
            if outcome.answer is not None:
                self._out.write("\n")
                progress.answered += 1
                progress.bump()
            self._out.flush()
        elif isinstance(frame, TypingFrame):
            if frame.is_typing and not self._typing:
                self.note("assistant is typing…")
            self._typing = frame.is_typing
        elif isinstance(frame, ErrorFrame):
            retry = " (retrying)" if frame.retryable and frame.client_message_id else ""
            self.note(f"error {frame.code.value}: {frame.message}{retry}")
        elif isinstance(frame, SystemFrame) and frame.event is SystemEvent.NOTICE:
            self.note(f"notice: {frame.message or frame.data}")


async def _watch_delivery(
    client: ChatClient, message_id: str, terminal: _Terminal, progress: _Progress
) -> None:
    try:
        await client.wait_accepted(message_id)
    except ChatClientError as exc:
        progress.undelivered += 1
        progress.bump()
        terminal.note(f"not delivered: {exc}")


async def _send_lines(
    client: ChatClient,
    options: ChatOptions,
    lines: AsyncIterator[str],
    terminal: _Terminal,
    progress: _Progress,
) -> int:
    watchers: set[asyncio.Task[None]] = set()
    async for line in lines:
        content = line.strip()
        if not content:
            continue
        try:
            message_id = await client.send_chat(options.conversation_id, content)
        except ValueError as exc:  # over 128 KB: nothing was sent
            terminal.note(f"not sent: {exc}")
            continue
        progress.sent += 1
        watcher = asyncio.create_task(_watch_delivery(client, message_id, terminal, progress))
        watchers.add(watcher)
        watcher.add_done_callback(watchers.discard)
    try:
        async with asyncio.timeout(options.answer_timeout):
            while progress.answered + progress.undelivered < progress.sent:
                progress.changed.clear()
                await progress.changed.wait()
    except TimeoutError:
        missing = progress.sent - progress.answered - progress.undelivered
        terminal.note(f"gave up waiting for {missing} answer(s) after {options.answer_timeout:g} s")
        return EXIT_UNFINISHED
    return EXIT_UNFINISHED if progress.undelivered else EXIT_OK


async def _show_frames(
    frames: Subscription[Frame], terminal: _Terminal, progress: _Progress
) -> int:
    async for frame in frames:
        terminal.show(frame, progress)
    return EXIT_OK


async def chat(options: ChatOptions, lines: AsyncIterator[str], out: TextIO, err: TextIO) -> int:
    """The interactive chat; returns the exit status."""
    terminal = _Terminal(options.conversation_id, out, err)
    client = ChatClient(options.config, on_event=terminal.on_event)
    try:
        await client.connect(options.url, options.token_provider)
    except AuthenticationError as exc:
        terminal.note(f"error: {exc}")
        return EXIT_AUTH_REJECTED
    except ConnectError as exc:
        terminal.note(f"error: {exc}")
        return EXIT_UNREACHABLE
    progress = _Progress()
    async with client:
        terminal.note(
            f"connected to {options.url}, conversation {options.conversation_id}; "
            "type a message and press Enter, Ctrl-D to finish"
        )
        display = asyncio.create_task(_show_frames(client.frames(), terminal, progress))
        sending = asyncio.create_task(_send_lines(client, options, lines, terminal, progress))
        done, _ = await asyncio.wait({display, sending}, return_when=asyncio.FIRST_COMPLETED)
        for task in (display, sending):
            if task not in done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # The display ends first only when the client stopped (a refused token on reconnect).
        finished = display if display in done else sending
        try:
            return finished.result()
        except AuthenticationError as exc:
            terminal.note(f"error: {exc}")
            return EXIT_AUTH_REJECTED
        except ChatClientError as exc:
            terminal.note(f"error: {exc}")
            return EXIT_UNFINISHED


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(chat(options, stdin_lines(), sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
