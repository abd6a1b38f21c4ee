"""How hard a run measures: ``full`` (``make bench``), ``quick`` (< 2 min) or ``smoke`` (tests)."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    FULL = "full"
    QUICK = "quick"
    SMOKE = "smoke"  # checks the harness and the counts; its timings mean nothing

    def pick(self, full: int, quick: int, smoke: int) -> int:
        """The figure (rounds, clients, seconds...) this mode uses."""
        return {Mode.FULL: full, Mode.QUICK: quick, Mode.SMOKE: smoke}[self]
