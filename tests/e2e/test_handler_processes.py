"""``--handler-processes``: this project's handlers in spawned worker processes, end to end."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from websockets.sync.client import connect

from local.stack import LocalStack

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack_options() -> dict[str, Any]:
    return {"handler_processes": 2, "responder": None}


def test_chat_and_ping_are_served_by_worker_processes(stack: LocalStack) -> None:
    with connect(stack.connect_url("proc-user"), open_timeout=60) as ws:
        ws.send('{"action":"ping"}')
        assert json.loads(ws.recv(timeout=60))["event"] == "pong"
        ws.send(
            json.dumps(
                {
                    "action": "chat_message",
                    "conversationId": "c1",
                    "content": "hello",
                    "clientMessageId": "m1",
                }
            )
        )
        accepted = json.loads(ws.recv(timeout=60))
        assert (accepted["event"], accepted["data"]["clientMessageId"]) == ("accepted", "m1")
        ws.send('{"action":"nope"}')
        assert json.loads(ws.recv(timeout=60))["code"] == "UNKNOWN_ACTION"
    sqs = stack.aws.sqs()
    [queued] = sqs.receive_message(QueueUrl=stack.aws.queue_url, WaitTimeSeconds=0)["Messages"]
    assert json.loads(queued["Body"])["userId"] == "proc-user"


def test_the_handlers_ran_outside_the_gateway_process(stack: LocalStack) -> None:
    workers = stack.gateway._invoker.processes  # type: ignore[union-attr]
    assert workers is not None
    pids = set(workers.pids)
    assert len(pids) == 2
    assert os.getpid() not in pids


def test_a_failing_authorizer_in_a_worker_process_is_still_a_401(stack: LocalStack) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        connect(f"{stack.ws_url}?token=not-a-jwt", open_timeout=60)
    assert refused.value.response.status_code == 401
