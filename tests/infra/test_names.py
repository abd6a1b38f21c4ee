"""Two stacks in one account never collide, and a fixed name is replaced delete-first."""

from __future__ import annotations

import re

import pytest

from tests.infra.conftest import run_stack
from tests.infra.mocks import ProgramRun, Registered

# Inputs that set a resource's physical name.
NAME_INPUTS = ("name", "layerName", "dashboardName")
# Names the service requires unique (in the account, region or parent): replacing such a
# resource create-first would fail on its own name, so it is replaced delete-first.
UNIQUE_NAMES = {
    "aws:lambda/function:Function",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:sqs/queue:Queue",
    "aws:sns/topic:Topic",
    "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:cloudwatch/dashboard:Dashboard",
    "aws:cloudwatch/logMetricFilter:LogMetricFilter",
    "aws:apigatewayv2/domainName:DomainName",
}
# Fixed names that never collide with their own replacement: a layer's replacement is a new
# version of the same name; API Gateway does not require API or authorizer names to be unique;
# a stage is replaced only for another name or another API.
NO_COLLISION_ON_REPLACE = {
    "aws:lambda/layerVersion:LayerVersion",
    "aws:apigatewayv2/api:Api",
    "aws:apigatewayv2/authorizer:Authorizer",
    "aws:apigatewayv2/stage:Stage",
}


def _physical_names(run: ProgramRun) -> dict[str, Registered]:
    names = {}
    for resource in run.resources:
        if not resource.custom or resource.typ.startswith("pulumi:"):
            continue
        for key in NAME_INPUTS:
            if isinstance(resource.inputs.get(key), str):
                names[resource.inputs[key]] = resource
    return names


@pytest.fixture(scope="module")
def second_stack(build_dir: object) -> ProgramRun:
    """prod with dev's settings but its own stack name, in the same account and region."""
    return run_stack("prod", stageName="dev")


def test_two_stacks_share_no_physical_name(dev_run: ProgramRun, second_stack: ProgramRun) -> None:
    dev = _physical_names(dev_run)
    prod = _physical_names(second_stack)
    shared = set(dev) & set(prod)
    # The stage is named inside each stack's own API.
    assert {dev[name].typ for name in shared} <= {"aws:apigatewayv2/stage:Stage"}, shared


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_fixed_name_carries_the_stack(
    stack: str, dev_run: ProgramRun, prod_run: ProgramRun
) -> None:
    run = dev_run if stack == "dev" else prod_run
    for name, resource in _physical_names(run).items():
        if resource.typ in {
            "aws:apigatewayv2/stage:Stage",
            "aws:apigatewayv2/domainName:DomainName",
        }:
            continue  # a stage lives in this stack's API; a domain is the user's own name
        assert re.search(rf"rag-websocket-{stack}(-|$)", name), (resource.typ, name)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_unique_names_are_replaced_delete_first(
    stack: str, dev_run: ProgramRun, prod_run: ProgramRun
) -> None:
    run = dev_run if stack == "dev" else prod_run
    named = _physical_names(run).values()
    assert {r.typ for r in named} <= UNIQUE_NAMES | NO_COLLISION_ON_REPLACE, "classify new types"
    for resource in named:
        if resource.typ in UNIQUE_NAMES:
            assert run.options[resource.name].delete_before_replace, resource.name


def test_auto_named_resources_are_left_to_pulumi(dev_run: ProgramRun) -> None:
    """The table, the roles and the managed policies take Pulumi's random suffix."""
    table = dev_run.one("aws:dynamodb/table:Table")
    assert "name" not in table.inputs
    for typ in ("aws:iam/role:Role", "aws:iam/policy:Policy"):
        for resource in dev_run.of_type(typ):
            assert "name" not in resource.inputs, resource.name
