"""No secret in the logs: a whole local session, every line of output read back.

One user connects with a token, asks a question, receives the demo responder's streamed answer
and disconnects, through the project's ``ChatClient`` and the local stack. Everything written
meanwhile is captured — the handlers' Powertools logs, every other logger at INFO (gateway,
responder, invoker, client, aiohttp, botocore), the gateway's access log, and the process's
stdout and stderr (where the EMF metrics go) — and searched for the token (whole, and each of
its three parts) and for the question and the answer. None may appear at INFO.

A control run at DEBUG shows the capture would see a leak: there the handlers' content line
does show the question (content is logged at DEBUG only, DESIGN §observability).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client import ChatClient, ClientConfig
from local.gateway import StreamAccessLog
from local.stack import LocalStack
from runtime.observability import logger as handler_logger
from tests.reliability.figures import record

QUESTION = "what does the zebra-7f3a-secret plan cost"
SECRET_MARKER = "zebra-7f3a-secret"
SESSION_DEADLINE_SECONDS = 120.0


@pytest.fixture
def every_logger() -> Iterator[io.StringIO]:
    """Every stdlib logger's records at INFO and above (the root logger's view)."""
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setLevel(logging.INFO)
    capture.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)


async def _session(state_dir: Path, access: io.StringIO, user: str) -> dict[str, Any]:
    async with LocalStack(
        port=0,
        state_dir=state_dir,
        access_log=StreamAccessLog("text", stream=access),
        handler_processes=0,  # the handlers log in this process, where the capture reads
    ) as stack:
        token = stack.token_for(user)
        async with ChatClient(ClientConfig(proxy=None)) as client:
            await client.connect(stack.ws_url, token)
            answer = await asyncio.wait_for(client.ask("conversation-logs", QUESTION), 60)
        while "DISCONNECT" not in access.getvalue():  # noqa: ASYNC110 - the access log is a buffer
            await asyncio.sleep(0.05)
        return {"token": token, "answer": answer.content}


def _secrets(session: dict[str, Any]) -> dict[str, str]:
    token: str = session["token"]
    header, payload, signature = token.split(".")
    return {
        "token": token,
        "token header": header,
        "token payload": payload,
        "token signature": signature,
        "question": QUESTION,
        "secret marker": SECRET_MARKER,
        "answer": session["answer"],
    }


def test_a_full_session_logs_no_token_and_no_message_content_at_info(
    tmp_path: Path,
    logs: io.StringIO,
    every_logger: io.StringIO,
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert handler_logger.log_level == logging.INFO
    access = io.StringIO()
    session = asyncio.run(
        asyncio.wait_for(_session(tmp_path, access, "log-user"), SESSION_DEADLINE_SECONDS)
    )
    out, err = capfd.readouterr()
    outputs = {
        "handlers (Powertools)": logs.getvalue(),
        "other loggers at INFO": every_logger.getvalue(),
        "access log": access.getvalue(),
        "stdout": out,
        "stderr": err,
    }
    assert SECRET_MARKER in session["answer"]  # the answer quotes the question: both are secret
    # The capture saw the session: the handlers' INFO lines and every access record.
    handlers = outputs["handlers (Powertools)"]
    for line in ("authorization granted", "connected", "chat message queued", "disconnected"):
        assert line in handlers
    for event in ("CONNECT", "MESSAGE", "DISCONNECT"):
        assert f" {event} " in outputs["access log"]
    leaks = [
        (what, where)
        for what, secret in _secrets(session).items()
        for where, text in outputs.items()
        if secret in text
    ]
    assert leaks == []
    record(
        "logs: one full local session at INFO",
        lines_read={where: len(text.splitlines()) for where, text in outputs.items()},
        secrets_searched=len(_secrets(session)),
        secrets_found=len(leaks),
    )


def test_the_capture_would_see_content_logged_at_debug(
    tmp_path: Path, logs: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    """The control: at DEBUG the handler's content line carries the question — so the search
    above would have found it — and still no token."""
    previous = handler_logger.log_level
    handler_logger.setLevel(logging.DEBUG)
    try:
        access = io.StringIO()
        session = asyncio.run(
            asyncio.wait_for(_session(tmp_path, access, "debug-user"), SESSION_DEADLINE_SECONDS)
        )
    finally:
        handler_logger.setLevel(previous)
    capfd.readouterr()
    debug_output = logs.getvalue()
    assert QUESTION in debug_output
    assert session["token"] not in debug_output
    assert session["token"].rsplit(".", 1)[-1] not in debug_output
