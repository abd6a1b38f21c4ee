"""The dependency layer is built by pip for Lambda's platform, cached by content.

``test_arm64_layer_holds_aarch64_wheels_and_no_boto3`` really runs pip against PyPI (once; the
result is cached under ``.build/`` like a ``pulumi preview`` would, so later runs and previews
reuse it). The other tests use a stand-in pip.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from components.packaging import (
    CONSTRAINTS,
    PROJECT_ROOT,
    RUNTIME_SOURCE,
    LayerBuild,
    PackagingError,
    is_complete,
    prepare_code,
    prepare_dependencies,
    run_command,
)


def _zip(directory: Path, destination: Path) -> list[str]:
    """What Pulumi uploads for a FileArchive of ``directory``: its files, relative paths."""
    with zipfile.ZipFile(destination, "w") as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    with zipfile.ZipFile(destination) as archive:
        return archive.namelist()


@pytest.mark.timeout(600)
def test_arm64_layer_holds_aarch64_wheels_and_no_boto3(tmp_path: Path) -> None:
    build = LayerBuild(architecture="arm64", python_version="3.13")
    layer = prepare_dependencies(build, root=PROJECT_ROOT / ".build")
    names = _zip(layer, tmp_path / "layer.zip")
    assert names
    assert all(name.startswith("python/") for name in names)  # /opt/python on Lambda
    core = [n for n in names if n.startswith("python/pydantic_core/_pydantic_core.")]
    assert core == ["python/pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so"]
    for package in ("pydantic", "jwt", "cryptography", "aws_lambda_powertools"):
        assert any(n.startswith(f"python/{package}/") for n in names), package
    tops = {name.split("/")[1].split("-")[0].lower() for name in names}
    assert not tops & {"boto3", "botocore", "s3transfer"}
    assert not [n for n in names if "__pycache__" in n or n.startswith("python/bin/")]
    assert not [n for n in names if n.endswith(".so") and "x86_64" in n]
    # Every installed distribution is the version constraints.txt pins: what the tests ran.
    pins = dict(
        line.split("==", 1) for line in CONSTRAINTS.read_text().splitlines() if "==" in line
    )
    pinned = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    installed = {
        tuple(name.split("/")[1].removesuffix(".dist-info").rsplit("-", 1))
        for name in names
        if name.endswith(".dist-info/METADATA")
    }
    assert installed
    for distribution, version in installed:
        assert pinned[distribution.lower().replace("_", "-")] == version, distribution


class RecordingPip:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> None:
        self.commands.append(list(command))
        target = Path(command[command.index("--target") + 1])
        for package in ("pydantic", "boto3", "botocore", "s3transfer", "bin"):
            (target / package).mkdir(parents=True)
            (target / package / "__init__.py").write_text("")
        (target / "boto3-1.0.dist-info").mkdir()
        (target / "pydantic" / "__pycache__").mkdir()


def test_pip_targets_lambdas_platform_wheels_only(tmp_path: Path) -> None:
    pip = RecordingPip()
    build = LayerBuild(architecture="x86_64", python_version="3.12")
    layer = prepare_dependencies(build, root=tmp_path, run=pip)
    [command] = pip.commands
    joined = " ".join(command)
    assert "--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64" in joined
    assert f"--constraint {CONSTRAINTS}" in joined  # the versions the tests ran against
    assert "--only-binary=:all:" in joined
    assert "--implementation cp" in joined
    assert "--python-version 3.12" in joined
    assert f"--requirement {build.requirements}" in joined
    assert sorted(p.name for p in (layer / "python").iterdir()) == ["pydantic"]
    assert not (layer / "python" / "pydantic" / "__pycache__").exists()


def test_a_warm_cache_never_runs_pip(tmp_path: Path) -> None:
    pip = RecordingPip()
    build = LayerBuild(architecture="arm64", python_version="3.13")
    first = prepare_dependencies(build, root=tmp_path, run=pip)
    second = prepare_dependencies(build, root=tmp_path, run=pip)
    assert first == second
    assert len(pip.commands) == 1
    assert is_complete(first)


def test_the_cache_key_follows_requirements_constraints_architecture_and_python(
    tmp_path: Path,
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pydantic>=2\n")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("pydantic==2.10.0\n")
    arm = LayerBuild("arm64", "3.13", requirements, constraints)
    keys = {
        arm.cache_dir(tmp_path),
        LayerBuild("x86_64", "3.13", requirements, constraints).cache_dir(tmp_path),
        LayerBuild("arm64", "3.12", requirements, constraints).cache_dir(tmp_path),
    }
    requirements.write_text("pydantic>=2\npyjwt>=2\n")
    keys.add(arm.cache_dir(tmp_path))
    constraints.write_text("pydantic==2.11.0\n")  # a new pin is a new layer
    keys.add(arm.cache_dir(tmp_path))
    assert len(keys) == 5


@pytest.mark.parametrize(
    ("architecture", "platforms"),
    [
        ("arm64", ("manylinux2014_aarch64", "manylinux_2_28_aarch64")),
        ("x86_64", ("manylinux2014_x86_64", "manylinux_2_28_x86_64")),
    ],
)
def test_both_glibc_baselines_of_the_architecture(
    architecture: str, platforms: tuple[str, ...]
) -> None:
    assert LayerBuild(architecture, "3.13").platforms == platforms


def test_offline_with_a_warm_cache_reuses_it(tmp_path: Path) -> None:
    build = LayerBuild(architecture="arm64", python_version="3.13")
    first = prepare_dependencies(build, root=tmp_path, run=RecordingPip())

    def offline(command: Sequence[str]) -> None:
        raise AssertionError("pip must not run on a warm cache")

    assert prepare_dependencies(build, root=tmp_path, run=offline) == first


def test_offline_with_a_cold_cache_fails_in_one_line_saying_why(tmp_path: Path) -> None:
    """What pip prints when PyPI is unreachable: retries as WARNING lines, then two ERROR lines;
    the last one is the reason."""
    pip = tmp_path / "pip"
    pip.write_text(
        "#!/bin/sh\n"
        'echo "WARNING: Retrying (Retry(total=4, connect=None)) after connection broken by '
        "'NewConnectionError': /simple/pydantic/\" >&2\n"
        "echo 'ERROR: Could not find a version that satisfies the requirement pydantic' >&2\n"
        "echo 'ERROR: No matching distribution found for pydantic<3,>=2.10' >&2\n"
        "exit 1\n"
    )
    pip.chmod(0o755)

    def fake_pip(command: Sequence[str]) -> None:
        run_command([str(pip), *command[1:]])

    build = LayerBuild(architecture="arm64", python_version="3.13")
    with pytest.raises(PackagingError) as caught:
        prepare_dependencies(build, root=tmp_path, run=fake_pip)
    message = str(caught.value)
    assert "\n" not in message
    assert "No matching distribution found for pydantic<3,>=2.10" in message
    assert "arm64 python3.13 dependency layer is not in the cache" in message
    assert "with access to PyPI" in message
    assert not is_complete(build.cache_dir(tmp_path))
    assert list((tmp_path / "layers").iterdir()) == []  # no half-built entry left behind


def test_an_interrupted_build_is_not_reused(tmp_path: Path) -> None:
    build = LayerBuild(architecture="arm64", python_version="3.13")
    half = build.cache_dir(tmp_path) / "python"
    half.mkdir(parents=True)  # a directory without its completion marker
    pip = RecordingPip()
    prepare_dependencies(build, root=tmp_path, run=pip)
    assert len(pip.commands) == 1


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="arm64, x86_64"):
        _ = LayerBuild(architecture="ppc64", python_version="3.13").platforms


def test_code_directory_holds_only_the_runtime_package(tmp_path: Path) -> None:
    source = tmp_path / "runtime"
    for relative in (
        "__init__.py",
        "handlers/connect.py",
        "requirements.txt",
        "__pycache__/x.cpython-311.pyc",
        "tests/test_x.py",
        "stale.pyc",
    ):
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_text("x = 1\n")
    code = prepare_code(source, root=tmp_path / "build")
    files = _zip(code, tmp_path / "code.zip")
    assert sorted(files) == ["runtime/__init__.py", "runtime/handlers/connect.py"]
    assert prepare_code(source, root=tmp_path / "build") == code  # same content, same dir
    (source / "__init__.py").write_text("x = 2\n")
    assert prepare_code(source, root=tmp_path / "build") != code


def test_real_runtime_code_directory(tmp_path: Path) -> None:
    code = prepare_code(RUNTIME_SOURCE, root=tmp_path)
    files = _zip(code, tmp_path / "code.zip")
    assert "runtime/handlers/message.py" in files
    assert all(name.startswith("runtime/") for name in files)
