"""``python -m local --host`` on an interface other than loopback: the handlers still fetch the
dev JWKS over loopback, the only place the authorizer takes ``http://`` (``runtime.config``), so
every connect is authorized. Binding an address sends nothing; the test traffic goes to
127.0.0.1 only.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import socket
import struct
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect

from local.stack import LocalStack, background_stack
from runtime import schema

_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def _non_loopback_ipv4() -> str | None:
    """An IPv4 address of one of this machine's interfaces, other than loopback."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                answer = fcntl.ioctl(
                    probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode())
                )
            except OSError:
                continue
        address = socket.inet_ntoa(answer[20:24])
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None


def _handlers_jwks_url() -> str:
    return os.environ[schema.ENV_AUTH_JWKS_URL]


def _ping_through_loopback(stack: LocalStack, port: int) -> dict[str, object]:
    url = (
        f"ws://127.0.0.1:{port}/{stack.settings.stage}"
        f"?{schema.TOKEN_QUERY_PARAMETER}={stack.token_for('alice')}"
    )
    with connect(url, open_timeout=30) as ws:
        ws.send(json.dumps({"action": "ping"}))
        frame: dict[str, object] = json.loads(ws.recv(timeout=15))
    return frame


def test_on_every_interface_the_handlers_fetch_the_jwks_from_127_0_0_1(tmp_path: Path) -> None:
    with background_stack(host="0.0.0.0", port=0, state_dir=tmp_path, responder=None) as stack:  # noqa: S104
        jwks_url = _handlers_jwks_url()
        assert jwks_url == f"http://127.0.0.1:{stack.gateway.port}/.well-known/jwks.json"
        assert _ping_through_loopback(stack, stack.gateway.port)["event"] == "pong"


def test_on_a_lan_address_the_gateway_also_listens_on_loopback_for_the_handlers(
    tmp_path: Path,
) -> None:
    address = _non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no IPv4 address besides loopback")
    running = background_stack(host=address, port=0, state_dir=tmp_path, responder=None)
    with running as stack:
        assert urlsplit(stack.ws_url).hostname == address
        jwks = urlsplit(_handlers_jwks_url())
        assert jwks.hostname == "127.0.0.1"
        assert jwks.port is not None
        assert jwks.port != stack.gateway.port
        # The second listener serves the whole gateway: a connect there is authorized.
        assert _ping_through_loopback(stack, jwks.port)["event"] == "pong"
        # A restarted gateway listens on the same loopback port the handlers were given.
        running.call(stack.restart_gateway())
        assert _ping_through_loopback(stack, jwks.port)["event"] == "pong"
