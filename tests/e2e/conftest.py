"""The whole local stack (moto, gateway, this project's handlers, demo responder) on a free
loopback port, once per test module: the handlers' environment is restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.gateway import AccessRecord
from local.stack import LocalStack, background_stack
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-state")


@pytest.fixture(scope="module")
def access_log() -> list[AccessRecord]:
    return []


@pytest.fixture(scope="module")
def stack_options() -> dict[str, Any]:
    """Overridden by a module that needs other settings (a tiny idle timeout...)."""
    return {}


@pytest.fixture(scope="module")
def stack(
    state_dir: Path, access_log: list[AccessRecord], stack_options: dict[str, Any]
) -> Iterator[LocalStack]:
    with background_stack(
        port=0, state_dir=state_dir, access_log=access_log.append, **stack_options
    ) as running:
        yield running


@pytest.fixture(scope="module")
def store(stack: LocalStack) -> ConnectionStore:
    """The connections table, read the way the runtime reads it."""
    return ConnectionStore(StoreConfig(stack.aws.table_name), client=stack.aws.dynamodb())


@pytest.fixture(scope="module")
def management(stack: LocalStack) -> Any:
    return stack.aws.management_api(stack.management_endpoint)
