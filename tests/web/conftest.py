"""The browser client's tests: a screenshot of the page kept under ``.artifacts/browser/`` for
every failing browser test (the stack fixtures are tests/conftest.py's)."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import pytest

from tests.web.support import ARTIFACTS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.failed and report.when == "call" and page is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.name)}.png"
        page.screenshot(path=str(path), full_page=True)
        report.sections.append(("screenshot", str(path)))
    return report
