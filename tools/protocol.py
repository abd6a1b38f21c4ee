"""``python -m tools.protocol``: write ``protocol/rag-websocket.schema.json`` from the models.

The schema is generated from ``runtime/messages.py`` (and the limits from ``runtime/schema.py``)
so that it cannot drift from what the handlers accept and send; ``--check`` exits 1 when the
committed file differs (``tests/web/test_protocol.py`` runs it). The browser client's TypeScript
types are generated from this file in turn (``npm run protocol`` in ``web/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from runtime import schema
from runtime.messages import (
    ChatMessageAction,
    ChatQueueMessage,
    ChatResponse,
    ErrorFrame,
    PingAction,
    SystemFrame,
    TypingIndicator,
)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "protocol" / "rag-websocket.schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

INBOUND: tuple[type[BaseModel], ...] = (ChatMessageAction, PingAction)
OUTBOUND: tuple[type[BaseModel], ...] = (ChatResponse, TypingIndicator, ErrorFrame, SystemFrame)
QUEUE: tuple[type[BaseModel], ...] = (ChatQueueMessage,)

# Facts a client needs besides the frames' shapes; stated once, in runtime/schema.py.
LIMITS = {
    "maxFrameBytes": schema.MAX_FRAME_BYTES,
    "maxMessageBytes": schema.MAX_MESSAGE_BYTES,
    "idleTimeoutSeconds": schema.IDLE_TIMEOUT_SECONDS,
    "maxConnectionSeconds": schema.MAX_CONNECTION_SECONDS,
    "tokenQueryParameter": schema.TOKEN_QUERY_PARAMETER,
    "instanceQueryParameter": schema.INSTANCE_QUERY_PARAMETER,
    "instanceIdPattern": schema.INSTANCE_ID_PATTERN,
    "idPattern": schema.SQS_ID_PATTERN,
    "deduplicationWindowSeconds": schema.SQS_DEDUPLICATION_WINDOW_SECONDS,
}


def _always_sent(model: type[BaseModel]) -> list[str]:
    """Wire names of the fields every frame carries: ``to_json`` drops only ``None`` values."""
    return [
        field.alias or name
        for name, field in model.model_fields.items()
        if field.is_required() or field.default is not None
    ]


def _tidy(definition: dict[str, Any], *, omitted_when_none: bool) -> None:
    """Drop pydantic's per-field titles (type generators would name a type after each) and,
    for frames the server sends, the ``null`` of optional fields: ``to_json`` omits them."""
    for prop in definition.get("properties", {}).values():
        prop.pop("title", None)
        if omitted_when_none and prop.get("default", ...) is None:
            del prop["default"]
            (branch,) = [b for b in prop.pop("anyOf") if b != {"type": "null"}]
            prop.update(branch)


def _union(models: tuple[type[BaseModel], ...], discriminator: str) -> dict[str, Any]:
    refs = {model.__name__: f"#/$defs/{model.__name__}" for model in models}
    mapping = {
        get_args(model.model_fields[discriminator].annotation)[0]: refs[model.__name__]
        for model in models
    }
    return {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": discriminator, "mapping": mapping},
    }


def build() -> dict[str, Any]:
    """The whole protocol as one JSON Schema document."""
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in (*INBOUND, *QUEUE)),
        *((model, "serialization") for model in OUTBOUND),
    ]
    _, generated = models_json_schema(modes, ref_template="#/$defs/{model}")
    definitions: dict[str, Any] = generated["$defs"]
    for model in (*INBOUND, *QUEUE):
        _tidy(definitions[model.__name__], omitted_when_none=False)
    for model in OUTBOUND:
        _tidy(definitions[model.__name__], omitted_when_none=True)
        definitions[model.__name__]["required"] = _always_sent(model)
    definitions["InboundAction"] = {
        "title": "InboundAction",
        "description": "A frame a client sends (route selection on `action`).",
        **_union(INBOUND, "action"),
    }
    definitions["OutboundFrame"] = {
        "title": "OutboundFrame",
        "description": "A frame the server sends (discriminated on `type`).",
        **_union(OUTBOUND, "type"),
    }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": "rag-websocket/protocol.schema.json",
        "title": "RagWebsocketProtocol",
        "description": "The rag-websocket wire protocol, generated from runtime/messages.py by "
        "python -m tools.protocol: do not edit by hand.",
        "type": "object",
        "properties": {
            "inbound": {"$ref": "#/$defs/InboundAction"},
            "outbound": {"$ref": "#/$defs/OutboundFrame"},
            "queueMessage": {"$ref": "#/$defs/ChatQueueMessage"},
        },
        "x-limits": LIMITS,
        "$defs": dict(sorted(definitions.items())),
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.protocol", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed schema is out of date"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(
                f"{SCHEMA_PATH} differs from runtime/messages.py: run python -m tools.protocol "
                "and (in web/) npm run protocol, then commit both",
                file=sys.stderr,
            )
            return 1
        return 0
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
