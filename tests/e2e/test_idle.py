"""The idle timeout with this project's handlers: close 1001, $disconnect, row removed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from local.gateway import AccessRecord
from runtime import schema
from runtime.connections import Connection


@pytest.fixture(scope="module")
def stack_options() -> dict[str, Any]:
    # Long enough that listing the row after the handshake never races the close on a loaded
    # machine (a 1 s timeout once did, under a load average of 10).
    return {"idle_timeout_seconds": 3.0, "responder": None}


def test_idle_connection_closes_1001_and_its_row_is_removed(stack, store, access_log):
    with connect(stack.connect_url("idle-ivan")) as ws:
        [row] = store.list_for_user("idle-ivan")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == schema.CLOSE_GOING_AWAY
    deadline = time.monotonic() + 10
    while store.get(row.connection_id) is not None or len(_events(access_log, row)) < 2:
        assert time.monotonic() < deadline, "no $disconnect, or the row outlived it"
        time.sleep(0.05)
    assert _events(access_log, row) == [("CONNECT", 200), ("DISCONNECT", 200)]


def _events(access_log: list[AccessRecord], row: Connection) -> list[tuple[str, int]]:
    return [(r.eventType, r.status) for r in access_log if r.connectionId == row.connection_id]
