"""The management API on the gateway's port, through a real boto3 client: POST, GET, DELETE,
typed 410 GoneException (unknown, closed, or still in $connect) and 413 over 128 KB."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from runtime import schema
from tests.local.gateway_support import Recorder

# Connection ids of real API Gateway captures (Powertools' tests/events, aws-lambda-go testdata).
AWS_SHAPED_IDS = ("BFaT_fALIAMCKug=", "JC1dgf9yoAMCK-g=", "R1kmxc2VNjMCFIA=")


@pytest.fixture
def routes(recorder: Recorder) -> dict[str, Any]:
    return {"$connect": recorder.handler(), "$disconnect": recorder.handler()}


def _connection_id(recorder: Recorder) -> str:
    connection_id: str = recorder.wait_for("CONNECT")[-1]["requestContext"]["connectionId"]
    return connection_id


def test_post_delivers_a_text_frame(start_gateway, routes, recorder, management_client):
    gateway = start_gateway(routes)
    client = management_client(gateway)
    with connect(gateway.ws_url) as ws:
        frame = json.dumps({"type": "system", "event": "notice", "message": "héllo"})
        client.post_to_connection(ConnectionId=_connection_id(recorder), Data=frame.encode())
        assert ws.recv(timeout=5) == frame


def test_posts_keep_a_connection_from_idling(start_gateway, routes, recorder, management_client):
    """API Gateway's idle timer counts messages either way: a ``wscat`` session that only
    received a server's keep-alive every 9.5 minutes stayed open until the 2-hour limit
    (https://hotsock.io/docs/connections/keep-alive). Here a client that never sends outlives
    twice the idle timeout on posts alone, and is closed 1001 once they stop."""
    gateway = start_gateway(routes, idle_timeout_seconds=0.6)
    client = management_client(gateway)
    with connect(gateway.ws_url) as ws:
        connection_id = _connection_id(recorder)
        for index in range(6):  # 1.2 s in all: twice the idle timeout
            client.post_to_connection(ConnectionId=connection_id, Data=str(index).encode())
            assert ws.recv(timeout=5) == str(index)
            threading.Event().wait(0.2)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == schema.CLOSE_GOING_AWAY


def test_ids_like_aws_with_dash_underscore_and_equals_are_url_decoded(
    start_gateway, routes, recorder, management_client
):
    ids = itertools.cycle(AWS_SHAPED_IDS)
    gateway = start_gateway(routes, connection_id_factory=lambda: next(ids))
    client = management_client(gateway)
    for expected in AWS_SHAPED_IDS:
        with connect(gateway.ws_url) as ws:
            connection_id = _connection_id(recorder)
            assert connection_id == expected
            client.post_to_connection(ConnectionId=connection_id, Data=b"x")
            assert ws.recv(timeout=5) == "x"
            assert client.get_connection(ConnectionId=connection_id)["Identity"]
        recorder.events.clear()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/dev/%40connections/{encoded}", id="as-the-aws-docs-write-it"),
        pytest.param("/dev/@connections/{encoded}", id="encoded-id"),
        pytest.param("/dev/@connections/{raw}", id="unencoded"),
    ],
)
def test_an_encoded_path_delivers_like_the_unencoded_form(start_gateway, routes, recorder, path):
    """The AWS docs call the management API with awscurl/curl as
    ``POST https://{api-id}.execute-api.{region}.amazonaws.com/{stage}/%40connections/{id}``
    (apigateway-how-to-call-websocket-api-connections), and clients URL-encode the id's ``=``;
    API Gateway decodes both. A raw HTTP client, since boto3 always sends ``@`` unencoded."""
    gateway = start_gateway(routes, connection_id_factory=lambda: "BFaT_fALIAMCKug=")
    address = urlsplit(gateway.http_url)
    with connect(gateway.ws_url) as ws:
        connection_id = _connection_id(recorder)
        target = path.format(encoded=connection_id.replace("=", "%3D"), raw=connection_id)
        client = http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)
        try:
            client.request("POST", target, body=b"hello")
            response = client.getresponse()
            assert (response.status, response.read()) == (200, b"")
        finally:
            client.close()
        assert ws.recv(timeout=5) == "hello"


def test_get_returns_times_and_identity(start_gateway, routes, recorder, management_client):
    gateway = start_gateway({**routes, "$default": recorder.handler()})
    client = management_client(gateway)
    with connect(gateway.ws_url, user_agent_header="get-test/2") as ws:
        connection_id = _connection_id(recorder)
        first = client.get_connection(ConnectionId=connection_id)
        ws.send("activity")
        recorder.wait_for("MESSAGE")
        second = client.get_connection(ConnectionId=connection_id)
    assert isinstance(first["ConnectedAt"], datetime)
    assert first["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "get-test/2"}
    assert first["LastActiveAt"] >= first["ConnectedAt"]
    assert second["LastActiveAt"] >= first["LastActiveAt"]
    assert second["ConnectedAt"] == first["ConnectedAt"]


def test_delete_closes_the_socket_then_runs_disconnect(
    start_gateway, routes, recorder, management_client
):
    gateway = start_gateway(routes)
    client = management_client(gateway)
    with connect(gateway.ws_url) as ws:
        connection_id = _connection_id(recorder)
        response = client.delete_connection(ConnectionId=connection_id)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    [event] = recorder.of("DISCONNECT")  # it ran before the 204
    assert event["requestContext"]["connectionId"] == connection_id
    # What API Gateway's execution log shows after a DeleteConnection:
    # https://github.com/boto/boto3/issues/3789 (also aws/chalice#2060).
    assert event["requestContext"]["disconnectStatusCode"] == 1000
    assert event["requestContext"]["disconnectReason"] == "Connection Closed Normally"
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"late")


@pytest.mark.parametrize("operation", ["post_to_connection", "get_connection", "delete_connection"])
def test_unknown_id_is_a_typed_gone_exception(start_gateway, routes, management_client, operation):
    client = management_client(start_gateway(routes))
    arguments: dict[str, Any] = {"ConnectionId": "Tm90SGVyZQ="}
    if operation == "post_to_connection":
        arguments["Data"] = b"x"
    with pytest.raises(client.exceptions.GoneException) as gone:
        getattr(client, operation)(**arguments)
    assert isinstance(gone.value, ClientError)
    assert gone.value.response["Error"]["Code"] == "GoneException"
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    headers = gone.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"] == "GoneException"


def test_closed_connection_is_gone(start_gateway, routes, recorder, management_client):
    gateway = start_gateway(routes)
    client = management_client(gateway)
    with connect(gateway.ws_url):
        connection_id = _connection_id(recorder)
    recorder.wait_for("DISCONNECT")
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"x")


def test_post_during_connect_is_gone(start_gateway, recorder):
    outcomes: list[str] = []
    endpoint: list[str] = []

    def connect_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint[0],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )
        own_id = event["requestContext"]["connectionId"]
        try:
            client.post_to_connection(ConnectionId=own_id, Data=b"too early")
            outcomes.append("sent")
        except client.exceptions.GoneException:
            outcomes.append("gone")
        return {"statusCode": 200}

    gateway = start_gateway({"$connect": connect_handler})
    endpoint.append(gateway.management_endpoint)
    with connect(gateway.ws_url) as ws, pytest.raises(TimeoutError):
        ws.recv(timeout=0.2)  # nothing was delivered
    assert outcomes == ["gone"]


def test_post_over_128_kb_is_413_and_exactly_128_kb_is_delivered(
    start_gateway, routes, recorder, management_client
):
    gateway = start_gateway(routes)
    client = management_client(gateway)
    with connect(gateway.ws_url, max_size=None) as ws:
        connection_id = _connection_id(recorder)
        exact = b"a" * schema.MAX_MESSAGE_BYTES
        client.post_to_connection(ConnectionId=connection_id, Data=exact)
        assert ws.recv(timeout=5) == exact.decode()
        with pytest.raises(client.exceptions.PayloadTooLargeException) as too_large:
            client.post_to_connection(ConnectionId=connection_id, Data=exact + b"a")
        assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_non_utf8_data_is_delivered_as_binary(start_gateway, routes, recorder, management_client):
    gateway = start_gateway(routes)
    client = management_client(gateway)
    with connect(gateway.ws_url) as ws:
        client.post_to_connection(ConnectionId=_connection_id(recorder), Data=b"\xff\x00")
        assert ws.recv(timeout=5) == b"\xff\x00"


def test_other_stage_or_path_is_403(start_gateway, routes, management_client):
    gateway = start_gateway(routes)
    other = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"{gateway.http_url}/prod",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with pytest.raises(ClientError) as forbidden:
        other.get_connection(ConnectionId="abc")
    assert forbidden.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_concurrent_posts_arrive_whole(start_gateway, routes, recorder, management_client):
    gateway = start_gateway(routes)
    client = management_client(gateway)
    frames = [json.dumps({"n": n, "pad": "p" * 2000}) for n in range(40)]
    with connect(gateway.ws_url) as ws:
        connection_id = _connection_id(recorder)
        threads = [
            threading.Thread(
                target=client.post_to_connection,
                kwargs={"ConnectionId": connection_id, "Data": frame.encode()},
            )
            for frame in frames
        ]
        for thread in threads:
            thread.start()
        received = sorted((ws.recv(timeout=5) for _ in frames), key=lambda f: json.loads(f)["n"])
        for thread in threads:
            thread.join()
    assert received == frames
