"""The gateway's errors: each carries the status, ``x-amzn-ErrorType`` and message AWS sends.

The HTTP layer (``responses.py``) turns any of them into exactly that response, so boto3's
``apigatewaymanagementapi`` client raises its typed exceptions (``GoneException``...) and a
rejected WebSocket handshake gets the status a client would see from API Gateway.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An error answered with ``status``, header ``x-amzn-ErrorType: code`` and ``{"message"}``."""

    status: int = 500
    code: str = "InternalServerErrorException"
    default_message: str = "Internal server error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message


# --- Management API (@connections) ------------------------------------------------------


class GoneException(GatewayError):
    """Unknown or closed connection id, or one whose ``$connect`` is still running."""

    status = 410
    code = "GoneException"
    default_message = "The connection with the provided id no longer exists."


class PayloadTooLargeException(GatewayError):
    status = 413
    code = "PayloadTooLargeException"
    default_message = "The data has exceeded the maximum size allowed."


class BadRequestException(GatewayError):
    status = 400
    code = "BadRequestException"
    default_message = "Invalid request."


class NotFoundException(GatewayError):
    status = 404
    code = "NotFoundException"
    default_message = "Not Found"


# --- WebSocket handshake ($connect) ------------------------------------------------------


class UnauthorizedException(GatewayError):
    """No identity source, or the authorizer raised ``Exception("Unauthorized")``."""

    status = 401
    code = "UnauthorizedException"
    default_message = "Unauthorized"


class ForbiddenException(GatewayError):
    """An explicit Deny or no Allow on the exact ``methodArn``; also an unknown path."""

    status = 403
    code = "ForbiddenException"
    default_message = "Forbidden"


class TooManyRequestsException(GatewayError):
    """Over the account's new-connections-per-second limit."""

    status = 429
    code = "LimitExceededException"
    default_message = "Too Many Requests"


class UriTooLongException(GatewayError):
    """A handshake URL over API Gateway's 4,096 characters (its quota; the status is HTTP's)."""

    status = 414
    code = "UriTooLongException"
    default_message = "URI Too Long"


class AuthorizerConfigurationException(GatewayError):
    """The authorizer failed otherwise, or answered something that is not a valid policy."""

    status = 500
    code = "AuthorizerConfigurationException"
    default_message = "Internal server error"


class IntegrationFailure(GatewayError):
    """The ``$connect`` function raised, or returned something Lambda cannot serialize."""

    status = 502
    code = "IntegrationFailure"
    default_message = "Internal server error"


class IntegrationTimeout(GatewayError):
    """A function ran past the integration timeout (29 s)."""

    status = 504
    code = "IntegrationTimeout"
    default_message = "Endpoint request timed out"


class FunctionError(IntegrationFailure):
    """A function raised (Lambda's ``errorType`` / ``errorMessage``) or returned non-JSON."""

    def __init__(self, error_type: str, error_message: str) -> None:
        super().__init__()  # the client only ever sees "Internal server error"
        self.error_type = error_type
        self.error_message = error_message


class ConnectRejected(GatewayError):
    """The ``$connect`` function answered a non-2xx status: the handshake fails with it."""

    code = "ConnectRejected"

    def __init__(self, status: int, body: str) -> None:
        super().__init__(body or f"$connect answered {status}")
        self.status = status
        self.body = body
