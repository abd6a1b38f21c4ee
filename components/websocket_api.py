"""The API Gateway WebSocket API: routes, REQUEST authorizer, deployment, stage, access logs.

Each line here answers a trap of DESIGN §4: the authorizer sits on ``$connect`` only and reads
``route.request.querystring.token``; the stage sets BOTH throttling values (one alone leaves
the other at 0: every request 429); the deployment comes after the routes and is redone when
they change; access logs need the account's CloudWatch role (``manageApiGatewayAccount``);
Lambda permissions are scoped to this API (routes) and to the authorizer's own ARN.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import pulumi
import pulumi_aws as aws

from components.handler_function import HandlerFunction
from components.iam import API_GATEWAY_SERVICE, allow, assume_role_policy, policy_document
from components.naming import physical_name
from runtime import schema

COMPONENT_TYPE = "rag-websocket:components:WebSocketApi"
PROTOCOL = "WEBSOCKET"
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
}
# What API Gateway needs to write access logs anywhere in the account and region (the same
# permissions as the AWS managed AmazonAPIGatewayPushToCloudWatchLogs, minus its "*").
ACCOUNT_LOG_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
)


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
    manage_api_gateway_account: bool = False
    custom_domain_name: str = ""
    certificate_arn: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteSpec:
    key: str
    handler: str  # which HandlerFunction of the args serves it
    authorized: bool = False
    two_way: bool = False  # has a route response: the handler's body reaches the client


ROUTES = (
    RouteSpec(schema.ROUTE_CONNECT, "connect", authorized=True),
    RouteSpec(schema.ROUTE_DISCONNECT, "disconnect"),
    *(RouteSpec(key, "message", two_way=True) for key in schema.MESSAGE_ROUTES),
)


def arn_prefix(arn: str, service: str) -> str:
    """``arn:aws:execute-api:eu-west-1:123…:abc`` → ``arn:aws:<service>:eu-west-1:123…``."""
    _, partition, _, region, account, *_ = arn.split(":")
    return f"arn:{partition}:{service}:{region}:{account}"


def _slug(route_key: str) -> str:
    return route_key.lstrip("$").replace("_", "-")


class WebSocketApi(pulumi.ComponentResource):
    api_id: pulumi.Output[str]
    execution_arn: pulumi.Output[str]
    region: pulumi.Output[str]
    stage_name: pulumi.Output[str]
    websocket_url: pulumi.Output[str]
    management_endpoint: pulumi.Output[str]
    access_log_group_name: pulumi.Output[str]
    domain_target: pulumi.Output[str] | None = None  # set with a custom domain

    def __init__(
        self, name: str, args: WebSocketApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        handlers = {
            "connect": args.connect,
            "disconnect": args.disconnect,
            "message": args.message,
        }

        self.api = aws.apigatewayv2.Api(
            name,
            name=physical_name("websocket", max_length=MAX_API_NAME_LENGTH),
            description="Real-time channel of the RAG chatbot",
            protocol_type=PROTOCOL,
            route_selection_expression=schema.ROUTE_SELECTION_EXPRESSION,
            tags=tags,
            opts=child,
        )
        execution_arn = self.api.execution_arn

        # WebSocket APIs take only Lambda REQUEST authorizers; the HTTP-only
        # fields (payload format, simple responses, JWT) stay unset.
        self.authorizer = aws.apigatewayv2.Authorizer(
            f"{name}-authorizer",
            api_id=self.api.id,
            name=physical_name("authorizer", max_length=MAX_API_NAME_LENGTH),
            authorizer_type="REQUEST",
            authorizer_uri=args.authorizer.invoke_arn,
            identity_sources=[schema.AUTHORIZER_IDENTITY_SOURCE],
            opts=child,
        )
        args.authorizer.allow_api_gateway(
            "authorizer",
            pulumi.Output.all(execution_arn, self.authorizer.id).apply(
                lambda parts: f"{parts[0]}/authorizers/{parts[1]}"
            ),
        )

        self.integrations = {
            key: aws.apigatewayv2.Integration(
                f"{name}-{key}-integration",
                api_id=self.api.id,
                integration_type="AWS_PROXY",
                integration_method="POST",
                integration_uri=function.invoke_arn,
                timeout_milliseconds=INTEGRATION_TIMEOUT_MS,
                opts=child,
            )
            for key, function in handlers.items()
        }
        for function in handlers.values():
            function.allow_api_gateway("routes", execution_arn.apply(lambda arn: f"{arn}/*/*"))

        self.routes: dict[str, aws.apigatewayv2.Route] = {}
        self.route_responses: dict[str, aws.apigatewayv2.RouteResponse] = {}
        for spec in ROUTES:
            integration = self.integrations[spec.handler]
            route = aws.apigatewayv2.Route(
                f"{name}-route-{_slug(spec.key)}",
                api_id=self.api.id,
                route_key=spec.key,
                target=integration.id.apply(
                    lambda integration_id: f"integrations/{integration_id}"
                ),
                authorization_type="CUSTOM" if spec.authorized else "NONE",
                authorizer_id=self.authorizer.id if spec.authorized else None,
                route_response_selection_expression=ROUTE_RESPONSE_KEY if spec.two_way else None,
                opts=child,
            )
            self.routes[spec.key] = route
            if spec.two_way:
                self.route_responses[spec.key] = aws.apigatewayv2.RouteResponse(
                    f"{name}-route-{_slug(spec.key)}-response",
                    api_id=self.api.id,
                    route_id=route.id,
                    route_response_key=ROUTE_RESPONSE_KEY,
                    opts=child,
                )

        # After every route, and replaced whenever one of them, their integrations or the
        # authorizer changes: a stage then serves the new routes, never a half-made API.
        route_parts = [
            self.authorizer.id,
            *(integration.id for integration in self.integrations.values()),
            *(integration.integration_uri for integration in self.integrations.values()),
            *(route.id for route in self.routes.values()),
            *(response.id for response in self.route_responses.values()),
        ]
        self.deployment = aws.apigatewayv2.Deployment(
            f"{name}-deployment",
            api_id=self.api.id,
            description="routes, integrations and authorizer of rag-websocket",
            triggers={
                "redeployment": pulumi.Output.all(*route_parts).apply(
                    lambda parts: hashlib.sha256(
                        json.dumps([[asdict(spec) for spec in ROUTES], parts]).encode()
                    ).hexdigest()
                )
            },
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

        self.access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=f"/aws/apigateway/{physical_name('websocket', max_length=MAX_API_NAME_LENGTH)}"
            f"/{args.stage_name}/access",
            retention_in_days=args.log_retention_days,
            tags=tags,
            opts=child,
        )
        stage_dependencies: list[pulumi.Resource] = []
        if args.manage_api_gateway_account:
            stage_dependencies.append(self._account_logging_role(name, execution_arn, tags))

        self.stage = aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=self.api.id,
            name=args.stage_name,
            deployment_id=self.deployment.id,
            auto_deploy=False,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=args.throttle_burst_limit,
                throttling_rate_limit=float(args.throttle_rate_limit),
                detailed_metrics_enabled=True,
                # Execution logs would go to a group API Gateway creates with no retention;
                # the access log below carries the errors.
                logging_level="OFF",
                data_trace_enabled=False,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=self.access_logs.arn,
                format=json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")),
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=stage_dependencies),
        )

        self.api_id = self.api.id
        self.execution_arn = execution_arn
        self.region = execution_arn.apply(lambda arn: arn.split(":")[3])
        self.stage_name = self.stage.name
        self.access_log_group_name = self.access_logs.name
        # The management API is an AWS API signed with SigV4: its execute-api address works
        # with or without a custom domain, so the endpoint stays on it.
        self.management_endpoint = pulumi.Output.all(self.api.api_endpoint, self.stage.name).apply(
            lambda parts: f"{parts[0].replace('wss://', 'https://', 1)}/{parts[1]}"
        )
        if args.custom_domain_name:
            self.websocket_url = self._custom_domain(name, args, tags)
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

    def _account_logging_role(
        self, name: str, execution_arn: pulumi.Output[str], tags: dict[str, str]
    ) -> aws.apigateway.Account:
        """The account-and-region CloudWatch role API Gateway writes access logs with."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-cloudwatch-role",
            assume_role_policy=assume_role_policy(API_GATEWAY_SERVICE),
            description="API Gateway account role: write API access logs to CloudWatch Logs",
            tags=tags,
            opts=child,
        )
        logs = execution_arn.apply(lambda arn: arn_prefix(arn, "logs"))
        self.account_policy_document = policy_document(
            [
                allow(
                    "ApiGatewayAccessLogs",
                    ACCOUNT_LOG_ACTIONS,
                    [
                        logs.apply(lambda prefix: f"{prefix}:log-group:*"),
                        logs.apply(lambda prefix: f"{prefix}:log-group:*:log-stream:*"),
                    ],
                )
            ]
        )
        policy = aws.iam.RolePolicy(
            f"{name}-cloudwatch-policy",
            role=role.id,
            policy=self.account_policy_document,
            opts=child,
        )
        return aws.apigateway.Account(
            f"{name}-account",
            cloudwatch_role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
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
            opts=pulumi.ResourceOptions(parent=self),
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
