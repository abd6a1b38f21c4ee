"""The runtime's shared boto3 clients (runtime/aws.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.session
import pytest

from local.gateway.models import DEFAULT_MAX_CONCURRENT_INVOCATIONS
from runtime import aws


@pytest.fixture(autouse=True)
def fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    aws.reset_clients()
    yield
    aws.reset_clients()


def test_dynamodb_and_sqs_pool_a_connection_per_concurrent_local_invocation() -> None:
    """Local mode runs handlers on the gateway's threads, all sharing these clients; with
    botocore's default pool of 10, every call past the 10th concurrent one opened a TCP
    connection to moto and closed it after one request."""
    for client in (aws.dynamodb(), aws.sqs()):
        assert client.meta.config.max_pool_connections >= DEFAULT_MAX_CONCURRENT_INVOCATIONS


@pytest.mark.parametrize("get_client", [aws.dynamodb, aws.sqs], ids=["dynamodb", "sqs"])
def test_concurrent_first_calls_build_one_client(
    monkeypatch: pytest.MonkeyPatch, get_client: Callable[[], object]
) -> None:
    """Local mode runs a burst of first invocations on its threads at once (a cold start on
    each of them); each used to build its own botocore client, tens of milliseconds of CPU
    apiece, where Lambda builds one per container. The build is slowed down here so that the
    threads are sure to overlap."""
    builds: list[str] = []
    real_create_client = botocore.session.Session.create_client

    def slow_create_client(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        builds.append(service_name)
        time.sleep(0.05)
        return real_create_client(self, service_name, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", slow_create_client)
    threads = 8
    start = threading.Barrier(threads)

    def first_call(_: int) -> object:
        start.wait()
        return get_client()

    with ThreadPoolExecutor(threads) as pool:
        clients = list(pool.map(first_call, range(threads)))

    assert len(builds) == 1
    assert all(client is clients[0] for client in clients)
    assert get_client() is clients[0]


def test_management_api_clients_are_built_once_per_endpoint() -> None:
    first = aws.management_api("http://127.0.0.1:1/dev")
    assert aws.management_api("http://127.0.0.1:1/dev") is first
    assert aws.management_api("http://127.0.0.1:2/dev") is not first
    aws.reset_clients()
    assert aws.management_api("http://127.0.0.1:1/dev") is not first
