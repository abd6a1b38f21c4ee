"""Reproducible measurements of rag-websocket: ``python -m benchmarks [name ...] [--quick]``.

Every comparison is a ratio measured side by side in one run, with medians over repeated runs:
the machines these run on are shared and noisy, so absolute numbers only describe that run.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
