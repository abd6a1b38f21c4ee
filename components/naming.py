"""Physical names of the resources that need a fixed one (functions, queues, layers, API).

A Lambda function's log group must exist before the function, under ``/aws/lambda/<name>``, so
the function's name cannot be left to auto-naming. ``<project>-<stack>-<part>`` keeps two stacks
of the project apart in one account.
"""

from __future__ import annotations

import re

import pulumi

_ALLOWED = re.compile(r"^[A-Za-z0-9_-]+$")


def physical_name(part: str, *, max_length: int, suffix: str = "") -> str:
    """``rag-websocket-dev-connect`` (plus ``suffix``, e.g. ``.fifo``), checked against the
    service's length limit."""
    name = f"{pulumi.get_project()}-{pulumi.get_stack()}-{part}"
    if not _ALLOWED.fullmatch(name):
        raise ValueError(
            f"resource name {name!r} may hold only letters, digits, '-' and '_'; "
            "rename the stack (pulumi stack rename) to such a name"
        )
    if len(name) + len(suffix) > max_length:
        raise ValueError(
            f"resource name {name + suffix!r} is over {max_length} characters; "
            "use a shorter stack name (pulumi stack rename)"
        )
    return name + suffix
