"""The local gateway, with this project's handlers, under arbitrary input on every surface.

- text frames (any Unicode, JSON shaped like the protocol or not): each gets exactly one
  answer, a protocol frame from the handler — never the gateway's own "Internal server error";
- text frames that are not UTF-8, and binary frames: the socket closes (1007 / 1003), and only
  that socket;
- the handshake with any token: 401, never a connection, never a 5xx;
- the HTTP surface (management API, JWKS, anything else) with any method, path and body:
  never a 5xx.

Afterwards the server still serves: a fresh client connects and gets its pong, every accepted
chat message is in the queue exactly once, and the access log holds no 5xx.
"""

from __future__ import annotations

import http.client
import json
import string
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from local.gateway import AccessRecord
from local.stack import LocalStack
from runtime import schema
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore
from runtime.messages import ErrorFrame, SystemEvent, SystemFrame, parse_frame
from tests.reliability.figures import Figures

TEXT_FRAMES = 800
BAD_FRAMES = 100
HANDSHAKES = 300
HTTP_REQUESTS = 1000
# Below the per-connection rate limit (60 a minute): a fresh connection after this many frames.
FRAMES_PER_CONNECTION = 50
RECV_SECONDS = 30.0
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
tried = Figures("fuzz: local gateway")


class Connections:
    """One live connection at a time, replaced when it closes or has sent enough frames."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.ws: ClientConnection | None = None
        self.sent = 0
        self.opened = 0
        self._context: Any = None

    def current(self) -> ClientConnection:
        if self.ws is None or self.sent >= FRAMES_PER_CONNECTION:
            self.close()
            self._context = connect(self.stack.connect_url("fuzzer"), open_timeout=30)
            self.ws = self._context.__enter__()
            self.sent = 0
            self.opened += 1
        self.sent += 1
        return self.ws

    def close(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self.ws = self._context = None


@pytest.fixture(scope="module")
def connections(stack: LocalStack) -> Iterator[Connections]:
    held = Connections(stack)
    yield held
    held.close()
    tried["connections opened for text frames"] = held.opened


# (conversationId, clientMessageId): the queue deduplicates a clientMessageId per conversation.
accepted_ids: set[tuple[str, str]] = set()


# --- text frames -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
printable_ids = st.text(alphabet=string.printable.strip(), min_size=1, max_size=20)
protocol_shaped = st.fixed_dictionaries(
    {"action": st.sampled_from(["chat_message", "ping", "$default", "$connect", "", "CHAT"])},
    optional={
        "conversationId": printable_ids | json_values,
        "content": st.text(min_size=1) | json_values,
        "clientMessageId": printable_ids | json_values,
    },
).map(json.dumps)
valid_chat = st.fixed_dictionaries(
    {
        "action": st.just("chat_message"),
        "conversationId": printable_ids,
        "content": st.text(min_size=1),
        "clientMessageId": printable_ids,
    }
).map(json.dumps)
text_frames = st.one_of(
    valid_chat,
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=2000),
    json_values.map(json.dumps),
    protocol_shaped,
    st.sampled_from(["[", "{", '{"action":', "null", "{}", "[]", '"ping"', "\x00", " "]),
)


@settings(FUZZ, max_examples=TEXT_FRAMES)
@given(text=text_frames)
@example(text="x" * schema.MAX_FRAME_BYTES)  # a frame of the frame limit, sent as one
@example(text='{"action":"chat_message","conversationId":"c","content":"' + "é" * 30_000 + '"}')
def test_every_text_frame_gets_one_protocol_answer(connections: Connections, text: str) -> None:
    ws = connections.current()
    ws.send(text)
    answer = ws.recv(timeout=RECV_SECONDS)
    tried["text frames"] += 1
    frame = parse_frame(answer)  # the handler's frame, not the gateway's {"message": ...}
    if isinstance(frame, ErrorFrame):
        tried[f"text frames answered error {frame.code.value}"] += 1
        assert frame.code.value in {"BAD_REQUEST", "UNKNOWN_ACTION", "MESSAGE_TOO_LARGE"}, frame
        return
    assert isinstance(frame, SystemFrame), frame
    tried[f"text frames answered {frame.event.value}"] += 1
    if frame.event is SystemEvent.ACCEPTED:
        assert frame.data is not None
        accepted_ids.add((frame.data["conversationId"], frame.data["clientMessageId"]))
    else:
        assert frame.event is SystemEvent.PONG


def test_messages_at_and_over_the_128_kb_limit(stack: LocalStack) -> None:
    """One byte over API Gateway's message limit closes the socket with 1009; at it, an answer."""
    body_at_limit = '{"action":"ping","pad":"' + "x" * (schema.MAX_MESSAGE_BYTES - 26) + '"}'
    assert len(body_at_limit.encode()) == schema.MAX_MESSAGE_BYTES
    with connect(stack.connect_url("fuzz-limits"), max_size=None) as ws:
        ws.send(body_at_limit)
        assert json.loads(ws.recv(timeout=RECV_SECONDS))["event"] == "pong"
        ws.send(body_at_limit + " ")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_SECONDS)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == schema.CLOSE_MESSAGE_TOO_BIG
    tried["messages at and over 128 KB"] += 2


