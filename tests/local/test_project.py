"""Local mode's wiring is the Pulumi program's: the same routes, the same environment."""

from __future__ import annotations

from local.aws import AwsResources
from local.project import PROJECT_ROUTES, handler_environment
from runtime import schema

AWS = AwsResources(
    endpoint_url="http://127.0.0.1:9",
    region="us-east-1",
    table_name="connections",
    queue_url="http://127.0.0.1:9/queue.fifo",
    queue_arn="arn:aws:sqs:us-east-1:123456789012:queue.fifo",
    dead_letter_queue_url="http://127.0.0.1:9/dlq.fifo",
)


def _environment(env: dict[str, str]) -> dict[str, str]:
    return handler_environment(
        AWS,
        management_endpoint="http://127.0.0.1:9/local",
        jwks_url="http://127.0.0.1:9/.well-known/jwks.json",
        idle_timeout_seconds=600,
        env=env,
    )


def test_every_function_gets_what_it_gets_in_aws_including_log_level_and_powertools() -> None:
    environment = _environment({})
    wanted = set(schema.common_environment("INFO"))
    for names in schema.FUNCTION_VARIABLES.values():
        wanted.update(names)
    assert wanted <= set(environment)
    assert environment[schema.ENV_LOG_LEVEL] == "INFO"
    assert environment[schema.ENV_POWERTOOLS_SERVICE_NAME] == schema.SERVICE_NAME
    assert environment[schema.ENV_MESSAGES_PER_MINUTE] == str(schema.DEFAULT_MESSAGES_PER_MINUTE)


def test_a_tunable_the_process_sets_wins_over_the_stack_default() -> None:
    environment = _environment(
        {schema.ENV_MESSAGES_PER_MINUTE: "100000", schema.ENV_LOG_LEVEL: "DEBUG"}
    )
    assert environment[schema.ENV_MESSAGES_PER_MINUTE] == "100000"
    assert environment[schema.ENV_LOG_LEVEL] == "DEBUG"


def test_the_routes_are_the_deployed_ones() -> None:
    assert set(PROJECT_ROUTES.routes) == set(schema.ROUTE_FUNCTIONS)
    assert PROJECT_ROUTES.authorizer == schema.FUNCTION_HANDLERS[schema.AUTHORIZER_FUNCTION]
