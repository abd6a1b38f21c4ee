"""What the Lambda functions and layers are built from, prepared under ``.build/``.

* the code: the ``runtime`` package alone (no tests, no ``__pycache__``), in a directory named by
  the hash of its files;
* the dependencies: ``runtime/requirements.txt`` installed by pip with the project's
  ``constraints.txt`` (the versions the tests ran against) for Lambda's platform (the
  function's architecture and Python version, wheels only), in a content-addressed cache, so a
  warm ``pulumi preview`` never runs pip, with or without network. boto3/botocore stay out:
  the Lambda runtime has them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_SOURCE = PROJECT_ROOT / "runtime"
RUNTIME_REQUIREMENTS = RUNTIME_SOURCE / "requirements.txt"
CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
BUILD_DIR_ENV = "RAG_WEBSOCKET_BUILD_DIR"
LAYER_PYTHON_DIR = "python"  # Lambda puts /opt/python on sys.path
PACKAGE_NAME = "runtime"
# Bump when the layout of a cache entry changes, so old entries are not reused.
BUILD_FORMAT = "2"
COMPLETE_SUFFIX = ".complete"  # a sibling file, so that it never lands in an archive
# Lambda's Python 3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34): wheels tagged for either
# glibc baseline install there; newer releases of some packages ship only the 2_28 tag.
PIP_PLATFORMS = {
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
}
# Provided by the Lambda Python runtime; a layer copy would only shadow the runtime's own.
AWS_PROVIDED_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer")
_EXCLUDED_DIRS = frozenset({"__pycache__", "tests", ".pytest_cache", ".mypy_cache"})
_EXCLUDED_SUFFIXES = (".pyc", ".pyo")
_EXCLUDED_FILES = frozenset({"requirements.txt"})

CommandRunner = Callable[[Sequence[str]], None]


class PackagingError(RuntimeError):
    """pip could not install the layer's requirements for Lambda's platform (one line: why)."""


def build_root() -> Path:
    """``.build/`` of the project, or ``$RAG_WEBSOCKET_BUILD_DIR`` (tests)."""
    override = os.environ.get(BUILD_DIR_ENV)
    return Path(override) if override else PROJECT_ROOT / ".build"


def package_files(source: Path) -> Iterator[Path]:
    """The files of a package that belong in the Lambda code, sorted (stable hash)."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part in _EXCLUDED_DIRS for part in relative.parts):
            continue
        if (
            path.is_file()
            and path.suffix not in _EXCLUDED_SUFFIXES
            and path.name not in _EXCLUDED_FILES
        ):
            yield path


def _digest(chunks: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(len(chunk).to_bytes(8, "big"))
        digest.update(chunk)
    return digest.hexdigest()


def prepare_code(source: Path = RUNTIME_SOURCE, root: Path | None = None) -> Path:
    """A directory holding ``runtime/`` and nothing else; its name is the hash of the files."""
    files = list(package_files(source))
    chunks = [BUILD_FORMAT.encode()]
    for path in files:
        chunks += [path.relative_to(source).as_posix().encode(), path.read_bytes()]
    destination = (root or build_root()) / "code" / _digest(chunks)[:16]
    if is_complete(destination):
        return destination
    staging = destination.with_name(f".{destination.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / PACKAGE_NAME).mkdir(parents=True)
    for path in files:
        target = staging / PACKAGE_NAME / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    _publish(staging, destination)
    return destination


@dataclass(frozen=True)
class LayerBuild:
    """What one dependency layer is installed for."""

    architecture: str
    python_version: str
    requirements: Path = RUNTIME_REQUIREMENTS
    constraints: Path = CONSTRAINTS

    @property
    def platforms(self) -> tuple[str, ...]:
        try:
            return PIP_PLATFORMS[self.architecture]
        except KeyError:
            raise ValueError(
                f"no pip platform for Lambda architecture {self.architecture!r}; "
                f"use one of {', '.join(PIP_PLATFORMS)}"
            ) from None

    def cache_key(self) -> str:
        return _digest(
            [
                BUILD_FORMAT.encode(),
                self.requirements.read_bytes(),
                self.constraints.read_bytes(),
                *(platform.encode() for platform in self.platforms),
                self.python_version.encode(),
            ]
        )

    def cache_dir(self, root: Path | None = None) -> Path:
        name = f"deps-{self.architecture}-py{self.python_version}-{self.cache_key()[:16]}"
        return (root or build_root()) / "layers" / name

    def pip_command(self, target: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--requirement",
            str(self.requirements),
            "--constraint",
            str(self.constraints),
            "--target",
            str(target),
            *(argument for platform in self.platforms for argument in ("--platform", platform)),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            self.python_version,
            "--no-compile",  # .pyc of this interpreter would be useless to Lambda's
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
        ]


def run_command(command: Sequence[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise PackagingError(_reason(result.stderr) or f"pip exited with {result.returncode}")


def _reason(stderr: str) -> str:
    """pip's last ``ERROR:`` line (offline: "No matching distribution found for ..."), else its
    last line: what a person needs from a page of resolver output."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or [""])[-1]


def prepare_dependencies(
    build: LayerBuild, root: Path | None = None, run: CommandRunner = run_command
) -> Path:
    """The layer directory (``python/...``) for ``build``; pip runs only on a cache miss."""
    destination = build.cache_dir(root)
    if is_complete(destination):
        return destination
    staging = destination.with_name(f".{destination.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / LAYER_PYTHON_DIR
    site.mkdir(parents=True)
    try:
        run(build.pip_command(site))
    except PackagingError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise PackagingError(
            f"the {build.architecture} python{build.python_version} dependency layer is not in "
            f"the cache ({destination}) and pip could not build it: {exc}. Run `pulumi preview` "
            "once with access to PyPI; later previews reuse the cache offline"
        ) from None
    _prune(site)
    _publish(staging, destination)
    return destination


def _prune(site: Path) -> None:
    """Drop what Lambda already provides and what only this machine could use."""
    for entry in site.iterdir():
        distribution = entry.name.split("-", 1)[0].lower()
        if distribution in AWS_PROVIDED_DISTRIBUTIONS or entry.name == "bin":
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _marker(destination: Path) -> Path:
    return destination.with_name(destination.name + COMPLETE_SUFFIX)


def is_complete(destination: Path) -> bool:
    return destination.is_dir() and _marker(destination).exists()


def mark_complete(destination: Path) -> None:
    _marker(destination).write_text("ok\n")


def _publish(staging: Path, destination: Path) -> None:
    """Make a finished build visible in one step; a half-written one is never reused."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(destination, ignore_errors=True)
    try:
        staging.rename(destination)
    except OSError:  # another process published the same content first
        shutil.rmtree(staging, ignore_errors=True)
    mark_complete(destination)
