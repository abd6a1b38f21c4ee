"""Lambda REQUEST authorizer of the WebSocket ``$connect`` route (DESIGN §4).

Three answers, as API Gateway documents them for a Lambda authorizer
(https://docs.aws.amazon.com/apigateway/latest/developerguide/call-api-with-api-gateway-lambda-authorization.html):

- a valid token → an IAM policy allowing exactly the event's ``methodArn`` (200 to the client),
  with the userId in the context API Gateway hands to every later event;
- a bad token → ``Exception("Unauthorized")``, which API Gateway answers with 401: the client
  needs a new token and should not retry with this one;
- a token that cannot be checked now (JWKS unreachable, too slow or malformed, a malformed
  event, a crash) → ``AuthorizerUnavailableError``: any other exception is answered with 500,
  which clients retry with backoff. It counts ``UnexpectedFailures``; denials never do.

No token in logs. For the cold start (issue 14: at most 0.6x a boto3 client's), no boto3 and no
Powertools event data classes: the policy is the one Powertools'
``APIGatewayAuthorizerResponseWebSocket`` builds for the route and ``parse_api_gateway_arn``
reads (``tests/unit/test_authorizer_handler.py`` compares them), but importing those imports
every Powertools event class, about a tenth of the baseline.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime import schema
from runtime.auth import InvalidTokenError, TokenVerifier, VerificationUnavailableError
from runtime.config import AuthConfig
from runtime.observability import Metric, count, handles_invocation, logger

UNAUTHORIZED = "Unauthorized"  # the exact message API Gateway maps to 401
POLICY_VERSION = "2012-10-17"
# A WebSocket route's ARN, arn:{partition}:execute-api:{region}:{account}:{apiId}/{stage}/{route}
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-control-access-using-iam-policies.html);
# API Gateway's stage names are letters, digits, "-" and "_". No wildcard: the policy allows
# exactly the route it was asked for.
_METHOD_ARN = re.compile(
    r"arn:aws[a-z-]*:execute-api:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9]+/[A-Za-z0-9_-]+/[^\s*?]+"
)
# Authorizer context entry → the claims it is copied from (first string one wins).
_CONTEXT_CLAIMS: dict[str, tuple[str, ...]] = {
    "tokenUse": ("token_use",),
    "email": ("email",),
    "username": ("username", "cognito:username"),
}


class MalformedEventError(Exception):
    """The event is not a WebSocket REQUEST authorizer event we can answer."""


class AuthorizerUnavailableError(Exception):
    """Tokens cannot be checked now. Any exception but ``Exception("Unauthorized")`` makes API
    Gateway answer 500; this one names the reason (never a token) in Lambda's error report."""


VERIFIER = TokenVerifier(AuthConfig.from_env())


@handles_invocation
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failure: str | None
    try:
        return authorize(event, VERIFIER, _time_for_jwks(context))
    except InvalidTokenError as exc:
        logger.info("authorization denied", extra={"reason": exc.reason})
        failure = None
    except (VerificationUnavailableError, MalformedEventError) as exc:
        failure = str(exc)
        logger.error("cannot verify tokens", extra={"reason": failure})
    except Exception as exc:
        # Only the type: an unexpected message could quote the token.
        logger.error("authorizer failed", extra={"errorType": type(exc).__name__})
        failure = "authorizer failed"
    # Raised outside the except blocks, so that nothing of the cause is chained to them.
    if failure is None:
        count(Metric.AUTHORIZATION_DENIED)
        raise Exception(UNAUTHORIZED)
    count(Metric.UNEXPECTED_FAILURES)
    raise AuthorizerUnavailableError(f"cannot verify tokens now: {failure}")


def _time_for_jwks(context: LambdaContext) -> float:
    """Seconds a JWKS fetch may take: what this invocation has left, less the time to answer."""
    remaining = context.get_remaining_time_in_millis() / 1000
    return remaining - schema.AUTHORIZER_ANSWER_MARGIN_SECONDS


def authorize(
    event: dict[str, Any], verifier: TokenVerifier, within_seconds: float
) -> dict[str, Any]:
    """The Allow policy for this event's token, else ``InvalidTokenError`` (the token's fault),
    ``VerificationUnavailableError`` or ``MalformedEventError``."""
    method_arn = _method_arn(event)
    token = token_from_event(event)
    if token is None:
        raise InvalidTokenError("missing token")
    claims = verifier.verify(token, within_seconds)
    user_id: str = claims["sub"]
    logger.info("authorization granted", extra={"userId": user_id})
    return allow_policy(user_id, method_arn, claims)


def _method_arn(event: dict[str, Any]) -> str:
    """The event's ``methodArn``; a wildcard or anything but one route's ARN is refused, so the
    policy can never allow more than this one route."""
    raw = event.get("methodArn")
    if isinstance(raw, str) and _METHOD_ARN.fullmatch(raw):
        return raw
    raise MalformedEventError("event has no execute-api methodArn")


def token_from_event(event: dict[str, Any]) -> str | None:
    """``?token=``: the stack's identity source (``schema.AUTHORIZER_IDENTITY_SOURCE``). API
    Gateway answers 401 without invoking the authorizer when it is missing, so no other place
    (an ``Authorization`` header, say) could ever be read in AWS."""
    query = event.get("queryStringParameters") or {}
    token = query.get(schema.TOKEN_QUERY_PARAMETER)
    if isinstance(token, str) and token.strip():
        return token.strip()
    return None


def allow_policy(user_id: str, method_arn: str, claims: dict[str, Any]) -> dict[str, Any]:
    """Allow exactly ``method_arn``: a REST-style ``*/*`` wildcard does not match WebSocket ARNs."""
    context = {schema.ATTR_USER_ID: user_id}
    for entry, names in _CONTEXT_CLAIMS.items():
        value = next((claims[n] for n in names if isinstance(claims.get(n), str)), None)
        if value:
            context[entry] = value
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [method_arn]}
    return {
        "principalId": user_id,
        "policyDocument": {"Version": POLICY_VERSION, "Statement": [statement]},
        "context": context,
    }
