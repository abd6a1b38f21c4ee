"""The API Gateway WebSocket API: routes, REQUEST authorizer, deployment, stage, access logs.

Each line here answers a trap of DESIGN §4: the authorizer sits on ``$connect`` only and reads
``route.request.querystring.token``; the stage sets BOTH throttling values (one alone leaves
the other at 0: every request 429); the deployment comes after the routes and is redone when
anything it snapshots changes; access logs need the account's CloudWatch role, which the
account stack owns (``components.api_gateway_account``); Lambda permissions are scoped to this
API (routes) and to the authorizer's own ARN.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.handler_function import HandlerFunction
from components.naming import physical_name
from runtime import schema

COMPONENT_TYPE = "rag-websocket:components:WebSocketApi"
PROTOCOL = "WEBSOCKET"
ROUTE_RESPONSE_SELECTION_EXPRESSION = "$default"
ROUTE_RESPONSE_KEY = "$default"
INTEGRATION_TIMEOUT_MS = schema.INTEGRATION_TIMEOUT_SECONDS * 1000
MAX_API_NAME_LENGTH = 128
# One JSON object per request; the fields DESIGN asks for plus what tells a failure's cause.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "connectionId": "$context.connectionId",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "integrationStatus": "$context.integration.status",
    "errorMessage": "$context.error.message",
    "integrationError": "$context.integration.error",
    "authorizerError": "$context.authorizer.error",
    "latency": "$context.integration.latency",
    "requestTimeEpoch": "$context.requestTimeEpoch",
    "sourceIp": "$context.identity.sourceIp",
    "messageId": "$context.messageId",
    # The 5xx metric filter of components.alarms keys its metric by these two.
    "apiId": "$context.apiId",
    "stage": "$context.stage",
}


@dataclass(frozen=True)
class WebSocketApiArgs:
    authorizer: HandlerFunction
    connect: HandlerFunction
    disconnect: HandlerFunction
    message: HandlerFunction
    stage_name: str
    throttle_burst_limit: int
    throttle_rate_limit: int
    log_retention_days: int
    # The account's CloudWatch role (from the account stack), or None for no access logs.
    account_role_arn: pulumi.Output[str] | None = None
    custom_domain_name: str = ""
    certificate_arn: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteSpec:
    key: str
    handler: str  # which HandlerFunction of the args serves it
    authorized: bool = False
    two_way: bool = False  # has a route response: the handler's body reaches the client


# The authorizer guards $connect only (DESIGN §4); only the message routes answer the client.
ROUTES = tuple(
    RouteSpec(
        key,
        function,
        authorized=key == schema.ROUTE_CONNECT,
        two_way=key in schema.MESSAGE_ROUTES,
    )
    for key, function in schema.ROUTE_FUNCTIONS.items()
)


def arn_prefix(arn: str, service: str) -> str:
    """``arn:aws:execute-api:eu-west-1:123…:abc`` → ``arn:aws:<service>:eu-west-1:123…``."""
    _, partition, _, region, account, *_ = arn.split(":")
    return f"arn:{partition}:{service}:{region}:{account}"


def _slug(route_key: str) -> str:
    return route_key.lstrip("$").replace("_", "-")


def format_management_endpoint(
    api_endpoint: pulumi.Input[str], stage_name: pulumi.Input[str]
) -> pulumi.Output[str]:
    """``https://{apiId}.execute-api.{region}.amazonaws.com/{stage}``: the management API of a
    stage, from the API's ``wss://`` endpoint. The management API is an AWS API signed with
    SigV4: its execute-api address works with or without a custom domain, so it stays on it."""
    return pulumi.Output.all(api_endpoint, stage_name).apply(
        lambda parts: f"{parts[0].replace('wss://', 'https://', 1)}/{parts[1]}"
    )


def _digest(snapshot: dict[str, object]) -> str:
    """sha256 of the resolved inputs; an ``*Args`` object serialises as its fields."""
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True, default=vars).encode()).hexdigest()


class WebSocketApi(pulumi.ComponentResource):
    api_id: pulumi.Output[str]
    execution_arn: pulumi.Output[str]
    region: pulumi.Output[str]
    stage_name: pulumi.Output[str]
    websocket_url: pulumi.Output[str]
    management_endpoint: pulumi.Output[str]
    handler_management_endpoint: pulumi.Output[str]
    access_log_group_name: pulumi.Output[str] | None = None  # set with access logs
    domain_target: pulumi.Output[str] | None = None  # set with a custom domain

    def __init__(
        self, name: str, args: WebSocketApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        self.api = aws.apigatewayv2.Api(
            name,
            name=physical_name("websocket", max_length=MAX_API_NAME_LENGTH),
            description="Real-time channel of the RAG chatbot",
            protocol_type=PROTOCOL,
            route_selection_expression=schema.ROUTE_SELECTION_EXPRESSION,
            tags=tags,
            opts=self._child,
        )
        # The same address for the API's own functions ($connect closes a client's previous
        # connection): from the Api resource and the stage's NAME, never the Stage resource,
        # which waits for the integrations, which wait for the functions.
        self.handler_management_endpoint = format_management_endpoint(
            self.api.api_endpoint, args.stage_name
        )
        # The inputs of everything a deployment snapshots (authorizer, integrations, routes,
        # route responses): the deployment is replaced whenever one of them changes, so the
        # stage never keeps serving an old identity source, timeout or route.
        self._snapshot: dict[str, object] = {}
        self._add_authorizer(args.authorizer)
        self._add_integrations(
            {"connect": args.connect, "disconnect": args.disconnect, "message": args.message}
        )
        self._add_routes()
        self._add_deployment()
        self._add_stage(args, tags)
        self._set_outputs(args, tags)

    def _add_authorizer(self, function: HandlerFunction) -> None:
        # WebSocket APIs take only Lambda REQUEST authorizers; the HTTP-only
        # fields (payload format, simple responses, JWT) stay unset.
        authorizer_inputs = aws.apigatewayv2.AuthorizerArgs(
            api_id=self.api.id,
            name=physical_name("authorizer", max_length=MAX_API_NAME_LENGTH),
            authorizer_type="REQUEST",
            authorizer_uri=function.invoke_arn,
            identity_sources=[schema.AUTHORIZER_IDENTITY_SOURCE],
        )
        self._snapshot["authorizer"] = authorizer_inputs
        self.authorizer = aws.apigatewayv2.Authorizer(
            f"{self._name}-authorizer", authorizer_inputs, opts=self._child
        )
        function.allow_api_gateway(
            "authorizer",
            pulumi.Output.all(self.api.execution_arn, self.authorizer.id).apply(
                lambda parts: f"{parts[0]}/authorizers/{parts[1]}"
            ),
        )

    def _add_integrations(self, functions: Mapping[str, HandlerFunction]) -> None:
        self.integrations: dict[str, aws.apigatewayv2.Integration] = {}
        for key, function in functions.items():
            integration_inputs = aws.apigatewayv2.IntegrationArgs(
                api_id=self.api.id,
                integration_type="AWS_PROXY",
                integration_method="POST",
                integration_uri=function.invoke_arn,
                timeout_milliseconds=INTEGRATION_TIMEOUT_MS,
            )
            self._snapshot[f"integration {key}"] = integration_inputs
            self.integrations[key] = aws.apigatewayv2.Integration(
                f"{self._name}-{key}-integration", integration_inputs, opts=self._child
            )
        for function in functions.values():
            function.allow_api_gateway(
                "routes", self.api.execution_arn.apply(lambda arn: f"{arn}/*/*")
            )

    def _add_routes(self) -> None:
        name, child = self._name, self._child
        self.routes: dict[str, aws.apigatewayv2.Route] = {}
        self.route_responses: dict[str, aws.apigatewayv2.RouteResponse] = {}
        for spec in ROUTES:
            integration = self.integrations[spec.handler]
            route_inputs = aws.apigatewayv2.RouteArgs(
                api_id=self.api.id,
                route_key=spec.key,
                target=integration.id.apply(
                    lambda integration_id: f"integrations/{integration_id}"
                ),
                authorization_type="CUSTOM" if spec.authorized else "NONE",
                authorizer_id=self.authorizer.id if spec.authorized else None,
                route_response_selection_expression=(
                    ROUTE_RESPONSE_SELECTION_EXPRESSION if spec.two_way else None
                ),
            )
            self._snapshot[f"route {spec.key}"] = route_inputs
            route = aws.apigatewayv2.Route(
                f"{name}-route-{_slug(spec.key)}", route_inputs, opts=child
            )
            self.routes[spec.key] = route
            if spec.two_way:
                response_inputs = aws.apigatewayv2.RouteResponseArgs(
                    api_id=self.api.id,
                    route_id=route.id,
                    route_response_key=ROUTE_RESPONSE_KEY,
                )
                self._snapshot[f"route response {spec.key}"] = response_inputs
                self.route_responses[spec.key] = aws.apigatewayv2.RouteResponse(
                    f"{name}-route-{_slug(spec.key)}-response", response_inputs, opts=child
                )

    def _add_deployment(self) -> None:
        self.deployment = aws.apigatewayv2.Deployment(
            f"{self._name}-deployment",
            api_id=self.api.id,
            description="routes, integrations and authorizer of rag-websocket",
            triggers={"redeployment": pulumi.Output.from_input(self._snapshot).apply(_digest)},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    self.authorizer,
                    *self.integrations.values(),
                    *self.routes.values(),
                    *self.route_responses.values(),
                ],
            ),
        )

    def _access_log_settings(
        self, args: WebSocketApiArgs, tags: dict[str, str]
    ) -> aws.apigatewayv2.StageAccessLogSettingsArgs | None:
        if args.account_role_arn is None:
            return None
        self.access_logs = aws.cloudwatch.LogGroup(
            f"{self._name}-access-logs",
            name=f"/aws/apigateway/{physical_name('websocket', max_length=MAX_API_NAME_LENGTH)}"
            f"/{args.stage_name}/access",
            retention_in_days=args.log_retention_days,
            tags=tags,
            # A fixed name: the old group must go before its replacement can exist.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.access_log_group_name = self.access_logs.name
        return aws.apigatewayv2.StageAccessLogSettingsArgs(
            # Waits for the account's role: without it the stage would fail to create.
            destination_arn=pulumi.Output.all(self.access_logs.arn, args.account_role_arn).apply(
                lambda parts: parts[0]
            ),
            format=json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")),
        )

    def _add_stage(self, args: WebSocketApiArgs, tags: dict[str, str]) -> None:
        self.stage = aws.apigatewayv2.Stage(
            f"{self._name}-stage",
            api_id=self.api.id,
            name=args.stage_name,
            deployment_id=self.deployment.id,
            auto_deploy=False,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=args.throttle_burst_limit,
                throttling_rate_limit=float(args.throttle_rate_limit),
                detailed_metrics_enabled=True,
                # Execution logs would go to a group API Gateway creates with no retention;
                # the access log carries the errors.
                logging_level="OFF",
                data_trace_enabled=False,
            ),
            access_log_settings=self._access_log_settings(args, tags),
            tags=tags,
            opts=self._child,
        )

    def _set_outputs(self, args: WebSocketApiArgs, tags: dict[str, str]) -> None:
        execution_arn = self.api.execution_arn
        self.api_id = self.api.id
        self.execution_arn = execution_arn
        self.region = execution_arn.apply(lambda arn: arn.split(":")[3])
        self.stage_name = self.stage.name
        # The output waits for the stage: the RAG stack reads it once the stage exists.
        self.management_endpoint = format_management_endpoint(
            self.api.api_endpoint, self.stage.name
        )
        if args.custom_domain_name:
            self.websocket_url = self._custom_domain(self._name, args, tags)
        else:
            self.websocket_url = pulumi.Output.all(self.api.api_endpoint, self.stage.name).apply(
                lambda parts: f"{parts[0]}/{parts[1]}"
            )
        self.register_outputs(
            {
                "apiId": self.api_id,
                "executionArn": self.execution_arn,
                "stageName": self.stage_name,
                "websocketUrl": self.websocket_url,
                "managementEndpoint": self.management_endpoint,
            }
        )

    def _custom_domain(
        self, name: str, args: WebSocketApiArgs, tags: dict[str, str]
    ) -> pulumi.Output[str]:
        domain = aws.apigatewayv2.DomainName(
            f"{name}-domain",
            domain_name=args.custom_domain_name,
            domain_name_configuration=aws.apigatewayv2.DomainNameDomainNameConfigurationArgs(
                certificate_arn=args.certificate_arn,
                endpoint_type="REGIONAL",
                security_policy="TLS_1_2",
            ),
            tags=tags,
            # A domain name exists once in a region: the old one must go first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        aws.apigatewayv2.ApiMapping(
            f"{name}-domain-mapping",
            api_id=self.api.id,
            domain_name=domain.id,
            stage=self.stage.id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The name a DNS record of the custom domain points at (CNAME / alias).
        self.domain_target = domain.domain_name_configuration.apply(
            lambda configuration: configuration.target_domain_name or ""
        )
        # Mapped at the domain's root (no mapping key): the stage is not in the URL.
        return domain.domain_name.apply(lambda domain_name: f"wss://{domain_name}")
