"""What keeps each handler's cold start short, pinned as imports in a fresh interpreter.

``benchmarks/cold_start.py`` measures the time; these tests pin its causes, so that a change
that brings one back fails here and not only, later, in a benchmark figure. Each case runs a
new ``python`` (this process has imported everything already) with the tests' environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.support import PROJECT_ROOT

HANDLERS = ("authorizer", "connect", "disconnect", "message")
# Modules a handler module must not import: boto3 imports s3transfer and is no faster at making
# a botocore client; Powertools' data_classes package imports every event class it has.
NEVER_AT_IMPORT = ("boto3", "s3transfer", "aws_lambda_powertools.utilities.data_classes")

IMPORT_SCRIPT = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


# The message handler's first event, a chat message, served against moto's in-process AWS.
FIRST_MESSAGE_SCRIPT = """
import json, sys
from runtime.handlers import message
imported = set(sys.modules)
import boto3
from moto import mock_aws
from runtime import schema
from tests.support import TABLE_NAME, QUEUE_NAME, chat_event, connect_event, lambda_context
with mock_aws():
    boto3.client("dynamodb").create_table(**schema.table_definition(TABLE_NAME))
    boto3.client("sqs").create_queue(
        QueueName=QUEUE_NAME, Attributes=schema.fifo_queue_attributes()
    )
    from runtime.handlers import connect
    assert connect.handler(connect_event(), lambda_context("connect"))["statusCode"] == 200
    before = set(sys.modules)
    body = {"action": "chat_message", "conversationId": "c", "content": "What is RAG?"}
    answer = message.handler(chat_event(body), lambda_context("message"))
    print(json.dumps({
        "frame": json.loads(answer["body"]),
        "at_import": sorted(imported),
        "by_first_message": sorted(set(sys.modules) - before),
    }))
"""


def _run(script: str, *args: str) -> Any:
    completed = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.splitlines()[-1])


def _imported_by(handler: str) -> set[str]:
    return set(_run(IMPORT_SCRIPT, f"runtime.handlers.{handler}"))


@pytest.mark.parametrize("handler", HANDLERS)
def test_no_handler_imports_boto3_or_the_powertools_event_classes(handler: str) -> None:
    """The authorizer too: it builds the policy Powertools'
    ``APIGatewayAuthorizerResponseWebSocket`` builds (tests/unit/test_authorizer_handler.py
    compares them) without importing that package, about a tenth of the baseline's cold start."""
    modules = _imported_by(handler)
    assert not set(NEVER_AT_IMPORT) & modules, (
        f"{handler} imports {sorted(set(NEVER_AT_IMPORT) & modules)}"
    )


def test_the_authorizer_makes_no_aws_client() -> None:
    """It calls no AWS API. (Powertools imports the ``botocore`` package itself, a few
    hundred microseconds, to name itself in the user agent; the SDK's machinery stays out.)"""
    modules = _imported_by("authorizer")
    assert not {"botocore.session", "botocore.client"} & modules


def test_the_first_chat_message_is_answered_without_pydantic() -> None:
    """pydantic's import is about a third of the baseline's cold start; a good frame needs
    none of its models (``runtime.frames``), an error frame imports them."""
    result = _run(FIRST_MESSAGE_SCRIPT)
    assert result["frame"]["event"] == "accepted", result["frame"]
    for when in ("at_import", "by_first_message"):
        assert not {"pydantic", "runtime.messages"} & set(result[when]), when
