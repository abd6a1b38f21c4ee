"""The local stack the reliability tests attack, and the figures they measured (``figures.py``),
listed at the end of the run."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from local.gateway import AccessRecord
from local.stack import LocalStack, background_stack
from tests.reliability.figures import FIGURES_FILE, Figures, recorded


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not recorded:
        return
    terminalreporter.section("reliability figures")
    for section, figures in sorted(recorded.items()):
        terminalreporter.write_line(f"{section}: {json.dumps(figures, sort_keys=True)}")
    terminalreporter.write_line(f"(saved in {FIGURES_FILE})")


@pytest.fixture(scope="module", autouse=True)
def figures(request: pytest.FixtureRequest) -> Iterator[None]:
    """Records the module's ``Figures`` once its tests have run."""
    yield
    for value in vars(request.module).values():
        if isinstance(value, Figures):
            value.record()


@pytest.fixture(scope="module")
def access_log() -> list[AccessRecord]:
    """Every access-log record of the module's ``stack``."""
    return []


@pytest.fixture(scope="module")
def stack_environment() -> dict[str, str]:
    """Variables the handlers read when ``stack`` loads them; a module overrides it."""
    return {}


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    access_log: list[AccessRecord],
    stack_environment: dict[str, str],
) -> Iterator[LocalStack]:
    """Local mode without a responder (the queue keeps what was accepted), for one module."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in stack_environment.items():
            env.setenv(name, value)
        with background_stack(
            port=0,
            responder=None,
            state_dir=tmp_path_factory.mktemp(f"{request.module.__name__}-state"),
            access_log=access_log.append,
        ) as running:
            yield running
