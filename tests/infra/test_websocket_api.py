"""WebSocketApi: every trap of DESIGN §4 asserted on the resource inputs."""

from __future__ import annotations

import json

import pytest

from components import websocket_api
from components.api_gateway_account import AccountSettingsError
from components.settings import SettingsError, parse_settings
from components.websocket_api import ACCESS_LOG_FORMAT
from runtime import schema
from tests.infra.conftest import ACCOUNT_STACK, AUDIENCE, ISSUER, run_stack
from tests.infra.mocks import ProgramRun

API = "aws:apigatewayv2/api:Api"
ROUTE = "aws:apigatewayv2/route:Route"
ROUTE_RESPONSE = "aws:apigatewayv2/routeResponse:RouteResponse"
INTEGRATION = "aws:apigatewayv2/integration:Integration"
STAGE = "aws:apigatewayv2/stage:Stage"
DEPLOYMENT = "aws:apigatewayv2/deployment:Deployment"
HTTP_ONLY_AUTHORIZER_FIELDS = (
    "authorizerPayloadFormatVersion",
    "enableSimpleResponses",
    "jwtConfiguration",
    "authorizerResultTtlInSeconds",
)


def _routes(run: ProgramRun) -> dict[str, dict[str, object]]:
    return {route.inputs["routeKey"]: route.inputs for route in run.of_type(ROUTE)}


def test_websocket_api_selects_routes_by_action(dev_run: ProgramRun) -> None:
    api = dev_run.one(API).inputs
    assert api["protocolType"] == "WEBSOCKET"
    assert api["routeSelectionExpression"] == "$request.body.action"
    assert api["name"] == "rag-websocket-dev-websocket"


def test_request_authorizer_reads_the_token_query_parameter(dev_run: ProgramRun) -> None:
    authorizer = dev_run.one("aws:apigatewayv2/authorizer:Authorizer").inputs
    function = dev_run.one("aws:lambda/function:Function", "authorizer").state
    assert authorizer["authorizerType"] == "REQUEST"
    assert authorizer["identitySources"] == ["route.request.querystring.token"]
    assert authorizer["identitySources"] == [schema.AUTHORIZER_IDENTITY_SOURCE]
    assert authorizer["authorizerUri"] == function["invokeArn"]
    for field in HTTP_ONLY_AUTHORIZER_FIELDS:
        assert field not in authorizer, field


def test_integrations_are_lambda_proxy(dev_run: ProgramRun) -> None:
    integrations = {i.name: i.inputs for i in dev_run.of_type(INTEGRATION)}
    assert set(integrations) == {
        f"websocket-{name}-integration" for name in ("connect", "disconnect", "message")
    }
    for name, integration in integrations.items():
        function = dev_run.one("aws:lambda/function:Function", name.split("-")[1]).state
        assert integration["integrationType"] == "AWS_PROXY"
        assert integration["integrationMethod"] == "POST"
        assert integration["integrationUri"] == function["invokeArn"]
        assert integration["timeoutMilliseconds"] == 29_000


def test_routes_their_targets_and_authorization(dev_run: ProgramRun) -> None:
    routes = _routes(dev_run)
    assert set(routes) == {"$connect", "$disconnect", "chat_message", "ping", "$default"}
    integration_id = {i.name.split("-")[1]: i.id for i in dev_run.of_type(INTEGRATION)}
    authorizer_id = dev_run.one("aws:apigatewayv2/authorizer:Authorizer").id
    expected_target = {
        "$connect": "connect",
        "$disconnect": "disconnect",
        "chat_message": "message",
        "ping": "message",
        "$default": "message",
    }
    for key, handler in expected_target.items():
        assert routes[key]["target"] == f"integrations/{integration_id[handler]}", key
    assert routes["$connect"]["authorizationType"] == "CUSTOM"
    assert routes["$connect"]["authorizerId"] == authorizer_id
    for key in ("$disconnect", "chat_message", "ping", "$default"):
        assert routes[key]["authorizationType"] == "NONE", key  # authorizers: $connect only
        assert "authorizerId" not in routes[key], key


