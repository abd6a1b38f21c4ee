"""What API Gateway does with a Lambda REQUEST authorizer's answer (DESIGN §4).

The policy must allow ``execute-api:Invoke`` on the exact ``methodArn``
(``arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/$connect``) with IAM wildcard
matching, where ``*`` spans ``/``: a REST-shaped ``{apiId}/*/*/*`` does not match the
two-segment WebSocket ARN, and every connect gets 403. An explicit Deny wins over any Allow.
Context values must be strings, numbers or booleans; API Gateway stringifies them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from local.gateway.exceptions import AuthorizerConfigurationException, ForbiddenException

INVOKE_ACTION = "execute-api:Invoke"


@dataclass(frozen=True)
class Authorization:
    """An allowed connect: the principal and the stringified context of every later event."""

    principal_id: str
    context: dict[str, str]


@lru_cache(maxsize=256)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters (``/`` included), ``?`` one character."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE if ignore_case else 0)


def _listed(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise AuthorizerConfigurationException(
        "authorizer policy: Action and Resource must be a string or a list of strings"
    )


def _matches(statement: Mapping[str, Any], method_arn: str) -> bool:
    actions = _listed(statement.get("Action", []))
    resources = _listed(statement.get("Resource", []))
    return any(_wildcard(a, True).fullmatch(INVOKE_ACTION) for a in actions) and any(
        _wildcard(r, False).fullmatch(method_arn) for r in resources
    )


def stringify(value: object) -> str:
    """A context value as API Gateway passes it on: ``True`` → ``"true"``, ``3`` → ``"3"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _context(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise AuthorizerConfigurationException("authorizer context must be a JSON object")
    context: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, (str, int, float, bool)):
            raise AuthorizerConfigurationException(
                f"authorizer context value {key!r} is a {type(value).__name__}; "
                "only strings, numbers and booleans are allowed"
            )
        context[str(key)] = stringify(value)
    return context


def evaluate(response: object, method_arn: str) -> Authorization:
    """The authorization an authorizer's answer grants, or the error API Gateway answers.

    A malformed answer → ``AuthorizerConfigurationException`` (500); a Deny, or no Allow on
    ``method_arn`` → ``ForbiddenException`` (403).
    """
    if not isinstance(response, Mapping):
        raise AuthorizerConfigurationException("authorizer answer must be a JSON object")
    principal = response.get("principalId")
    if not isinstance(principal, str) or not principal:
        raise AuthorizerConfigurationException("authorizer answer has no principalId string")
    document = response.get("policyDocument")
    statements = document.get("Statement") if isinstance(document, Mapping) else None
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list) or not all(isinstance(s, Mapping) for s in statements):
        raise AuthorizerConfigurationException(
            "authorizer answer needs policyDocument.Statement: a list of statements"
        )
    context = _context(response.get("context"))
    effects = [
        str(statement.get("Effect", "")).lower()
        for statement in statements
        if _matches(statement, method_arn)
    ]
    if "deny" in effects or "allow" not in effects:
        raise ForbiddenException()
    return Authorization(principal_id=principal, context=context)
