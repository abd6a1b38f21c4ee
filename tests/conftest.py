"""Shared test set-up: fake AWS credentials and the handlers' environment, before any import;
moto in-process (``aws``) or served (``served_aws``); local mode on a free port (``stack``).

The handlers read their configuration at import time (a cold start), so the environment is set
here, at module level, before a test module imports them. Nothing here can reach real AWS.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.aws import AwsResources, EmbeddedAws, create_stack_resources
from local.gateway import AccessRecord
from local.stack import LocalStack, background_stack
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore
from tests.support import QUEUE_NAME, TABLE_NAME, TEST_ENV, connect_by_handler

for _name, _value in TEST_ENV.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


@dataclass(frozen=True)
class MockedAws:
    """What the `aws` fixture created in moto's in-process AWS (`mock_aws`); moto served on a
    port is the `served_aws` fixture's `local.aws.AwsResources`."""

    table_name: str
    queue_url: str
    dead_letter_queue_url: str


@pytest.fixture
def aws() -> Iterator[MockedAws]:
    """moto's in-process AWS with the connections table and the chat FIFO queue + DLQ."""
    import boto3
    from moto import mock_aws

    from runtime import aws as runtime_aws

    runtime_aws.reset_clients()
    with mock_aws():
        queues = create_stack_resources(
            boto3.client("dynamodb"),
            boto3.client("sqs"),
            TABLE_NAME,
            QUEUE_NAME,
        )
        assert queues.queue_url == TEST_ENV["CHAT_QUEUE_URL"]
        yield MockedAws(TABLE_NAME, queues.queue_url, queues.dead_letter_queue_url)
    runtime_aws.reset_clients()


@pytest.fixture(scope="module")
def served_aws() -> Iterator[AwsResources]:
    """moto served on a loopback port in a process of its own (``local.aws.EmbeddedAws``) with
    the table and the queue the handlers were configured with (``TEST_ENV``), for one module.

    For what ``mock_aws`` cannot do: a test hook that answers a request in its place (moto's
    in-process mock still executes it), or a consumer polling the queue from another thread."""
    with EmbeddedAws(table_name=TABLE_NAME, queue_name=QUEUE_NAME) as resources:
        yield resources


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test (it holds its own stream)."""
    from runtime.observability import logger

    buffer = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


@pytest.fixture
def connected(aws: MockedAws) -> MockedAws:
    """``aws`` with ``CONNECTION_ID`` connected by the ``$connect`` handler."""
    connect_by_handler()
    return aws


# --- local mode, once per test module -------------------------------------------------------


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dev signing key for the module's stacks (creating an RSA key takes a moment)."""
    return tmp_path_factory.mktemp("local-state")


@pytest.fixture(scope="module")
def access_log() -> list[AccessRecord]:
    """Every access-log record of the module's ``stack``."""
    return []


@pytest.fixture(scope="module")
def stack_options() -> dict[str, Any]:
    """``LocalStackSettings`` a module sets otherwise (no responder, a tiny idle timeout...)."""
    return {}


@pytest.fixture(scope="module")
def stack_environment() -> dict[str, str]:
    """Variables the handlers read when ``stack`` loads them; a module overrides it."""
    return {}


@pytest.fixture(scope="module")
def stack(
    state_dir: Path,
    access_log: list[AccessRecord],
    stack_options: dict[str, Any],
    stack_environment: dict[str, str],
) -> Iterator[LocalStack]:
    """The whole local stack (moto, gateway, this project's handlers, demo responder) on a free
    loopback port, for one module; the handlers' environment is restored afterwards."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in stack_environment.items():
            env.setenv(name, value)
        with background_stack(
            port=0, state_dir=state_dir, access_log=access_log.append, **stack_options
        ) as running:
            yield running


@pytest.fixture(scope="module")
def store(stack: LocalStack) -> ConnectionStore:
    """The stack's connections table, read the way the runtime reads it."""
    return ConnectionStore(StoreConfig(stack.aws.table_name), client=stack.aws.dynamodb())


@pytest.fixture(scope="module")
def management(stack: LocalStack) -> Any:
    """A real boto3 management API client of the stack's gateway."""
    return stack.aws.management_api(stack.management_endpoint)
