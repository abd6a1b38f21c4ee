"""`make audit`: pip-audit over the pinned versions in constraints.txt.

pip-audit needs PyPI's JSON API (or OSV). Where neither is reachable it reports every package as
"not found on PyPI" and, without --strict, exits 0 as if all were well; this wrapper turns that
into one clear line and a non-zero exit instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints.txt"
UNREACHABLE_MARKERS = (
    "could not be audited",
    "ConnectionError",
    "NameResolutionError",
    "Max retries exceeded",
)
EXIT_UNREACHABLE = 3


def main() -> int:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(CONSTRAINTS),
        "--no-deps",
        "--disable-pip",
        "--strict",
        "--progress-spinner",
        "off",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(marker in output for marker in UNREACHABLE_MARKERS):
        print(
            "make audit: pip-audit cannot reach the package index or the OSV database from this "
            f"machine, so nothing in {CONSTRAINTS.name} was audited; run `make audit` where the "
            "package index and the OSV database are reachable",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