def test_message_routes_answer_through_a_route_response(dev_run: ProgramRun) -> None:
    routes = _routes(dev_run)
    route_ids = {r.inputs["routeKey"]: r.id for r in dev_run.of_type(ROUTE)}
    responses = {r.inputs["routeId"]: r.inputs for r in dev_run.of_type(ROUTE_RESPONSE)}
    for key in schema.MESSAGE_ROUTES:
        assert routes[key]["routeResponseSelectionExpression"] == "$default"
        assert responses[route_ids[key]]["routeResponseKey"] == "$default"
    assert len(responses) == len(schema.MESSAGE_ROUTES)
    for key in ("$connect", "$disconnect"):
        assert "routeResponseSelectionExpression" not in routes[key]


def test_deployment_comes_after_every_route_and_changes_with_them(dev_run: ProgramRun) -> None:
    deployment = dev_run.one(DEPLOYMENT)
    waits_for = dev_run.dependencies[deployment.name]
    parts = {r.name for r in dev_run.of_type(ROUTE)}
    parts |= {r.name for r in dev_run.of_type(ROUTE_RESPONSE)}
    parts |= {r.name for r in dev_run.of_type(INTEGRATION)}
    parts.add("websocket-authorizer")
    assert parts <= waits_for
    trigger = deployment.inputs["triggers"]["redeployment"]
    assert len(trigger) == 64  # a sha256 over the routes' spec and ids


def test_stage_sets_both_throttles_metrics_and_no_auto_deploy(dev_run: ProgramRun) -> None:
    stage = dev_run.one(STAGE)
    settings = stage.inputs["defaultRouteSettings"]
    assert settings["throttlingBurstLimit"] == 100
    assert settings["throttlingRateLimit"] == 50
    assert settings["detailedMetricsEnabled"] is True
    assert stage.inputs["name"] == "dev"
    assert stage.inputs["autoDeploy"] is False
    assert stage.inputs["deploymentId"] == dev_run.one(DEPLOYMENT).id
    assert "websocket-deployment" in dev_run.dependencies[stage.name]


def test_prod_throttles_and_stage_name(prod_run: ProgramRun) -> None:
    stage = prod_run.one(STAGE).inputs
    assert stage["defaultRouteSettings"]["throttlingBurstLimit"] == 1000
    assert stage["defaultRouteSettings"]["throttlingRateLimit"] == 500
    assert stage["name"] == "live"


def test_access_logs_are_json_with_the_fields_that_explain_a_failure(
    dev_run: ProgramRun,
) -> None:
    settings = dev_run.one(STAGE).inputs["accessLogSettings"]
    group = dev_run.one("aws:cloudwatch/logGroup:LogGroup", "websocket-access-logs")
    assert settings["destinationArn"] == group.state["arn"]
    assert group.inputs["retentionInDays"] == 14
    log_format = json.loads(settings["format"])
    assert log_format == ACCESS_LOG_FORMAT
    required = {
        "requestId": "$context.requestId",
        "connectionId": "$context.connectionId",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "integrationStatus": "$context.integration.status",
        "errorMessage": "$context.error.message",
        "latency": "$context.integration.latency",
    }
    assert required.items() <= log_format.items()


def test_stage_stacks_never_own_the_account_setting(
    dev_run: ProgramRun, prod_run: ProgramRun
) -> None:
    """The account setting is per account and region; pulumi-aws 7 resets it when an
    ``aws.apigateway.Account`` is deleted (the v6 docs announce it: "In a future major version
    of the provider, destroying the resource will reset account settings",
    https://www.pulumi.com/registry/packages/aws/api-docs/apigateway/account/), so a stage that
    owned it would break logging for every API in the region when destroyed."""
    for run in (dev_run, prod_run):
        assert not run.of_type("aws:apigateway/account:Account")
        assert not [r for r in run.of_type("aws:iam/role:Role") if "cloudwatch" in r.name]
        reference = run.one("pulumi:pulumi:StackReference")
        assert reference.inputs["name"] == ACCOUNT_STACK
        assert (
            run.one(STAGE).inputs["accessLogSettings"]["destinationArn"]
            == (run.one("aws:cloudwatch/logGroup:LogGroup", "websocket-access-logs").state["arn"])
        )
        # The stage waits for the account stack's role, through the reference.
        assert ACCOUNT_STACK in run.dependencies[run.one(STAGE).name]


