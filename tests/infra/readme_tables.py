"""docs/deploy.md's tables: config (generated from Pulumi.yaml's ``config:`` block) and alarms.

``python -m tests.infra.readme_tables`` prints the config table to paste between the
``<!-- config-table -->`` and ``<!-- /config-table -->`` markers of docs/deploy.md; the test
``test_readme.py`` fails when the two drift apart. The alarm table is written by hand
(which events move each alarm is prose); ``alarm_rows`` reads its columns back so the tests can
hold every alarm definition to it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import PROJECT_ROOT

DEPLOY_DOC = PROJECT_ROOT / "docs" / "deploy.md"
CONFIG_MARKER = "<!-- config-table -->"
CONFIG_END_MARKER = "<!-- /config-table -->"
OUTPUTS_MARKER = "<!-- outputs-table -->"
OUTPUTS_END_MARKER = "<!-- /outputs-table -->"
ALARMS_MARKER = "<!-- alarms-table -->"
ALARMS_END_MARKER = "<!-- /alarms-table -->"
_CODE = re.compile(r"`([^`]+)`")
_FIRES_AT = re.compile(r"^(Sum|Maximum) ≥ (\d+|`[A-Za-z]+`)$")


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
        raise AssertionError(f"docs/deploy.md has {start} but no {end} after it")
    return body.split(end, 1)[0].strip()


@dataclass(frozen=True)
class AlarmRow:
    """One row of the alarm table: alarm keys, what they watch, when they fire, and why."""

    keys: tuple[str, ...]
    namespace: str
    metric: str
    dimensions: tuple[str, ...]
    statistic: str
    threshold: str  # a number, or the config key that sets it
    moved_by: str
    not_moved_by: str


def alarm_rows(table: str) -> list[AlarmRow]:
    """Rows of ``| `key` … | `namespace` `Metric` (`Dim`, …) | Sum ≥ 1 | moved by | not |``."""
    rows = []
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5:
            raise AssertionError(f"alarm table row needs 5 cells: {line}")
        keys, metric, fires_at, moved_by, not_moved_by = cells
        namespace, metric_name, *dimensions = _CODE.findall(metric)
        match = _FIRES_AT.match(fires_at)
        if match is None:
            raise AssertionError(f"'fires at' must read like 'Sum ≥ 1': {fires_at}")
        rows.append(
            AlarmRow(
                keys=tuple(_CODE.findall(keys)),
                namespace=namespace,
                metric=metric_name,
                dimensions=tuple(dimensions),
                statistic=match.group(1),
                threshold=match.group(2).strip("`"),
                moved_by=moved_by,
                not_moved_by=not_moved_by,
            )
        )
    return rows


if __name__ == "__main__":
    print(CONFIG_MARKER)
    print(config_table())
    print(CONFIG_END_MARKER)
