"""Fixtures of the infra tests: the Pulumi program run under mocks, once per stack shape.

The program's DependencyLayer would run pip on a cold cache; here the cache lives in a temporary
build directory (``RAG_WEBSOCKET_BUILD_DIR``) that is filled with a stand-in layer first, so no
infra test but ``test_layer_build.py`` ever runs pip.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # pulumi_aws announces a deprecated Lambda resource this project does not use, on import.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_aws.lambda_.microvms_image  # noqa: F401

from components.packaging import BUILD_DIR_ENV, LayerBuild, mark_complete
from components.settings import LambdaSettings
from tests.infra.mocks import (
    ACCOUNT,
    REGION,
    ProgramRun,
    config_from_stack_file,
    run_program,
)
from tests.support import PROJECT_ROOT

PROGRAM = PROJECT_ROOT / "__main__.py"
PROJECT = "rag-websocket"
ACCOUNT_PROGRAM = PROJECT_ROOT / "account" / "__main__.py"
ACCOUNT_PROJECT = "rag-websocket-account"
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example"
AUDIENCE = "example-app-client"
ACCOUNT_STACK = "acme/rag-websocket-account/us-east-1"
ACCOUNT_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/api-gateway-cloudwatch-role-1a2b3c4"
AUTH_CONFIG = {
    f"{PROJECT}:authIssuer": ISSUER,
    f"{PROJECT}:authAudience": AUDIENCE,
    f"{PROJECT}:accountStack": ACCOUNT_STACK,
}
# What the account stack (account/) exports once deployed.
DEPLOYED_ACCOUNT_STACK = {ACCOUNT_STACK: {"cloudWatchRoleArn": ACCOUNT_ROLE_ARN}}


def stack_config(stack: str, **overrides: str) -> dict[str, str]:
    """``Pulumi.<stack>.yaml`` plus the issuer every real stack must add, plus overrides
    (``key=value`` of ``rag-websocket:<key>``)."""
    config = config_from_stack_file(PROJECT_ROOT / f"Pulumi.{stack}.yaml")
    config.update(AUTH_CONFIG)
    config.update({f"{PROJECT}:{key}": value for key, value in overrides.items()})
    config.setdefault("aws:region", REGION)
    return config


def stand_in_layer(root: Path, architecture: str, runtime: str) -> Path:
    """A finished cache entry for ``architecture``/``runtime``: pip will not run for it."""
    settings = LambdaSettings(architecture, runtime, 256, 10, 14, "INFO")  # type: ignore[arg-type]
    directory = LayerBuild(architecture, settings.python_version).cache_dir(root)
    package = directory / "python" / "stand_in_dependency"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    mark_complete(directory)
    return directory


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("build")
    for architecture in ("arm64", "x86_64"):
        for runtime in ("python3.12", "python3.13"):
            stand_in_layer(root, architecture, runtime)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BUILD_DIR_ENV, str(root))
        yield root


def run_stack(
    stack: str,
    *,
    expect_error: bool = False,
    stack_outputs: dict[str, dict[str, Any]] | None = None,
    **overrides: str,
) -> ProgramRun:
    """The program with ``stack``'s config; the account stack is deployed unless
    ``stack_outputs`` says otherwise."""
    return run_program(
        PROGRAM,
        stack_config(stack, **overrides),
        project=PROJECT,
        stack=stack,
        stack_outputs=DEPLOYED_ACCOUNT_STACK if stack_outputs is None else stack_outputs,
        expect_error=expect_error,
    )


@pytest.fixture(scope="session")
def dev_run(build_dir: Path) -> ProgramRun:
    return run_stack("dev")


@pytest.fixture(scope="session")
def prod_run(build_dir: Path) -> ProgramRun:
    return run_stack(
        "prod",
        alarmEmail="oncall@example.com",
        customDomainName="chat-ws.example.com",
        certificateArn="arn:aws:acm:us-east-1:123456789012:certificate/0f3e6a52-1111-2222",
        lambdaArchitecture="x86_64",
        stageName="live",
    )


@pytest.fixture(scope="session")
def account_run() -> ProgramRun:
    """The account/ project, as ``pulumi up`` of its us-east-1 stack would run it."""
    return run_program(
        ACCOUNT_PROGRAM, {"aws:region": REGION}, project=ACCOUNT_PROJECT, stack=REGION
    )
