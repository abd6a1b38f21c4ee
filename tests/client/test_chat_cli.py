"""``python -m client`` as a user runs it: a real subprocess against the fake gateway."""

from __future__ import annotations

import asyncio
import os
import re
import sys

from client.cli import EXIT_AUTH_REJECTED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from tests.client.fake_gateway import FakeGateway, run
from tests.support import PROJECT_ROOT


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client",
        *args,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(*args: str, stdin: str = "") -> tuple[int, str, str]:
    process = await start_cli(*args)
    out, err = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def read_until(stream: asyncio.StreamReader, text: str) -> str:
    seen = ""
    while text not in seen:
        line = await stream.readline()
        assert line, f"the stream ended before {text!r}; got {seen!r}"
        seen += line.decode()
    return seen


def test_a_rejected_token_ends_at_once_with_a_clear_message_and_status() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            status, out, err = await run_cli("--url", gateway.url, "--token", "expired")
            assert status == EXIT_AUTH_REJECTED
            assert "the server rejected the token (HTTP 401" in err
            assert out == ""
            assert len(gateway.handshakes) == 1

    run(scenario())


def test_an_unreachable_server_ends_with_its_own_status() -> None:
    async def scenario() -> None:
        gateway = FakeGateway()
        await gateway.start()
        url = gateway.url
        await gateway.stop()
        status, _, err = await run_cli("--url", url, "--token", "good")
        assert status == EXIT_UNREACHABLE
        assert "could not connect" in err

    run(scenario())


def test_piped_lines_are_sent_and_their_streamed_answers_printed() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            gateway.auto_answer = True
            status, out, err = await run_cli(
                "--url",
                gateway.url,
                "--token",
                "good",
                "--conversation",
                "conv-1",
                stdin="first question\n\nsecond question\n",
            )
            assert status == EXIT_OK, err
            assert out == "echo: first question\necho: second question\n"
            assert "assistant is typing" in err
            assert "connected to" in err
            assert [m["content"] for m in gateway.queue] == ["first question", "second question"]
            assert {m["conversationId"] for m in gateway.queue} == {"conv-1"}

    run(scenario())


def test_the_chat_shows_a_reconnect_and_carries_on() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            gateway.auto_answer = True
            process = await start_cli("--url", gateway.url, "--token", "good")
            assert process.stdin is not None
            assert process.stdout is not None
            assert process.stderr is not None
            process.stdin.write(b"before\n")
            await process.stdin.drain()
            assert await process.stdout.readline() == b"echo: before\n"
            gateway.abort_all()
            shown = await read_until(process.stderr, "[reconnected after")
            assert "[connection lost (close code 1006)]" in shown
            assert "[reconnecting, attempt 1" in shown
            process.stdin.write(b"after\n")
            process.stdin.close()
            assert await process.stdout.readline() == b"echo: after\n"
            assert await process.wait() == EXIT_OK

    run(scenario())


def test_local_takes_a_dev_token_from_local_modes_token_endpoint() -> None:
    """``--local`` asks the gateway's ``GET /_local/token?user=`` (it never imports local/)."""

    async def scenario() -> None:
        async with FakeGateway() as gateway:
            status, _, err = await run_cli("--local", "--url", gateway.url, "--user", "bob")
            assert status == EXIT_OK, err
            assert gateway.tokens_seen == ["good-bob"]

    run(scenario())


def test_local_without_local_mode_says_so() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            url = gateway.url
        status, _, err = await run_cli("--local", "--url", url)
        assert status == EXIT_UNREACHABLE
        assert "_local/token" in err or "connect" in err

    run(scenario())


def test_the_client_package_never_imports_local_mode() -> None:
    for path in (PROJECT_ROOT / "client").glob("*.py"):
        assert not re.search(r"^\s*(from|import) local\b", path.read_text(), re.M), path


def test_missing_url_or_token_is_a_usage_error() -> None:
    async def scenario() -> None:
        status, _, err = await run_cli("--token", "good")
        assert status == EXIT_USAGE
        assert "--url is required" in err
        environment = {k: v for k, v in os.environ.items() if k != "RAG_WEBSOCKET_TOKEN"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "client",
            "--url",
            "ws://127.0.0.1:9/dev",
            cwd=PROJECT_ROOT,
            env=environment,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err_bytes = await process.communicate()
        assert process.returncode == EXIT_USAGE
        assert "give --token" in err_bytes.decode()

    run(scenario())


def test_a_token_refused_on_reconnect_ends_the_chat_at_once() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            gateway.auto_answer = True
            process = await start_cli("--url", gateway.url, "--token", "good")
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.write(b"hello\n")
            await process.stdin.drain()
            assert await process.stdout.readline() == b"echo: hello\n"
            gateway.reject_status = 403
            gateway.abort_all()
            assert await process.wait() == EXIT_AUTH_REJECTED  # stdin still open
            assert process.stderr is not None
            err = (await process.stderr.read()).decode()
            assert "the server rejected the token (HTTP 403" in err
            assert gateway.rejected == 1

    run(scenario())


def test_a_line_over_the_message_limit_is_refused_and_the_chat_goes_on() -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            gateway.auto_answer = True
            huge = "x" * (128 * 1024)
            status, out, err = await run_cli(
                "--url", gateway.url, "--token", "good", stdin=f"{huge}\nsmall\n"
            )
            assert status == EXIT_OK, err
            assert "not sent: the chat message is" in err
            assert out == "echo: small\n"

    run(scenario())