# --- frames that close the socket ------------------------------------------------------------


@settings(FUZZ, max_examples=BAD_FRAMES)
@given(
    payload=st.binary(max_size=4096),
    as_text=st.booleans(),
)
def test_binary_and_non_utf8_frames_close_only_their_socket(
    stack: LocalStack, connections: Connections, payload: bytes, as_text: bool
) -> None:
    try:
        payload.decode("utf-8")
        valid_utf8 = True
    except UnicodeDecodeError:
        valid_utf8 = False
    if as_text and valid_utf8:
        payload += b"\xff"  # a text frame that is not UTF-8
    bystander = connections.current()
    with connect(stack.connect_url("fuzz-bad-frames"), open_timeout=30) as ws:
        ws.send(payload, text=as_text)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_SECONDS)
    code = closed.value.rcvd.code if closed.value.rcvd is not None else None
    expected = 1007 if as_text else schema.CLOSE_UNSUPPORTED_DATA  # invalid frame payload data
    assert code == expected
    tried[f"{'non-UTF-8 text' if as_text else 'binary'} frames (closed {code})"] += 1
    bystander.send('{"action":"ping"}')  # another connection is untouched
    assert json.loads(bystander.recv(timeout=RECV_SECONDS))["event"] == "pong"


# --- the handshake ---------------------------------------------------------------------------


@settings(FUZZ, max_examples=HANDSHAKES)
@given(
    # URL-encoded, at most ~6 KB; past API Gateway's 4,096-character URL the answer is 414,
    # before the authorizer (see test_attacks_gateway.py).
    token=st.text(min_size=1, max_size=400) | st.binary(max_size=300).map(lambda b: b.hex()),
    extra=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=16), max_size=2),
)
def test_any_token_on_the_handshake_is_401(
    stack: LocalStack, token: str, extra: dict[str, str]
) -> None:
    query = urlencode({**extra, schema.TOKEN_QUERY_PARAMETER: token})
    with pytest.raises(InvalidStatus) as refused, connect(f"{stack.ws_url}?{query}"):
        pass
    tried["handshakes with an arbitrary token"] += 1
    too_long = len(f"{stack.ws_url}?{query}") > schema.MAX_URL_CHARACTERS
    assert refused.value.response.status_code == (414 if too_long else 401)


# --- the HTTP surface: management API, JWKS, everything else ---------------------------------

# Characters a request line can carry as they are; everything else is percent-encoded, so
# that malformed escapes ("%ZZ", "%00") still reach the server.
SAFE = "/@%:=+&?;,!$'()*~-._"
METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]


