"""Fixtures the unit tests share beyond tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.fidelity import serialize_dynamodb_writes
from runtime import aws

POSTING_REGION = "us-east-1"
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def serializable_transactions() -> None:
    """DynamoDB isolates a TransactWriteItems serializably from other writes to its items
    (Developer Guide, "Isolation levels for DynamoDB transactions":
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html);
    moto checks the conditions and then writes without a lock, so it gets local mode's patch
    (``local.fidelity``), the one place moto is made like AWS."""
    serialize_dynamodb_writes()


@pytest.fixture
def posting_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake static credentials in ``POSTING_REGION``, and nothing in the environment that
    changes how botocore (and so the lean posting path) connects: no profile, session token,
    CA bundle or proxy, in either case; the cached clients forgotten before and after."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": POSTING_REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        *PROXY_VARIABLES,
    ):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    aws.reset_clients()
    yield
    aws.reset_clients()
