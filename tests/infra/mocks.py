"""Run a Pulumi program under ``pulumi.runtime.set_mocks`` and keep what it registered.

``run_program`` sets the config, installs ``RecordingMocks``, executes the program file, waits
for every resource registration and returns the resources (type, name, resolved inputs) and the
resolved stack outputs. Nothing talks to AWS or to a Pulumi engine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import runpy
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings
import yaml
from pulumi.runtime.mocks import MockMonitor

ACCOUNT = "123456789012"
REGION = "us-east-1"
API_ID = "a1b2c3d4e5"


@dataclass(frozen=True)
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    custom: bool
    id: str


@dataclass(frozen=True)
class Options:
    """The resource options the engine would act on at replacement and deletion."""

    delete_before_replace: bool
    retain_on_delete: bool


@dataclass
class ProgramRun:
    resources: list[Registered]
    outputs: dict[str, Any]
    dependencies: dict[str, set[str]]  # resource name → names of the resources it waits for
    options: dict[str, Options]  # resource name → its options
    error: BaseException | None = None

    def of_type(self, typ: str) -> list[Registered]:
        return [resource for resource in self.resources if resource.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Registered:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Answers each registration with the state AWS would compute (ids, ARNs, URLs)."""

    stack_outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    resources: list[Registered] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        state = dict(inputs)
        name = inputs.get("name") or f"{args.name}-1a2b3c4"
        resource_id = f"{args.name}-id"
        typ = args.typ
        if typ == "aws:dynamodb/table:Table":
            state.update(name=name, arn=_arn("dynamodb", f"table/{name}"))
            resource_id = name
        elif typ == "aws:sqs/queue:Queue":
            url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
            state.update(name=name, url=url, arn=_arn("sqs", name))
            resource_id = url
        elif typ == "aws:lambda/function:Function":
            arn = _arn("lambda", f"function:{name}")
            invoke = (
                f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"
            )
            state.update(name=name, arn=arn, invokeArn=invoke)
            resource_id = name
        elif typ == "aws:lambda/layerVersion:LayerVersion":
            state.update(arn=_arn("lambda", f"layer:{inputs['layerName']}:1"), version="1")
        elif typ == "aws:iam/role:Role":
            state.update(name=name, arn=f"arn:aws:iam::{ACCOUNT}:role/{name}")
            resource_id = name
        elif typ == "aws:iam/policy:Policy":
            state.update(name=name, arn=f"arn:aws:iam::{ACCOUNT}:policy/{name}")
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            state.update(name=name, arn=_arn("logs", f"log-group:{name}"))
            resource_id = name
        elif typ == "aws:apigatewayv2/api:Api":
            resource_id = API_ID
            state.update(
                apiEndpoint=f"wss://{API_ID}.execute-api.{REGION}.amazonaws.com",
                executionArn=_arn("execute-api", API_ID),
                arn=f"arn:aws:apigateway:{REGION}::/apis/{API_ID}",
            )
        elif typ == "aws:apigatewayv2/stage:Stage":
            resource_id = inputs["name"]
        elif typ == "aws:apigatewayv2/domainName:DomainName":
            resource_id = inputs["domainName"]
            configuration = dict(inputs.get("domainNameConfiguration") or {})
            configuration["targetDomainName"] = f"d-abc123.execute-api.{REGION}.amazonaws.com"
            state["domainNameConfiguration"] = configuration
        elif typ == "aws:sns/topic:Topic":
            state.update(name=name, arn=_arn("sns", name))
        elif typ == "pulumi:pulumi:StackReference":
            state["outputs"] = dict(self.stack_outputs.get(inputs["name"], {}))
            state["secretOutputNames"] = []
            resource_id = inputs["name"]
        else:
            state.setdefault("arn", _arn("mock", f"{typ.rsplit(':', 1)[-1]}/{args.name}"))
        self.resources.append(
            Registered(typ, args.name, inputs, state, custom=bool(args.custom), id=resource_id)
        )
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test"}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": REGION, "region": REGION, "id": REGION}, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        raise AssertionError(f"unexpected invoke {args.token}")


class RecordingMonitor(MockMonitor):
    """Also keeps each resource's dependencies (``depends_on`` and input outputs) and options."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.dependencies: dict[str, set[str]] = {}
        self.options: dict[str, Options] = {}

    def RegisterResource(self, request: Any) -> Any:
        names = {urn.rsplit("::", 1)[-1] for urn in request.dependencies}
        self.dependencies[request.name] = names
        self.options[request.name] = Options(
            delete_before_replace=bool(request.deleteBeforeReplace),
            retain_on_delete=bool(request.retainOnDelete),
        )
        return super().RegisterResource(request)


def config_from_stack_file(path: Path) -> dict[str, str]:
    """A stack file's values as Pulumi hands them to the program: text, arrays as JSON."""
    values = yaml.safe_load(path.read_text())["config"]
    return {key: _as_config_text(value) for key, value in values.items()}


def _as_config_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def run_program(
    program: Path,
    config: Mapping[str, str],
    *,
    project: str,
    stack: str,
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
    expect_error: bool = False,
) -> ProgramRun:
    """Run ``program`` (a Pulumi ``__main__.py``) under mocks with ``config``."""
    # Pulumi's mocks use ``asyncio.get_event_loop()``; an earlier ``asyncio.run`` in this process
    # (the client and local tests) leaves the main thread without a current loop.
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_all_config(dict(config))
    mocks = RecordingMocks(stack_outputs=stack_outputs or {})
    pulumi.runtime.settings.ROOT.set(None)  # a fresh Stack resource for this run
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    run = ProgramRun(
        resources=mocks.resources,
        outputs={},
        dependencies=monitor.dependencies,
        options=monitor.options,
    )

    @pulumi.runtime.test
    def execute() -> pulumi.Output[None] | None:
        try:
            runpy.run_path(str(program), run_name=f"{project}_program")
        except Exception as exc:
            if not expect_error:
                raise
            run.error = exc
            return None
        root = pulumi.runtime.get_root_resource()
        exported: dict[str, Any] = dict(getattr(root, "outputs", {}))
        return pulumi.Output.all(**exported).apply(run.outputs.update)

    try:
        execute()
    except Exception as exc:  # an error an output raised while the registrations completed
        if not expect_error:
            raise
        run.error = run.error or exc
    finally:
        collect_abandoned_coroutines()
    return run


def collect_abandoned_coroutines() -> None:
    """A failed run leaves Output coroutines that were never awaited. Collected later, during
    some unrelated ``compile()``, their RuntimeWarning breaks CPython 3.11's AST validation
    ("AST constructor recursion depth mismatch"); collected here, they are harmless."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()


def policy_documents(resources: Iterable[Registered]) -> dict[str, dict[str, Any]]:
    """Every IAM policy document registered (role policies, managed policies) by resource."""
    documents: dict[str, dict[str, Any]] = {}
    for resource in resources:
        if resource.typ in {"aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"}:
            documents[resource.name] = json.loads(resource.inputs["policy"])
    return documents


def trust_policies(resources: Iterable[Registered]) -> dict[str, dict[str, Any]]:
    return {
        resource.name: json.loads(resource.inputs["assumeRolePolicy"])
        for resource in resources
        if resource.typ == "aws:iam/role:Role"
    }
