"""The local stack the reliability tests attack (tests/conftest.py's, without a responder), and
the figures they measured (``figures.py``), listed at the end of the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

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
def stack_options() -> dict[str, Any]:
    """No responder: the queue keeps what was accepted. Handlers on this process's threads:
    the faults are injected into their clients here."""
    return {"responder": None, "handler_processes": 0}
