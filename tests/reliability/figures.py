"""The figures the reliability tests measured, kept for docs/reliability.md.

A test module counts (inputs fuzzed, attacks, faults) in a module-level ``Figures(section)``,
recorded when the module is done (``conftest.py``), or records a run's figures itself with
``record(section, **figures)``; they are merged into ``.build/reliability/figures.json`` (one
section per test, last run wins) and listed at the end of the pytest run.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from tests.support import PROJECT_ROOT

FIGURES_FILE = PROJECT_ROOT / ".build" / "reliability" / "figures.json"
_lock = threading.Lock()
recorded: dict[str, dict[str, Any]] = {}  # this session's, for the terminal summary


def record(section: str, **figures: Any) -> None:
    with _lock:
        recorded[section] = figures
        FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
        saved: dict[str, Any] = {}
        if FIGURES_FILE.exists():
            try:
                saved = json.loads(FIGURES_FILE.read_text())
            except ValueError:
                saved = {}
        saved[section] = figures
        FIGURES_FILE.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


class Figures(Counter[str]):
    """A module's counts, recorded under ``section`` once the module has run."""

    def __init__(self, section: str) -> None:
        super().__init__()
        self.section = section

    def record(self) -> None:
        record(self.section, **self)
