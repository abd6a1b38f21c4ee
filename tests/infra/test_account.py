"""account/: the API Gateway CloudWatch role of one account and region, retained on delete."""

from __future__ import annotations

import json

import yaml

from components.api_gateway_account import ACCOUNT_PROJECT, ROLE_ARN_OUTPUT
from tests.infra.conftest import ACCOUNT_PROGRAM, ACCOUNT_STACK
from tests.infra.mocks import ACCOUNT, REGION, ProgramRun

ACCOUNT_SETTING = "aws:apigateway/account:Account"
LOGS = f"arn:aws:logs:{REGION}:{ACCOUNT}"


def test_account_is_its_own_pulumi_project_on_the_repository_venv() -> None:
    project = yaml.safe_load((ACCOUNT_PROGRAM.parent / "Pulumi.yaml").read_text())
    assert project["name"] == ACCOUNT_PROJECT
    assert ACCOUNT_STACK.split("/")[1] == ACCOUNT_PROJECT  # what the stages reference
    assert project["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": "../.venv"},
    }


def test_the_account_setting_names_the_role_and_is_exported(account_run: ProgramRun) -> None:
    setting = account_run.one(ACCOUNT_SETTING)
    role = account_run.one("aws:iam/role:Role")
    assert setting.inputs["cloudwatchRoleArn"] == role.state["arn"]
    assert account_run.outputs == {ROLE_ARN_OUTPUT: role.state["arn"]}
    # The setting is written only once the role may write logs (IAM before UpdateAccount).
    assert "api-gateway-cloudwatch-policy" in account_run.dependencies[setting.name]


def test_everything_is_retained_on_delete(account_run: ProgramRun) -> None:
    """pulumi-aws 7 resets the account setting when an Account is deleted; the setting and the
    role it names must outlive ``pulumi destroy`` of this stack, or every API in the region
    loses its access logs."""
    custom = [r for r in account_run.resources if r.custom]
    assert {r.typ for r in custom} == {
        ACCOUNT_SETTING,
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
    }
    for resource in custom:
        assert account_run.options[resource.name].retain_on_delete, resource.name


def test_the_role_is_trusted_by_api_gateway_and_writes_only_logs(account_run: ProgramRun) -> None:
    role = account_run.one("aws:iam/role:Role")
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    policy = json.loads(account_run.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    [grant] = policy["Statement"]
    assert all(action.startswith("logs:") for action in grant["Action"])
    assert grant["Resource"] == [f"{LOGS}:log-group:*", f"{LOGS}:log-group:*:log-stream:*"]