class Victim:
    """A live connection the fuzzer aims at (``<victim>`` in a path is its id, URL-encoded); a
    thread drains what is posted to it. Reopened when a fuzzed DELETE has closed it."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.received = 0
        self.opened = 0
        self._context: Any = None
        self.connection_id = ""

    def current_id(self) -> str:
        if self._context is None or self._context.close_code is not None:
            self.close()
            known = self._ids()
            self._context = connect(self.stack.connect_url("fuzz-victim"), open_timeout=30)
            ws = self._context.__enter__()
            [self.connection_id] = self._ids() - known
            threading.Thread(target=self._drain, args=(ws,), daemon=True).start()
            self.opened += 1
        return self.connection_id

    def _ids(self) -> set[str]:
        return {
            row.connection_id
            for row in ConnectionStore(
                StoreConfig(self.stack.aws.table_name), client=self.stack.aws.dynamodb()
            ).list_for_user("fuzz-victim")
        }

    def _drain(self, ws: ClientConnection) -> None:
        try:
            while True:
                ws.recv()
                self.received += 1
        except ConnectionClosed:
            return

    def close(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None


@pytest.fixture(scope="module")
def victim(stack: LocalStack) -> Iterator[Victim]:
    target = Victim(stack)
    yield target
    target.close()
    tried["frames posted to the targeted connection and received"] = target.received
    tried["targeted connections opened (a fuzzed DELETE closes one)"] = target.opened


def weighted(common: list[Any], rare: st.SearchStrategy[Any], odds: int = 4) -> Any:
    """``common`` values ``odds`` times as often as one drawn from ``rare``."""
    return st.sampled_from([*common * odds, None]).flatmap(
        lambda value: rare if value is None else st.just(value)
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    stage = draw(weighted(["dev"], st.sampled_from(["prod", "", "DEV", "dev/extra", "%64ev"])))
    connection_id = draw(
        weighted(
            ["<victim>"],
            st.sampled_from(["<raw-victim>", "%ZZ", "%00", "..", "", "a%2Fb", "%2F%2F"])
            | st.text(max_size=64).map(lambda t: quote(t, safe=""))
            | st.text(alphabet=SAFE + string.ascii_letters, max_size=64),
            odds=2,
        )
    )
    path = draw(
        weighted(
            [f"/{stage}/@connections/{connection_id}"],
            st.sampled_from(
                [
                    f"/{stage}/@connections/{connection_id}/more",
                    f"/{stage}/@connections/",
                    f"/{stage}",
                    "/",
                    "/.well-known/jwks.json",
                    "//",
                    f"/{connection_id}",
                ]
            )
            | st.text(max_size=80).map(lambda t: "/" + quote(t, safe=SAFE)),
            odds=2,
        )
    )
    if draw(st.integers(0, 3)) == 0:
        path += "?" + quote(draw(st.text(max_size=40)), safe="=&")
    method = draw(
        weighted(
            ["POST", "POST", *METHODS],
            st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=8),
        )
    )
    body = draw(
        st.binary(max_size=2048)
        | st.text(max_size=500).map(str.encode)
        | st.sampled_from([b"", b"x" * (schema.MAX_MESSAGE_BYTES + 1)])
    )
    return method, path, body


def _request(stack: LocalStack, method: str, path: str, body: bytes) -> int:
    address = urlsplit(stack.gateway.http_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_http_surface_never_answers_5xx(stack: LocalStack, victim: Victim) -> None:
    @settings(FUZZ, max_examples=HTTP_REQUESTS)
    @given(request=requests())
    def fuzz(request: tuple[str, str, bytes]) -> None:
        method, path, body = request
        victim_id = victim.current_id()
        path = path.replace("<victim>", quote(victim_id, safe="")).replace(
            "<raw-victim>", victim_id
        )
        status = _request(stack, method, path, body)
        tried["HTTP requests"] += 1
        tried[f"HTTP requests answered {status}"] += 1
        tried[f"HTTP {method if method in METHODS else 'other method'} requests"] += 1
        assert status < 500, (method, path, len(body), status)

    fuzz()


# --- afterwards -------------------------------------------------------------------------------


def _queued(stack: LocalStack) -> list[tuple[str, str]]:
    sqs = stack.aws.sqs()
    ids: list[tuple[str, str]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=stack.aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            return ids
        for item in batch:
            body = json.loads(item["Body"])
            ids.append((body["conversationId"], body["clientMessageId"]))
            sqs.delete_message(QueueUrl=stack.aws.queue_url, ReceiptHandle=item["ReceiptHandle"])


def test_afterwards_the_server_still_serves_and_nothing_was_lost(
    stack: LocalStack, connections: Connections, access_log: list[AccessRecord]
) -> None:
    connections.close()
    with connect(stack.connect_url("after-the-fuzz"), open_timeout=30) as ws:
        ws.send('{"action":"ping"}')
        assert json.loads(ws.recv(timeout=RECV_SECONDS))["event"] == "pong"
    queued = _queued(stack)
    assert len(queued) == len(set(queued))
    assert set(queued) == accepted_ids
    tried["chat messages accepted and queued once"] = len(queued)
    server_errors = [r for r in access_log if r.status >= 500]
    assert server_errors == []
    tried["access log records, none 5xx"] = len(access_log)
