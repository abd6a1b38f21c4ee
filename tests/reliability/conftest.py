"""Lists the figures the reliability tests measured at the end of the run (``figures.py``)."""

from __future__ import annotations

import json

import pytest

from tests.reliability.figures import FIGURES_FILE, recorded


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not recorded:
        return
    terminalreporter.section("reliability figures")
    for section, figures in sorted(recorded.items()):
        terminalreporter.write_line(f"{section}: {json.dumps(figures, sort_keys=True)}")
    terminalreporter.write_line(f"(saved in {FIGURES_FILE})")
