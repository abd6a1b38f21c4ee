"""The README's config table, generated from Pulumi.yaml's ``config:`` block.

``python -m tests.infra.readme_tables`` prints the table to paste between the
``<!-- config-table -->`` and ``<!-- /config-table -->`` markers of README.md; the test
``test_infra_readme.py`` fails when the two drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_MARKER = "<!-- config-table -->"
CONFIG_END_MARKER = "<!-- /config-table -->"
OUTPUTS_MARKER = "<!-- outputs-table -->"
OUTPUTS_END_MARKER = "<!-- /outputs-table -->"


def _default(value: Any) -> str:
    if value == "":
        return '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def config_table(project_file: Path = PROJECT_ROOT / "Pulumi.yaml") -> str:
    declared: dict[str, dict[str, Any]] = yaml.safe_load(project_file.read_text())["config"]
    lines = [
        "| key (`rag-websocket:`…) | type | default | description |",
        "|---|---|---|---|",
    ]
    for key, declaration in declared.items():
        description = " ".join(str(declaration["description"]).split()).replace("|", "\\|")
        lines.append(
            f"| `{key}` | {declaration['type']} | {_default(declaration['default'])} "
            f"| {description} |"
        )
    return "\n".join(lines)


def section(text: str, start: str, end: str) -> str | None:
    """The text between two markers, stripped; None when the start marker is absent."""
    if start not in text:
        return None
    body = text.split(start, 1)[1]
    if end not in body:
        raise AssertionError(f"README.md has {start} but no {end} after it")
    return body.split(end, 1)[0].strip()


if __name__ == "__main__":
    print(CONFIG_MARKER)
    print(config_table())
    print(CONFIG_END_MARKER)
