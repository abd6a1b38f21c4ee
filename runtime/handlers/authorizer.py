"""Lambda REQUEST authorizer of the WebSocket ``$connect`` route (DESIGN §4).

Valid token → an IAM policy allowing exactly the event's ``methodArn``, with the userId in the
context API Gateway hands to every later event. Anything else → ``Exception("Unauthorized")``,
which API Gateway turns into a 401. No boto3 here (a lighter cold start), and no token in logs.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from runtime import schema
from runtime.auth import InvalidTokenError, TokenVerifier
from runtime.config import AuthConfig
from runtime.observability import Metric, bind_request, count, emits_metrics, logger

UNAUTHORIZED = "Unauthorized"  # the exact message API Gateway maps to 401
BEARER_SCHEME = "bearer"
# arn:{partition}:execute-api:{region}:{account}:{apiId}/{stage}/{route}
_METHOD_ARN = re.compile(r"arn:aws[a-z-]*:execute-api:[a-z0-9-]+:\d{12}:[A-Za-z0-9]+/[^/\s]+/\S+")
# Authorizer context entry → the claims it is copied from (first string one wins).
_CONTEXT_CLAIMS: dict[str, tuple[str, ...]] = {
    "tokenUse": ("token_use",),
    "email": ("email",),
    "username": ("username", "cognito:username"),
}


class PolicyStatement(TypedDict):
    Action: str
    Effect: str
    Resource: str


class PolicyDocument(TypedDict):
    Version: str
    Statement: list[PolicyStatement]


class AuthorizerResponse(TypedDict):
    principalId: str
    policyDocument: PolicyDocument
    context: dict[str, str]


class MalformedEventError(Exception):
    """The event is not a WebSocket REQUEST authorizer event we can answer."""


VERIFIER = TokenVerifier(AuthConfig.from_env())


@emits_metrics
def handler(event: dict[str, Any], context: object) -> AuthorizerResponse:
    try:
        bind_request(event)
        return authorize(event, VERIFIER)
    except (InvalidTokenError, MalformedEventError) as exc:
        logger.info("authorization denied", extra={"reason": str(exc)})
    except Exception as exc:
        # Only the type: an unexpected message could quote the token.
        logger.error("authorizer failed", extra={"errorType": type(exc).__name__})
    count(Metric.AUTHORIZATION_DENIED)
    raise Exception(UNAUTHORIZED)


def authorize(event: dict[str, Any], verifier: TokenVerifier) -> AuthorizerResponse:
    """The Allow policy for this event's token, or ``InvalidTokenError``/``MalformedEventError``."""
    method_arn = event.get("methodArn")
    if not isinstance(method_arn, str) or not _METHOD_ARN.fullmatch(method_arn):
        raise MalformedEventError("event has no execute-api methodArn")
    token = token_from_event(event)
    if token is None:
        raise InvalidTokenError("missing token")
    claims = verifier.verify(token)
    user_id: str = claims["sub"]
    logger.info("authorization granted", extra={"userId": user_id})
    return allow_policy(user_id, method_arn, claims)


def token_from_event(event: dict[str, Any]) -> str | None:
    """``?token=`` (what browsers can send), else an ``Authorization: Bearer`` header."""
    query = event.get("queryStringParameters") or {}
    token = query.get(schema.TOKEN_QUERY_PARAMETER)
    if isinstance(token, str) and token.strip():
        return token.strip()
    headers = event.get("headers") or {}
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "authorization" and isinstance(value, str):
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == BEARER_SCHEME and credentials.strip():
                return credentials.strip()
    return None


def allow_policy(user_id: str, method_arn: str, claims: dict[str, Any]) -> AuthorizerResponse:
    """Allow exactly ``method_arn``: a REST-style ``*/*`` wildcard does not match WebSocket ARNs."""
    context = {schema.ATTR_USER_ID: user_id}
    for entry, names in _CONTEXT_CLAIMS.items():
        value = next((claims[n] for n in names if isinstance(claims.get(n), str)), None)
        if value:
            context[entry] = value
    return {
        "principalId": user_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}
            ],
        },
        "context": context,
    }