def test_a_stage_without_its_account_stack_fails_saying_to_deploy_it(build_dir: object) -> None:
    """Where no CloudWatch role is set, API Gateway refuses a stage with access logs ("CloudWatch
    Logs role ARN must be set in account settings to enable logging"); the preview says why
    first, and what to do."""
    run = run_stack("prod", stack_outputs={ACCOUNT_STACK: {}}, expect_error=True)
    assert isinstance(run.error, AccountSettingsError)
    message = str(run.error)
    assert f"the account stack {ACCOUNT_STACK} has no cloudWatchRoleArn output" in message
    assert "deploy it first (cd account && pulumi stack select" in message
    assert "pulumi config set rag-websocket:accessLogs false" in message


def test_access_logs_can_be_turned_off_per_stage(build_dir: object) -> None:
    run = run_stack("prod", stack_outputs={}, accessLogs="false", accountStack="")
    assert run.error is None
    assert "accessLogSettings" not in run.one(STAGE).inputs
    assert not [g for g in run.of_type("aws:cloudwatch/logGroup:LogGroup") if "access" in g.name]
    assert not run.of_type("pulumi:pulumi:StackReference")


def test_access_logs_without_an_account_stack_are_refused_with_the_fix() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings({"authIssuer": ISSUER, "authAudience": AUDIENCE})
    message = str(caught.value)
    assert "rag-websocket:accountStack: is required while accessLogs is on" in message
    assert "deploy it first, or set accessLogs false" in message
    assert "fix: pulumi config set rag-websocket:accountStack " in message


def test_the_retired_key_says_where_the_role_went() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(
            {
                "authIssuer": ISSUER,
                "authAudience": AUDIENCE,
                "accountStack": ACCOUNT_STACK,
                "manageApiGatewayAccount": "true",
            }
        )
    message = str(caught.value)
    assert "manageApiGatewayAccount is retired: the account stack (account/) owns" in message
    assert "moving the account setting" in message
    assert "fix: pulumi config rm rag-websocket:manageApiGatewayAccount" in message


def test_custom_domain_maps_the_stage_and_becomes_the_url(
    dev_run: ProgramRun, prod_run: ProgramRun
) -> None:
    assert not dev_run.of_type("aws:apigatewayv2/domainName:DomainName")
    domain = prod_run.one("aws:apigatewayv2/domainName:DomainName").inputs
    assert domain["domainName"] == "chat-ws.example.com"
    assert domain["domainNameConfiguration"] == {
        "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0f3e6a52-1111-2222",
        "endpointType": "REGIONAL",
        "securityPolicy": "TLS_1_2",
    }
    mapping = prod_run.one("aws:apigatewayv2/apiMapping:ApiMapping").inputs
    assert mapping["apiId"] == prod_run.one(API).id
    assert mapping["domainName"] == "chat-ws.example.com"
    assert mapping["stage"] == "live"
    assert "apiMappingKey" not in mapping
    assert prod_run.outputs["websocketUrl"] == "wss://chat-ws.example.com"


def _trigger(run: ProgramRun) -> str:
    return str(run.one(DEPLOYMENT).inputs["triggers"]["redeployment"])


@pytest.mark.parametrize(
    ("what", "module", "attribute", "value"),
    [
        ("identity source", schema, "AUTHORIZER_IDENTITY_SOURCE", "route.request.header.Auth"),
        ("integration timeout", websocket_api, "INTEGRATION_TIMEOUT_MS", 20_000),
        (
            "route settings",
            websocket_api,
            "ROUTE_RESPONSE_SELECTION_EXPRESSION",
            "$integration.response.statuscode",
        ),
        ("route response", websocket_api, "ROUTE_RESPONSE_KEY", "$default-v2"),
    ],
)
def test_every_change_the_deployment_snapshots_redeploys(
    dev_run: ProgramRun,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
    module: object,
    attribute: str,
    value: object,
) -> None:
    """A Deployment is a snapshot of the API's routes, integrations and authorizer; a stage
    keeps serving the old snapshot until a new Deployment exists. Ids alone do not change when
    an identity source, a timeout or a route's settings do, so the trigger hashes every input."""
    assert _trigger(run_stack("dev")) == _trigger(dev_run)  # nothing changed, no redeploy
    monkeypatch.setattr(module, attribute, value)
    changed = run_stack("dev")
    assert _trigger(changed) != _trigger(dev_run), what


def test_a_new_route_redeploys(dev_run: ProgramRun, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = websocket_api.RouteSpec("typing", "message", two_way=False)
    monkeypatch.setattr(websocket_api, "ROUTES", (*websocket_api.ROUTES, extra))
    assert _trigger(run_stack("dev")) != _trigger(dev_run)
