"""What the connect, disconnect and message handlers share: reading API Gateway's event."""

from __future__ import annotations

from typing import Any, cast


class RequestContext:
    """The ``requestContext`` of an API Gateway WebSocket event: the fields these handlers read,
    named and typed as Powertools' ``APIGatewayWebSocketEventRequestContext`` does. Not that
    class: importing it imports every Powertools event class, tens of milliseconds of each cold
    start for the few fields read here.

    A missing ``requestContext``, ``connectionId`` or ``requestId`` raises ``KeyError`` as
    Powertools' accessors do; the optional fields are ``None`` when absent.
    """

    __slots__ = ("_data",)

    def __init__(self, event: dict[str, Any]) -> None:
        self._data: dict[str, Any] = event["requestContext"]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    @property
    def connection_id(self) -> str:
        return cast("str", self._data["connectionId"])

    @property
    def request_id(self) -> str:
        return cast("str", self._data["requestId"])

    @property
    def message_id(self) -> str | None:
        return cast("str | None", self._data.get("messageId"))

    @property
    def disconnect_status_code(self) -> int | None:
        return cast("int | None", self._data.get("disconnectStatusCode"))

    @property
    def disconnect_reason(self) -> str | None:
        return cast("str | None", self._data.get("disconnectReason"))


def user_id_of(event: dict[str, Any]) -> str | None:
    """The userId the authorizer put into ``requestContext.authorizer`` (else principalId)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    user_id = authorizer.get("userId") or authorizer.get("principalId")
    return str(user_id) if user_id else None


def connected_at_ms(context: RequestContext, now_ms: int) -> int:
    raw = context.get("connectedAt")
    return int(raw) if isinstance(raw, (int, float)) else now_ms


def response(status_code: int, body: str = "") -> dict[str, Any]:
    return {"statusCode": status_code, "body": body}
