"""What the browser client's tests share: where web/ is, and its build made by `make web`."""

from __future__ import annotations

import shutil

from tests.support import PROJECT_ROOT

WEB = PROJECT_ROOT / "web"
WEB_DIST = WEB / "dist"
ARTIFACTS = (
    PROJECT_ROOT / ".artifacts" / "browser"
)  # screenshots of failing browser tests (gitignored)


def require_web_build() -> None:
    """Fail (never skip) naming the fix when web/'s packages or build are missing."""
    missing = [
        path
        for path in (WEB / "node_modules" / ".bin" / "tsc", WEB_DIST / "rag-websocket.js")
        if not path.exists()
    ]
    if missing:
        raise AssertionError(
            f"{', '.join(str(p.relative_to(PROJECT_ROOT)) for p in missing)} missing: "
            "run `make web` (npm ci and the build of web/)"
        )


def node() -> str:
    """The ``node`` executable (Node.js 20 or later), or a failure naming the package."""
    found = shutil.which("node")
    if found is None:
        raise AssertionError("node is not on PATH: install Node.js 20+ (Debian: nodejs)")
    return found


def chromium() -> str:
    """The system Chromium (never a browser Playwright downloads), or a failure naming it."""
    found = shutil.which("chromium")
    if found is None:
        raise AssertionError(
            "chromium is not installed: `make test` installs Debian's chromium package when run "
            "as root; otherwise run `sudo apt-get install chromium`"
        )
    return found
