"""This project's handlers behind the local gateway, end to end over real sockets: dev-token
auth, the connections table, one full chat with the demo responder, and the 410 clean-up."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from local.tokens import DevTokens
from runtime.messages import ChatResponse, SystemFrame, TypingIndicator, parse_frame
from runtime.posting import SignedTransport
from runtime.sender import MessageSender
from tests.support import wait_until


def _status(url: str) -> int:
    with pytest.raises(InvalidStatus) as rejected, connect(url, open_timeout=10):
        pass
    return rejected.value.response.status_code


def _frames_until_typing_off(ws: ClientConnection) -> list[Any]:
    frames = []
    while True:
        frame = parse_frame(ws.recv(timeout=15))
        frames.append(frame)
        if isinstance(frame, TypingIndicator) and not frame.is_typing:
            return frames


def test_full_chat(stack, store, access_log):
    with connect(stack.connect_url("alice")) as ws:
        [row] = store.list_for_user("alice")
        ws.send(
            json.dumps(
                {
                    "action": "chat_message",
                    "conversationId": "conv-1",
                    "content": "What is RAG?",
                    "clientMessageId": "m-1",
                }
            )
        )
        frames = _frames_until_typing_off(ws)
    accepted = [f for f in frames if isinstance(f, SystemFrame)]
    assert [(f.event.value, f.data["clientMessageId"]) for f in accepted] == [("accepted", "m-1")]
    stream = [f for f in frames if not isinstance(f, SystemFrame)]
    assert isinstance(stream[0], TypingIndicator)
    assert stream[0].is_typing
    chunks = stream[1:-1]
    assert all(isinstance(c, ChatResponse) for c in chunks)
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    assert all(c.conversation_id == "conv-1" for c in chunks)
    assert len({c.message_id for c in chunks}) == 1
    *content, done = chunks
    assert done.done
    assert done.content == ""
    assert not any(c.done for c in content)
    assert "What is RAG?" in "".join(c.content for c in content)
    assert isinstance(stream[-1], TypingIndicator)
    assert not stream[-1].is_typing

    def logged() -> list[tuple[str, str, int]]:
        mine = [r for r in access_log if r.connectionId == row.connection_id]
        return [(r.eventType, r.routeKey, r.status) for r in mine]

    wait_until(lambda: store.get(row.connection_id) is None and len(logged()) == 3, timeout=10)
    assert logged() == [
        ("CONNECT", "$connect", 200),
        ("MESSAGE", "chat_message", 200),
        ("DISCONNECT", "$disconnect", 200),
    ]


def test_the_demo_responder_posts_on_the_lean_path(stack, store, monkeypatch):
    """The responder answers the way production code does: ``MessageSender``'s default path."""
    posted: list[str] = []
    post = SignedTransport.post

    def recorded(self: SignedTransport, connection_id: str, data: bytes) -> Any:
        posted.append(connection_id)
        return post(self, connection_id, data)

    monkeypatch.setattr(SignedTransport, "post", recorded)
    with connect(stack.connect_url("bob")) as ws:
        [row] = store.list_for_user("bob")
        ws.send(json.dumps({"action": "chat_message", "conversationId": "c", "content": "hi"}))
        frames = _frames_until_typing_off(ws)
    # Every frame but the route's `accepted` answer was posted, all to this connection.
    assert posted == [row.connection_id] * (len(frames) - 1)


def test_ping_and_unknown_actions_are_answered(stack):
    with connect(stack.connect_url("bob")) as ws:
        ws.send('{"action":"ping"}')
        assert json.loads(ws.recv(timeout=10))["event"] == "pong"
        ws.send('{"action":"dance"}')
        error = json.loads(ws.recv(timeout=10))
        ws.send("not json")
        bad = json.loads(ws.recv(timeout=10))
    assert (error["type"], error["code"]) == ("error", "UNKNOWN_ACTION")
    assert (bad["type"], bad["code"]) == ("error", "BAD_REQUEST")


def test_the_connect_row_holds_the_token_user(stack, store):
    with connect(stack.connect_url("carol")):
        [row] = store.list_for_user("carol")
        assert row.user_id == "carol"
        assert row.connection_id in stack.gateway.backend.connections


def test_bad_tokens_are_401(stack, tmp_path):
    stranger = DevTokens.load_or_create(tmp_path)  # another key: its kid is unknown
    assert _status(stack.ws_url) == 401
    assert _status(f"{stack.ws_url}?token=not-a-jwt") == 401
    assert _status(f"{stack.ws_url}?token={stack.token_for('dan', exp=1)}") == 401
    assert _status(f"{stack.ws_url}?token={stack.token_for('dan', aud='other')}") == 401
    assert _status(f"{stack.ws_url}?token={stranger.issue('dan')}") == 401


def test_a_token_from_the_token_command_is_accepted(stack, state_dir):
    token = DevTokens.load_or_create(state_dir).issue("erin")  # what `token --user erin` does
    with connect(f"{stack.ws_url}?token={token}"):
        pass


def test_jwks_is_served(stack):
    with urllib.request.urlopen(stack.jwks_url, timeout=5) as response:  # noqa: S310 - loopback
        keys = json.load(response)["keys"]
    assert [key["kid"] for key in keys] == [stack.tokens.kid]


def test_gone_connection_is_typed_410_and_the_sender_cleans_up(stack, store, management):
    with connect(stack.connect_url("frank")):
        [row] = store.list_for_user("frank")
    wait_until(lambda: stack.gateway.backend.connections.get(row.connection_id) is None, timeout=10)
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=row.connection_id, Data=b"{}")
    # A row $disconnect missed (best-effort in AWS) is removed on the first 410, once the
    # connection is older than a $connect can take.
    store.add(row.connection_id, "frank", int((time.time() - 60) * 1000))
    sender = MessageSender(store, stack.management_endpoint, client=management)
    try:
        assert (
            sender.send_message(row.connection_id, {"type": "system", "event": "notice"}) is False
        )
    finally:
        sender.close()
    assert store.get(row.connection_id) is None


def test_broadcast_reaches_every_connection_of_a_user(stack, store, management):
    sender = MessageSender(store, stack.management_endpoint, client=management)
    try:
        with (
            connect(stack.connect_url("gina")) as first,
            connect(stack.connect_url("gina")) as second,
        ):
            result = sender.broadcast_to_user("gina", {"type": "system", "event": "notice"})
            assert (result.sent, result.gone) == (2, 0)
            for ws in (first, second):
                assert json.loads(ws.recv(timeout=10))["event"] == "notice"
    finally:
        sender.close()
