"""boto3 clients, built once per container and reused by every invocation.

``AWS_ENDPOINT_URL`` (read by botocore itself) points them at local mode's embedded moto.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

# Short timeouts: a handler has 29 s in all, and a stuck call should fail, not hang. A pool as
# large as the management API's: where invocations share the client (local mode's 64 handler
# threads), botocore's default of 10 makes every call past the 10th open and close a connection.
_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=64,
)
# The management API: our own bounded retry handles 429 (MessageSender), so botocore's is off.
_MANAGEMENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "total_max_attempts": 1},
    max_pool_connections=64,
)


@cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def dynamodb() -> DynamoDBClient:
    return _session().client("dynamodb", config=_CONFIG)


@cache
def sqs() -> SQSClient:
    return _session().client("sqs", config=_CONFIG)


@cache
def management_api(endpoint_url: str) -> ApiGatewayManagementApiClient:
    return _session().client(
        "apigatewaymanagementapi", endpoint_url=endpoint_url, config=_MANAGEMENT_CONFIG
    )


def reset_clients() -> None:
    """Forget the cached clients (tests that switch between moto and stubs)."""
    for cached in (_session, dynamodb, sqs, management_api):
        cached.cache_clear()
