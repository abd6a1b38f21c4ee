"""Fixtures the unit tests share beyond tests/conftest.py."""

from __future__ import annotations

import pytest

from local.fidelity import serialize_dynamodb_writes


@pytest.fixture
def serializable_transactions() -> None:
    """DynamoDB isolates a TransactWriteItems serializably from other writes to its items
    (Developer Guide, "Isolation levels for DynamoDB transactions":
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html);
    moto checks the conditions and then writes without a lock, so it gets local mode's patch
    (``local.fidelity``), the one place moto is made like AWS."""
    serialize_dynamodb_writes()
