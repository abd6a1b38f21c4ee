"""examples/rag_consumer: the RAG side reads every output and wires the contract up."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from runtime import schema
from tests.infra.contract import CONTRACT
from tests.infra.mocks import REGION, ProgramRun, run_program
from tests.support import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "examples" / "rag_consumer"
WEBSOCKET_STACK = "acme/rag-websocket/dev"


def _run(outputs: dict[str, Any], *, expect_error: bool = False, **config: str) -> ProgramRun:
    return run_program(
        EXAMPLE / "__main__.py",
        {
            "rag-consumer:websocketStack": WEBSOCKET_STACK,
            "aws:region": REGION,
            **{f"rag-consumer:{key}": value for key, value in config.items()},
        },
        project="rag-consumer",
        stack="dev",
        stack_outputs={WEBSOCKET_STACK: outputs},
        expect_error=expect_error,
    )


def test_example_reads_every_output_of_the_contract(dev_run: ProgramRun) -> None:
    consumer = _run(dev_run.outputs)
    reference = consumer.one("pulumi:pulumi:StackReference")
    assert reference.inputs["name"] == WEBSOCKET_STACK
    read = consumer.outputs["channel"]
    assert read == {name: dev_run.outputs[name] for name in read}
    assert set(CONTRACT) | {"chatVisibilityTimeoutSeconds"} == set(read)
    assert consumer.outputs["websocketUrl"] == dev_run.outputs["websocketUrl"]


def test_example_attaches_both_policies_and_the_runtime_layer(dev_run: ProgramRun) -> None:
    consumer = _run(dev_run.outputs)
    role = consumer.one("aws:iam/role:Role", "answer-role").state["name"]
    attached = {
        a.inputs["policyArn"]
        for a in consumer.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role
    }
    assert attached == {
        dev_run.outputs["senderPolicyArn"],
        dev_run.outputs["chatConsumerPolicyArn"],
    }
    function = consumer.one("aws:lambda/function:Function", "answer").inputs
    assert function["layers"] == [dev_run.outputs["runtimeLayerArn"]]
    assert function["environment"]["variables"] == {
        schema.ENV_CONNECTIONS_TABLE: dev_run.outputs["connectionsTableName"],
        schema.ENV_MANAGEMENT_ENDPOINT: dev_run.outputs["managementEndpoint"],
    }
    assert {"answer-sender", "answer-chat-consumer"} <= consumer.dependencies["answer"]


def test_example_consumes_the_chat_queue(dev_run: ProgramRun) -> None:
    consumer = _run(dev_run.outputs)
    mapping = consumer.one("aws:lambda/eventSourceMapping:EventSourceMapping").inputs
    function = consumer.one("aws:lambda/function:Function", "answer").state
    assert mapping["eventSourceArn"] == dev_run.outputs["chatQueueArn"]
    assert mapping["functionName"] == function["arn"]
    assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
    alarm = consumer.one("aws:cloudwatch/metricAlarm:MetricAlarm").inputs
    assert alarm["alarmActions"] == [dev_run.outputs["alarmTopicArn"]]
    logs = json.loads(consumer.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    assert [s["Resource"] for s in logs["Statement"]] == [
        consumer.one("aws:cloudwatch/logGroup:LogGroup").state["arn"] + ":*"
    ]


def test_a_missing_output_fails_the_example(dev_run: ProgramRun) -> None:
    outputs = {k: v for k, v in dev_run.outputs.items() if k != "chatConsumerPolicyArn"}
    consumer = _run(outputs, expect_error=True)
    assert isinstance(consumer.error, KeyError)
    assert "chatConsumerPolicyArn" in str(consumer.error)


def test_example_contract_is_design_section_6(dev_run: ProgramRun) -> None:
    tree = ast.parse((EXAMPLE / "__main__.py").read_text())
    [contract] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "CONTRACT" for t in node.targets)
    ]
    assert isinstance(contract, ast.Tuple)
    names = {element.value for element in contract.elts if isinstance(element, ast.Constant)}
    assert names == set(CONTRACT) | {"chatVisibilityTimeoutSeconds"}
    assert names <= set(dev_run.outputs)


def test_example_handler_is_a_sqs_batch_handler() -> None:
    source = Path(EXAMPLE / "app" / "answer.py").read_text()
    tree = ast.parse(source)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "handler" for n in tree.body)
    assert "batchItemFailures" in source
    assert "from runtime.sender import MessageSender" in source


def test_consumer_is_sized_to_the_queues_visibility_timeout(dev_run: ProgramRun) -> None:
    """Lambda refuses an event source whose function timeout exceeds the queue's visibility
    timeout; AWS recommends a visibility timeout of at least six times the function timeout
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html). A FIFO event
    source takes no batching window ("Batching window is not supported for FIFO queues",
    https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html)."""
    visibility = dev_run.outputs["chatVisibilityTimeoutSeconds"]
    consumer = _run(dev_run.outputs)
    function = consumer.one("aws:lambda/function:Function", "answer").inputs
    mapping = consumer.one("aws:lambda/eventSourceMapping:EventSourceMapping").inputs
    assert function["timeout"] == visibility // 6 == 300  # a 5-minute consumer by default
    assert mapping["batchSize"] == 300 // 120  # answers of 2 minutes each
    assert "maximumBatchingWindowInSeconds" not in mapping


def test_a_longer_visibility_timeout_makes_a_longer_consumer(dev_run: ProgramRun) -> None:
    outputs = {**dev_run.outputs, "chatVisibilityTimeoutSeconds": 7200}
    consumer = _run(outputs, answerSecondsPerMessage="600")
    assert consumer.one("aws:lambda/function:Function", "answer").inputs["timeout"] == 900
    mapping = consumer.one("aws:lambda/eventSourceMapping:EventSourceMapping").inputs
    assert mapping["batchSize"] == 1


def test_a_queue_too_short_for_one_answer_fails_with_the_fix(dev_run: ProgramRun) -> None:
    outputs = {**dev_run.outputs, "chatVisibilityTimeoutSeconds": 60}
    consumer = _run(outputs, expect_error=True)
    assert consumer.error is not None  # Pulumi wraps the program's error in its own ValueError
    message = str(consumer.error)
    assert "visibility timeout (60 s) fits a consumer of 10 s" in message
    assert (
        "raise chatVisibilityTimeoutSeconds on the rag-websocket stack to at least 720" in message
    )
