"""What the connect, disconnect and message handlers share: reading API Gateway's event."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent


def user_id_of(event: dict[str, Any]) -> str | None:
    """The userId the authorizer put into ``requestContext.authorizer`` (else principalId)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    user_id = authorizer.get("userId") or authorizer.get("principalId")
    return str(user_id) if user_id else None


def connected_at_ms(event: APIGatewayWebSocketEvent, now_ms: int) -> int:
    raw = event.request_context.get("connectedAt")
    return int(raw) if isinstance(raw, (int, float)) else now_ms


def response(status_code: int, body: str = "") -> dict[str, Any]:
    return {"statusCode": status_code, "body": body}
