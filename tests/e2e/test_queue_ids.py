"""Two users who choose the same conversationId and clientMessageId are both answered: the
chat queue's FIFO ids are scoped to the user (DESIGN §3), so neither message is dropped as a
duplicate of the other."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import connect

from runtime.messages import ChatResponse, SystemFrame, TypingIndicator, parse_frame


def _answer(ws: Any) -> tuple[list[str], str]:
    """The accepted clientMessageIds and the answer's text, read until typing stops."""
    accepted: list[str] = []
    text = ""
    while True:
        frame = parse_frame(ws.recv(timeout=15))
        if isinstance(frame, SystemFrame) and frame.data:
            accepted.append(frame.data["clientMessageId"])
        elif isinstance(frame, ChatResponse):
            text += frame.content
        elif isinstance(frame, TypingIndicator) and not frame.is_typing:
            return accepted, text


def test_two_users_with_the_same_ids_are_both_answered(stack):
    chat = {"action": "chat_message", "conversationId": "default", "clientMessageId": "1"}
    with connect(stack.connect_url("hana")) as hana, connect(stack.connect_url("ivo")) as ivo:
        hana.send(json.dumps({**chat, "content": "hana asks"}))
        ivo.send(json.dumps({**chat, "content": "ivo asks"}))
        answers = {"hana": _answer(hana), "ivo": _answer(ivo)}
    assert answers["hana"][0] == answers["ivo"][0] == ["1"]
    assert "hana asks" in answers["hana"][1]
    assert "ivo asks" in answers["ivo"][1]
