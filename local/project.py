"""This project's wiring: its handlers as a route table, and the environment they read.

The handlers are named by module path, so nothing here imports them: the gateway loads them
when it starts, after ``handler_environment`` is in place (their configuration is read at
import, as in a Lambda cold start).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from local.aws import PROJECT_ROOT, AwsResources
from local.gateway.models import RouteTable
from local.tokens import LOCAL_AUDIENCE, LOCAL_ISSUER
from runtime import schema

PROJECT_FILE = PROJECT_ROOT / "Pulumi.yaml"


def config_default(key: str, project_file: Path = PROJECT_FILE) -> Any:
    """The default Pulumi.yaml gives config ``key``: what a deployed stack runs with."""
    config = yaml.safe_load(project_file.read_text())["config"]
    return config[key]["default"]


# The deployed functions' timeout and memory (Pulumi.yaml's defaults), not API Gateway's 29 s.
FUNCTION_TIMEOUT_SECONDS = float(config_default("lambdaTimeoutSeconds"))
FUNCTION_MEMORY_MB = int(config_default("lambdaMemoryMb"))

PROJECT_ROUTES = RouteTable(
    routes={
        route: schema.FUNCTION_HANDLERS[function]
        for route, function in schema.ROUTE_FUNCTIONS.items()
    },
    authorizer=schema.FUNCTION_HANDLERS[schema.AUTHORIZER_FUNCTION],
)
# The handlers' tunables: what the process's environment sets, else what a deployed stack runs with.
TUNABLES = {
    schema.ENV_MESSAGES_PER_MINUTE: "messagesPerMinute",
    schema.ENV_MAX_CONNECTIONS_PER_USER: "maxConnectionsPerUser",
    schema.ENV_AUTH_TOKEN_USE: "authTokenUse",
    schema.ENV_LOG_LEVEL: "logLevel",
}


def handler_environment(
    aws: AwsResources,
    *,
    management_endpoint: str,
    jwks_url: str,
    idle_timeout_seconds: float,
    env: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """The Lambda functions' environment variables, as the Pulumi program sets them in AWS.

    All four functions' at once, since local mode runs them in one process; the management
    endpoint (``$connect`` closes an instance's earlier connection through it) is also what
    ``MessageSender.from_env`` reads in the RAG stack's functions.
    """
    tunables = {name: env.get(name) or str(config_default(key)) for name, key in TUNABLES.items()}
    variables = {
        schema.ENV_CONNECTIONS_TABLE: aws.table_name,
        schema.ENV_CHAT_QUEUE_URL: aws.queue_url,
        schema.ENV_AUTH_ISSUER: LOCAL_ISSUER,
        schema.ENV_AUTH_AUDIENCE: LOCAL_AUDIENCE,
        schema.ENV_AUTH_JWKS_URL: jwks_url,
        # The row's TTL slides with the same idle timeout the gateway applies (whole seconds).
        schema.ENV_IDLE_TIMEOUT: str(max(1, math.ceil(idle_timeout_seconds))),
        schema.ENV_MANAGEMENT_ENDPOINT: management_endpoint,
        **tunables,
    }
    environment = schema.common_environment(tunables[schema.ENV_LOG_LEVEL])
    for function in schema.FUNCTION_VARIABLES:
        environment.update(schema.function_environment(function, variables))
    return environment
