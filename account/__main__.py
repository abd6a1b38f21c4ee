"""rag-websocket-account: the API Gateway CloudWatch role of one account and region.

Deploy once per account and region (a stack per region, e.g. ``pulumi stack init us-east-1``),
before any rag-websocket stage; each stage reads ``cloudWatchRoleArn`` through its
``accountStack`` config. docs/deploy.md, "Deploy to AWS".
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi
import pulumi_aws as aws

# Pulumi runs this program from account/; the shared components live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.api_gateway_account import (
    ROLE_ARN_OUTPUT,
    ApiGatewayAccount,
    ApiGatewayAccountArgs,
)

tags = {"project": pulumi.get_project(), "stack": pulumi.get_stack()}
identity = aws.get_caller_identity_output()
partition = aws.get_partition_output()
region = aws.get_region_output()

account = ApiGatewayAccount(
    "api-gateway",
    ApiGatewayAccountArgs(
        partition=partition.partition,
        region=region.region,
        account_id=identity.account_id,
        tags=tags,
    ),
)

pulumi.export(ROLE_ARN_OUTPUT, account.role_arn)
