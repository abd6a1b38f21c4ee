"""The browser client from Node against the real local gateway (``web/test-live/``).

pytest starts the local stack and runs ``node --test`` against it; meanwhile it deletes the
connection of one user through the management API, as the RAG stack or an operator would, so that
the Node test sees a real drop and a real reconnect.
"""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any

from local.stack import LocalStack
from runtime.connections import ConnectionStore
from tests.web.support import WEB, node, require_web_build

DROP_USER = "node-dropped"
NODE_TIMEOUT_SECONDS = 120


def websocket_flag() -> list[str]:
    """Node 22 has a global WebSocket; Node 20 needs the flag."""
    version = subprocess.run(  # noqa: S603 - node's version, fixed arguments
        [node(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    major = int(version.lstrip("v").split(".")[0])
    return ["--experimental-websocket"] if major < 22 else []


def drop_first_connection(store: ConnectionStore, management: Any, stop: threading.Event) -> None:
    """Delete the first connection ``DROP_USER`` opens, once.

    The row is written by ``$connect``, before the handshake completes, and until then the
    management API answers 410 ``GoneException`` for the connection, as API Gateway does
    ("A message was posted to the WebSocket API before the connection was established",
    https://repost.aws/knowledge-center/410-gone-api-gateway): so a 410 means "try again"."""
    while not stop.wait(0.05):
        connections = store.list_for_user(DROP_USER)
        if connections:
            try:
                management.delete_connection(ConnectionId=connections[0].connection_id)
            except management.exceptions.GoneException:
                continue
            return


def test_the_client_from_node_against_the_local_gateway(
    stack: LocalStack, store: ConnectionStore, management: Any
) -> None:
    require_web_build()
    stop = threading.Event()
    dropper = threading.Thread(target=drop_first_connection, args=(store, management, stop))
    dropper.start()
    try:
        result = subprocess.run(  # noqa: S603 - node with this project's tests, fixed arguments
            [node(), *websocket_flag(), "--test", "test-live/"],
            cwd=WEB,
            env={
                **os.environ,
                "RAG_WEBSOCKET_HTTP_URL": stack.gateway.http_url,
                "RAG_WEBSOCKET_STAGE": stack.gateway.settings.stage,
                "RAG_WEBSOCKET_DROP_USER": DROP_USER,
                # The gateway is on loopback: never through a proxy of the environment.
                "NO_PROXY": "127.0.0.1,localhost",
            },
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        stop.set()
        dropper.join()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
