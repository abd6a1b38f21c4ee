"""The runtime's shared boto3 clients (runtime/aws.py)."""

from __future__ import annotations

from collections.abc import Iterator

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
