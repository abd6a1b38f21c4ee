"""The full stack as ``make dev`` starts it: moto in its own process (its CPU never shares the
gateway's interpreter lock), this project's handlers with the stack's Lambda timeout and memory,
over real sockets."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml
from websockets.sync.client import connect

from local.stack import LocalStack
from tests.support import PROJECT_ROOT, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack_options() -> dict[str, Any]:
    return {"responder": None}


def test_moto_serves_the_handlers_from_a_process_of_its_own(stack: LocalStack) -> None:
    with connect(stack.connect_url("defaults-user"), open_timeout=60) as ws:
        ws.send('{"action":"ping"}')
        assert json.loads(ws.recv(timeout=60))["event"] == "pong"
    moto = stack._embedded_aws._process  # type: ignore[union-attr]
    assert moto is not None
    assert moto.poll() is None
    assert moto.pid != os.getpid()
    dynamodb = stack.aws.dynamodb()
    # The connection's row, written and deleted through moto's process by the handlers.
    wait_until(lambda: dynamodb.scan(TableName=stack.aws.table_name)["Items"] == [], 30)


def test_the_handlers_get_the_stacks_lambda_timeout_and_memory(stack: LocalStack) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())["config"]
    settings = stack.gateway.settings
    assert settings.function_timeout_seconds == config["lambdaTimeoutSeconds"]["default"]
    assert settings.function_memory_mb == config["lambdaMemoryMb"]["default"]
    assert settings.integration_timeout_seconds == 29
