"""The lean posting path honours the TLS trust and proxy settings a botocore client honours.

botocore verifies with ``ca_bundle`` (``AWS_CA_BUNDLE``), else ``REQUESTS_CA_BUNDLE``
(``Session.create_client`` and ``EndpointCreator._get_verify_value``), and sends through the
proxy ``get_environ_proxies`` finds for the endpoint (``HTTPS_PROXY``, bypassed by
``NO_PROXY``; https://docs.aws.amazon.com/sdkref/latest/guide/feature-gen-config.html and
https://boto3.amazonaws.com/v1/documentation/api/latest/guide/configuration.html#using-environment-variables).
The management API is the loopback fake, served over HTTPS with a throwaway CA (trustme), and
the proxy a loopback ``CONNECT`` proxy that records its tunnels.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import trustme

from runtime import aws
from runtime.config import ConfigError, StoreConfig
from runtime.connections import ConnectionStore
from runtime.posting import Boto3Transport, SendStatus, SignedTransport, lean_transport
from runtime.sender import MessageSender
from tests.unit.conftest import POSTING_REGION
from tests.unit.fake_management_api import FakeManagementApi, serve

REGION = POSTING_REGION
pytestmark = pytest.mark.usefixtures("posting_env")
FRAME = b'{"type":"system","event":"notice"}'


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def api(ca: trustme.CA) -> Iterator[FakeManagementApi]:
    fake = FakeManagementApi(lambda: boto3.session.Session().get_credentials(), REGION)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with serve(fake, tls):
        yield fake
    assert fake.bad_signatures == 0


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTP ``CONNECT`` proxy on loopback: records each tunnel's target, relays bytes."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TunnelHandler)
        self.tunnels: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _TunnelHandler(socketserver.StreamRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        method, target, _ = self.rfile.readline().decode("latin-1").split(" ", 2)
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        host, port = target.rsplit(":", 1)
        if method != "CONNECT" or host != "127.0.0.1":  # never anywhere but loopback
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.tunnels.append(target)
        with socket.create_connection((host, int(port)), timeout=5) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            back = threading.Thread(target=_relay, args=(upstream, self.connection), daemon=True)
            back.start()
            _relay(self.connection, upstream)
            back.join(timeout=5)


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy()
    thread = threading.Thread(target=server.serve_forever, name="connect-proxy")
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def proxied(ca_file: str, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch) -> ConnectProxy:
    """The endpoint's CA trusted and ``HTTPS_PROXY`` pointing at ``proxy``."""
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_file)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    return proxy


@pytest.mark.parametrize("variable", ["AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"])
def test_the_lean_path_verifies_with_the_ca_bundle_botocore_uses(
    api: FakeManagementApi, ca_file: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, ca_file)
    transport = lean_transport(api.endpoint)
    assert isinstance(transport, SignedTransport)
    try:
        assert transport.post("c1", FRAME).status is SendStatus.SENT
    finally:
        transport.close()
    # The boto3 client, configured by botocore from the same variable, agrees.
    assert Boto3Transport(aws.management_api(api.endpoint)).post("c2", FRAME).status is (
        SendStatus.SENT
    )
    assert [target for target, _ in api.delivered] == ["c1", "c2"]


def test_without_the_bundle_an_unknown_ca_is_refused(api: FakeManagementApi) -> None:
    transport = lean_transport(api.endpoint)
    try:
        answer = transport.post("c1", FRAME)
    finally:
        transport.close()
    assert answer.status is SendStatus.FAILED
    assert answer.code == "SSLCertVerificationError"
    assert api.delivered == []


def test_a_blank_ca_bundle_is_a_configuration_error(
    api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", " ")
    with pytest.raises(ConfigError, match="CA bundle"):
        lean_transport(api.endpoint)


def test_an_https_proxy_carries_the_posts_as_it_does_for_botocore(
    api: FakeManagementApi, proxied: ConnectProxy
) -> None:
    transport = lean_transport(api.endpoint)
    # A proxied endpoint is posted to through the boto3 client, which tunnels as botocore does.
    assert isinstance(transport, Boto3Transport)
    assert transport.post("c1", FRAME).status is SendStatus.SENT
    port = api.endpoint.split(":")[2].split("/")[0]
    assert proxied.tunnels == [f"127.0.0.1:{port}"]
    assert [target for target, _ in api.delivered] == ["c1"]


def test_a_sender_says_which_path_it_posts_on_when_a_proxy_applies(
    api: FakeManagementApi, proxied: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MessageSender(ConnectionStore(StoreConfig(table_name="unused")), api.endpoint) as sender:
        assert sender.posting == "boto3"
        assert sender.client is not None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with MessageSender(ConnectionStore(StoreConfig(table_name="unused")), api.endpoint) as sender:
        assert sender.posting == "lean"
        assert sender.client is None


def test_no_proxy_keeps_the_lean_path_direct(
    api: FakeManagementApi, proxied: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    transport = lean_transport(api.endpoint)
    assert isinstance(transport, SignedTransport)
    try:
        assert transport.post("c1", FRAME).status is SendStatus.SENT
    finally:
        transport.close()
    assert proxied.tunnels == []
    assert [target for target, _ in api.delivered] == ["c1"]
