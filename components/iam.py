"""IAM policy documents built from named statements: explicit actions on explicit resources.

Every document this project creates goes through ``policy_document``, which refuses a ``*``
action or a bare ``*`` resource, so least privilege is checked where policies are made and not
only in the tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pulumi

POLICY_VERSION = "2012-10-17"
LAMBDA_SERVICE = "lambda.amazonaws.com"
API_GATEWAY_SERVICE = "apigateway.amazonaws.com"


@dataclass(frozen=True)
class Statement:
    """One ``Allow`` statement; resources may be outputs of other resources."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[pulumi.Input[str], ...]


def allow(sid: str, actions: Sequence[str], resources: Sequence[pulumi.Input[str]]) -> Statement:
    for action in actions:
        if "*" in action or ":" not in action:
            raise ValueError(f"statement {sid}: {action!r} is not one explicit service:Action")
    if not actions or not resources:
        raise ValueError(f"statement {sid}: needs at least one action and one resource")
    for resource in resources:
        if isinstance(resource, str):
            _check_resource(sid, resource)
    return Statement(sid=sid, actions=tuple(actions), resources=tuple(resources))


def _check_resource(sid: str, resource: str) -> None:
    if resource.strip() == "*" or not resource.startswith("arn:"):
        raise ValueError(f"statement {sid}: {resource!r} is not a scoped ARN")


def _render(statement: Statement, resources: Sequence[str]) -> dict[str, object]:
    resources = list(resources)
    for resource in resources:  # outputs are known only now
        _check_resource(statement.sid, resource)
    return {
        "Sid": statement.sid,
        "Effect": "Allow",
        "Action": sorted(statement.actions),
        "Resource": resources if len(resources) > 1 else resources[0],
    }


def policy_document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    """The JSON policy document of ``statements``, once their resource ARNs are known."""
    if len({statement.sid for statement in statements}) != len(statements):
        raise ValueError("statement ids must be unique within a policy")
    rendered = [
        pulumi.Output.all(*statement.resources).apply(partial(_render, statement))
        for statement in statements
    ]
    return pulumi.Output.all(*rendered).apply(
        lambda parts: json.dumps({"Version": POLICY_VERSION, "Statement": list(parts)}, indent=2)
    )


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service assume the role."""
    return json.dumps(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        },
        indent=2,
    )
