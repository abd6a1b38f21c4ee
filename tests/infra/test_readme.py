"""docs/deploy.md's config table is Pulumi.yaml's config block; its outputs table is DESIGN §6."""

from __future__ import annotations

import re

from tests.infra.contract import ADDED, CONTRACT, WITH_CUSTOM_DOMAIN
from tests.infra.readme_tables import (
    CONFIG_END_MARKER,
    CONFIG_MARKER,
    DEPLOY_DOC,
    OUTPUTS_END_MARKER,
    OUTPUTS_MARKER,
    config_table,
    section,
)


def test_config_table_matches_pulumi_yaml() -> None:
    table = section(DEPLOY_DOC.read_text(), CONFIG_MARKER, CONFIG_END_MARKER)
    assert table is not None, f"docs/deploy.md needs its table between {CONFIG_MARKER} markers"
    assert table == config_table(), "regenerate it: python -m tests.infra.readme_tables"


def test_outputs_table_lists_the_contract_and_what_was_added() -> None:
    table = section(DEPLOY_DOC.read_text(), OUTPUTS_MARKER, OUTPUTS_END_MARKER)
    assert table is not None, f"docs/deploy.md needs its table between {OUTPUTS_MARKER} markers"
    named = re.findall(r"^\| `([A-Za-z]+)` \|", table, flags=re.MULTILINE)
    assert sorted(named) == sorted({**CONTRACT, **ADDED, **WITH_CUSTOM_DOMAIN})


def test_generated_table_has_one_row_per_key() -> None:
    rows = config_table().splitlines()[2:]
    assert len(rows) == len(set(rows))
    assert rows[0].startswith("| `throttleBurstLimit` | integer | `100` |")
    assert any(row.startswith('| `authIssuer` | string | `""` |') for row in rows)
    assert any(row.startswith("| `tags` | array | `[]` |") for row in rows)
