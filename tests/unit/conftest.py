"""Fixtures the unit tests share beyond tests/conftest.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend


@pytest.fixture
def serializable_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB isolates a TransactWriteItems serializably from other writes to its items
    (Developer Guide, "Isolation levels for DynamoDB transactions":
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html);
    moto checks the conditions and then writes without a lock, so it gets one here."""
    lock = threading.Lock()
    original = DynamoDBBackend.transact_write_items

    def serialized(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            original(self, transact_items)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", serialized)
