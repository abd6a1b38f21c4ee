"""HandlerFunction: handler path, environment, layer, log group, code archive, permissions."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pulumi
import pytest

from components.packaging import package_files
from runtime import schema
from tests.infra.conftest import AUDIENCE, ISSUER
from tests.infra.mocks import ACCOUNT, API_ID, REGION, ProgramRun

FUNCTION = "aws:lambda/function:Function"
HANDLERS = ("authorizer", "connect", "disconnect", "message")
COMMON_ENV = {
    schema.ENV_LOG_LEVEL,
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
}
# What each handler reads (runtime.config), and nothing else.
EXPECTED_ENV = {
    "authorizer": {
        schema.ENV_AUTH_ISSUER,
        schema.ENV_AUTH_AUDIENCE,
        schema.ENV_AUTH_JWKS_URL,
        schema.ENV_AUTH_TOKEN_USE,
    },
    "connect": {
        schema.ENV_CONNECTIONS_TABLE,
        schema.ENV_MANAGEMENT_ENDPOINT,  # closes the same client's previous connection
        schema.ENV_IDLE_TIMEOUT,
        schema.ENV_MAX_CONNECTIONS_PER_USER,
        schema.ENV_MESSAGES_PER_MINUTE,
    },
    "disconnect": {schema.ENV_CONNECTIONS_TABLE},
    "message": {
        schema.ENV_CONNECTIONS_TABLE,
        schema.ENV_CHAT_QUEUE_URL,
        schema.ENV_IDLE_TIMEOUT,
        schema.ENV_MESSAGES_PER_MINUTE,
    },
}
EXECUTION_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"


@pytest.mark.parametrize("name", HANDLERS)
def test_handler_points_at_a_handler_function_of_the_runtime(
    dev_run: ProgramRun, name: str
) -> None:
    function = dev_run.one(FUNCTION, name).inputs
    module, attribute = function["handler"].rsplit(".", 1)
    assert module == f"runtime.handlers.{name}"
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    assert any(isinstance(node, ast.FunctionDef) and node.name == attribute for node in tree.body)


@pytest.mark.parametrize("name", HANDLERS)
def test_function_settings_come_from_the_stack(dev_run: ProgramRun, name: str) -> None:
    function = dev_run.one(FUNCTION, name).inputs
    assert function["name"] == f"rag-websocket-dev-{name}"
    assert function["runtime"] == "python3.13"
    assert function["architectures"] == ["arm64"]
    assert function["memorySize"] == 256
    assert function["timeout"] == 10
    layer = dev_run.one("aws:lambda/layerVersion:LayerVersion", "packages-dependencies")
    assert function["layers"] == [layer.state["arn"]]
    assert function["loggingConfig"]["logGroup"] == f"/aws/lambda/rag-websocket-dev-{name}"


def test_prod_functions_follow_prod_settings(prod_run: ProgramRun) -> None:
    function = prod_run.one(FUNCTION, "message").inputs
    assert function["architectures"] == ["x86_64"]
    assert function["memorySize"] == 512
    assert function["environment"]["variables"][schema.ENV_LOG_LEVEL] == "INFO"


@pytest.mark.parametrize("name", HANDLERS)
def test_each_function_gets_only_the_variables_it_reads(dev_run: ProgramRun, name: str) -> None:
    variables = dev_run.one(FUNCTION, name).inputs["environment"]["variables"]
    assert set(variables) == EXPECTED_ENV[name] | COMMON_ENV
    assert variables["POWERTOOLS_SERVICE_NAME"] == schema.service_name("dev")
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == schema.METRICS_NAMESPACE
    assert variables[schema.ENV_LOG_LEVEL] == "DEBUG"  # Pulumi.dev.yaml


def test_variable_values(dev_run: ProgramRun) -> None:
    table = dev_run.one("aws:dynamodb/table:Table").state["name"]
    queue = dev_run.one("aws:sqs/queue:Queue", "chat").state["url"]
    authorizer = dev_run.one(FUNCTION, "authorizer").inputs["environment"]["variables"]
    assert authorizer[schema.ENV_AUTH_ISSUER] == ISSUER
    assert authorizer[schema.ENV_AUTH_AUDIENCE] == AUDIENCE
    assert authorizer[schema.ENV_AUTH_JWKS_URL] == f"{ISSUER}/.well-known/jwks.json"
    connect = dev_run.one(FUNCTION, "connect").inputs["environment"]["variables"]
    assert connect[schema.ENV_CONNECTIONS_TABLE] == table
    assert connect[schema.ENV_IDLE_TIMEOUT] == "600"
    assert connect[schema.ENV_MAX_CONNECTIONS_PER_USER] == "10"
    assert connect[schema.ENV_MESSAGES_PER_MINUTE] == "60"
    assert connect[schema.ENV_MANAGEMENT_ENDPOINT] == dev_run.outputs["managementEndpoint"]
    message = dev_run.one(FUNCTION, "message").inputs["environment"]["variables"]
    assert message[schema.ENV_CHAT_QUEUE_URL] == queue


@pytest.mark.parametrize("name", HANDLERS)
def test_log_group_exists_first_with_the_retention(dev_run: ProgramRun, name: str) -> None:
    group = dev_run.one("aws:cloudwatch/logGroup:LogGroup", f"{name}-logs").inputs
    assert group["name"] == f"/aws/lambda/rag-websocket-dev-{name}"
    assert group["retentionInDays"] == 14
    assert {f"{name}-logs", f"{name}-policy"} <= dev_run.dependencies[name]


def test_prod_log_retention(prod_run: ProgramRun) -> None:
    groups = prod_run.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert groups
    assert {group.inputs["retentionInDays"] for group in groups} == {365}


def _archive_files(archive: pulumi.FileArchive) -> set[str]:
    root = Path(archive.path)
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_code_archive_holds_only_the_runtime_package(dev_run: ProgramRun) -> None:
    codes = {dev_run.one(FUNCTION, name).inputs["code"].path for name in HANDLERS}
    assert len(codes) == 1  # one archive for the four handlers
    files = _archive_files(dev_run.one(FUNCTION, "connect").inputs["code"])
    source = Path(importlib.util.find_spec("runtime").origin or "").parent  # type: ignore[union-attr]
    assert files == {
        f"runtime/{path.relative_to(source).as_posix()}" for path in package_files(source)
    }
    assert "runtime/handlers/connect.py" in files
    assert "runtime/schema.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or "tests/" in f]


def test_api_gateway_may_invoke_only_from_this_api(dev_run: ProgramRun) -> None:
    permissions = {p.name: p.inputs for p in dev_run.of_type("aws:lambda/permission:Permission")}
    authorizer_id = dev_run.one("aws:apigatewayv2/authorizer:Authorizer").id
    assert set(permissions) == {
        "authorizer-invoke-authorizer",
        "connect-invoke-routes",
        "disconnect-invoke-routes",
        "message-invoke-routes",
    }
    for name, permission in permissions.items():
        assert permission["action"] == "lambda:InvokeFunction"
        assert permission["principal"] == "apigateway.amazonaws.com"
        function = name.split("-")[0]
        assert permission["function"] == f"rag-websocket-dev-{function}"
    assert permissions["authorizer-invoke-authorizer"]["sourceArn"] == (
        f"{EXECUTION_ARN}/authorizers/{authorizer_id}"
    )
    for function in ("connect", "disconnect", "message"):
        assert permissions[f"{function}-invoke-routes"]["sourceArn"] == f"{EXECUTION_ARN}/*/*"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_connect_reads_the_management_endpoint_of_the_output(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """The same address the stack exports, also with prod's custom domain and stage name."""
    run: ProgramRun = request.getfixturevalue(f"{stack}_run")
    variables = run.one(FUNCTION, "connect").inputs["environment"]["variables"]
    stage = run.one("aws:apigatewayv2/stage:Stage").inputs["name"]
    endpoint = f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/{stage}"
    assert variables[schema.ENV_MANAGEMENT_ENDPOINT] == endpoint
    assert run.outputs["managementEndpoint"] == endpoint


def test_connect_waits_for_the_api_but_not_for_its_stage(dev_run: ProgramRun) -> None:
    """connect's endpoint and DeleteConnection grant come from the Api and the stage's name:
    the stage waits for the integrations, which wait for connect (a cycle otherwise)."""
    for name in ("connect", "connect-policy"):
        waits_for = dev_run.dependencies[name]
        assert "websocket" in waits_for, name
        assert not {"websocket-stage", "websocket-deployment"} & waits_for, name
    integration = dev_run.one(
        "aws:apigatewayv2/integration:Integration", "websocket-connect-integration"
    )
    assert "connect" in dev_run.dependencies[integration.name]
