"""Received frames, parsed so that a newer server's frames are still understood.

A server newer than this client may send an ``error`` code or a ``system`` event this version
does not know. Such a frame is still honoured: it is kept with its code (or event) as the plain
string, so that its ``retryable`` and ``clientMessageId`` drive the re-send or the rejection of
a chat message as usual, and it reaches ``frames()``. Compare codes and events with ``==``
(``ErrorCode`` and ``SystemEvent`` are string enums).
"""

from __future__ import annotations

import json

from runtime.messages import OUTBOUND_ADAPTER, ErrorCode, Frame, SystemEvent, parse_frame

# The field of each frame type that may hold a value from the future, and a known stand-in
# used to check every other field of the frame.
_OPEN_FIELDS = {
    "error": ("code", ErrorCode.INTERNAL_ERROR),
    "system": ("event", SystemEvent.NOTICE),
}


def parse_received(message: str | bytes) -> Frame | None:
    """The frame, or None when it is outside the protocol (not JSON, unknown type, bad field)."""
    try:
        return parse_frame(message)
    except ValueError:  # pydantic's ValidationError included
        pass
    try:
        body = json.loads(message)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    open_field = _OPEN_FIELDS.get(str(body.get("type")))
    if open_field is None:
        return None
    name, stand_in = open_field
    value = body.get(name)
    if not isinstance(value, str) or not value:
        return None
    try:
        frame = OUTBOUND_ADAPTER.validate_python({**body, name: stand_in.value})
    except ValueError:
        return None  # something else is wrong with it too
    return frame.model_copy(update={name: value})
