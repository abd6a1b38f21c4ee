"""The local WebSocket emulators compared with ours, each serving ``benchmarks/echo.py``.

- Architect's ``@architect/sandbox@9``: ``@ws`` in ``app.arc``, ``@aws runtime python3.11``; one
  ``src/ws/<route>/index.py`` per route re-exports the echo handler; the management endpoint is
  ``http://127.0.0.1:<_arc port>/_arc/ws``.
- ``serverless-offline@13.9`` on ``serverless@3``: three functions with ``websocket`` events,
  ``custom.serverless-offline.websocketPort``, started with ``sls offline start
  --noPrependStageInUrl``; the management endpoint is ``http://127.0.0.1:<websocketPort>``.
- ours: ``python -m local --handlers benchmarks.echo:ROUTES --no-responder``, with
  ``python -m local``'s default ``--handler-processes`` (what a user runs); the management
  endpoint is ``http://127.0.0.1:<port>/<stage>``.

The npm packages are installed once into ``benchmarks/.peer/`` (gitignored) from the npm
registry; the generated projects live there too. Every server listens on free loopback ports,
runs in its own process group and is stopped afterwards. Handlers run with this venv's
``python3`` first on ``PATH`` and the project root on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import PROJECT_ROOT
from benchmarks.echo import ENDPOINT_VARIABLE, POSTING_VARIABLE
from benchmarks.environment import LOOPBACK, REGION, base_environment, free_port
from benchmarks.processes import ServerProcess

PEER_DIR = Path(__file__).resolve().parent / ".peer"
NODE_BIN = PEER_DIR / "node_modules" / ".bin"
PEER_PACKAGES = {
    "@architect/sandbox": "9",
    "serverless": "3",
    "serverless-offline": "13.9",
}
NPM_INSTALL_TIMEOUT_SECONDS = 600
START_TIMEOUT_SECONDS = 90.0
OUR_STAGE = "bench"
# API Gateway's integration timeout, instead of the peers' defaults (5 s, 6 s): on a loaded
# machine a cold Python handler can take longer, and a slow answer should count as slow, not
# as an error. Ours applies the same 29 s.
FUNCTION_TIMEOUT_SECONDS = 29
REEXPORT = "from benchmarks.echo import handler  # noqa: F401 - the same file behind every peer\n"


class PeersUnavailable(Exception):
    """The npm peers cannot run here (no node/npm); the reason says what is missing."""


def _installed() -> bool:
    return (NODE_BIN / "sandbox").exists() and (NODE_BIN / "serverless").exists()


def ensure_installed() -> str:
    """Install the npm peers into ``benchmarks/.peer/`` unless they are there; their versions."""
    if not _installed():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise PeersUnavailable(
                "node and npm are needed for the peer comparison (Architect sandbox, "
                "serverless-offline); install Node.js 20+ and run `python -m benchmarks peer`"
            )
        PEER_DIR.mkdir(parents=True, exist_ok=True)
        manifest = {
            "name": "rag-websocket-bench-peers",
            "private": True,
            "description": "Local WebSocket emulators compared by python -m benchmarks peer.",
        }
        (PEER_DIR / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        print("[benchmarks] installing the npm peers into benchmarks/.peer ...", file=sys.stderr)
        completed = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                *(f"{name}@{version}" for name, version in PEER_PACKAGES.items()),
            ],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0 or not _installed():
            raise PeersUnavailable(
                "npm install of the peers failed: "
                + " | ".join(completed.stderr.strip().splitlines()[-5:])
            )
    return _versions()


def _versions() -> str:
    versions = []
    for name in PEER_PACKAGES:
        manifest = PEER_DIR / "node_modules" / name / "package.json"
        version = json.loads(manifest.read_text()).get("version", "?")
        versions.append(f"{name}@{version}")
    return ", ".join(versions)


@dataclass(frozen=True)
class RunningEmulator:
    name: str
    ws_url: str
    process: ServerProcess


def _handler_environment(management_endpoint: str, echo_posting: str) -> dict[str, str]:
    """What every emulator's handler process needs: our python3, the project, fake AWS."""
    venv_bin = str(Path(sys.executable).parent)
    env = base_environment(
        {
            ENDPOINT_VARIABLE: management_endpoint,
            POSTING_VARIABLE: echo_posting,
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    env["PATH"] = venv_bin + ":" + env.get("PATH", "")
    return env


def _wait(process: ServerProcess, *ports: int) -> None:
    """Until every port listens; the process is stopped if it never gets there."""
    try:
        for port in ports:
            process.wait_for_port(port, START_TIMEOUT_SECONDS)
    except BaseException:
        process.stop()
        raise


def start_ours(work_dir: Path, echo_posting: str = "boto3") -> RunningEmulator:
    port = free_port()
    env = _handler_environment(f"http://{LOOPBACK}:{port}/{OUR_STAGE}", echo_posting)
    process = ServerProcess(
        "our gateway",
        [
            sys.executable,
            "-m",
            "local",
            "--port",
            str(port),
            "--stage",
            OUR_STAGE,
            "--handlers",
            "benchmarks.echo:ROUTES",
            "--no-responder",
            "--state-dir",
            str(work_dir / "ours-state"),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        log_path=work_dir / "ours.log",
    )
    _wait(process, port)
    return RunningEmulator("ours", f"ws://{LOOPBACK}:{port}/{OUR_STAGE}", process)


def start_architect(work_dir: Path, echo_posting: str = "boto3") -> RunningEmulator:
    app = PEER_DIR / "architect-app"
    for route in ("connect", "disconnect", "default"):
        source = app / "src" / "ws" / route
        source.mkdir(parents=True, exist_ok=True)
        (source / "index.py").write_text(REEXPORT)
    (app / "app.arc").write_text(
        f"@app\nbench-echo\n\n@ws\n\n@aws\nruntime python3.11\ntimeout {FUNCTION_TIMEOUT_SECONDS}\n"
    )
    http_port, internal_port = free_port(), free_port()
    management = f"http://{LOOPBACK}:{internal_port}/_arc/ws"
    # prefs.arc's @env reaches the handlers; Sandbox passes them little of its own environment.
    (app / "prefs.arc").write_text(
        f"@env\ntesting\n  {ENDPOINT_VARIABLE} {management}\n  {POSTING_VARIABLE} {echo_posting}\n"
    )
    env = _handler_environment(management, echo_posting)
    env.update(ARC_INTERNAL_PORT=str(internal_port), ARC_ENV="testing")
    process = ServerProcess(
        "architect sandbox",
        [str(NODE_BIN / "sandbox"), "--port", str(http_port), "--host", LOOPBACK],
        cwd=app,
        env=env,
        log_path=work_dir / "architect.log",
    )
    _wait(process, http_port, internal_port)
    return RunningEmulator("architect", f"ws://{LOOPBACK}:{http_port}", process)


def start_serverless_offline(work_dir: Path, echo_posting: str = "boto3") -> RunningEmulator:
    app = PEER_DIR / "serverless-app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "handler.py").write_text(REEXPORT)
    ws_port, http_port, lambda_port = free_port(), free_port(), free_port()
    management = f"http://{LOOPBACK}:{ws_port}"
    functions = {
        name: {"handler": "handler.handler", "events": [{"websocket": route}]}
        for name, route in (
            ("connect", "$connect"),
            ("disconnect", "$disconnect"),
            ("default", "$default"),
        )
    }
    config = {
        "service": "bench-echo",
        "frameworkVersion": "3",
        "provider": {
            "name": "aws",
            "runtime": "python3.11",
            "region": REGION,
            "stage": "local",
            "timeout": FUNCTION_TIMEOUT_SECONDS,
            "environment": {ENDPOINT_VARIABLE: management, POSTING_VARIABLE: echo_posting},
        },
        "functions": functions,
        "plugins": ["serverless-offline"],
        "custom": {
            "serverless-offline": {
                "host": LOOPBACK,
                "websocketPort": ws_port,
                "httpPort": http_port,
                "lambdaPort": lambda_port,
            }
        },
    }
    # JSON is YAML: serverless reads this file as serverless.yml.
    (app / "serverless.yml").write_text(json.dumps(config, indent=2) + "\n")
    env = _handler_environment(management, echo_posting)
    env.update(SLS_TELEMETRY_DISABLED="1", SLS_NOTIFICATIONS_MODE="off")
    process = ServerProcess(
        "serverless-offline",
        [str(NODE_BIN / "serverless"), "offline", "start", "--noPrependStageInUrl"],
        cwd=app,
        env=env,
        log_path=work_dir / "serverless-offline.log",
    )
    _wait(process, ws_port)
    return RunningEmulator("serverless_offline", f"ws://{LOOPBACK}:{ws_port}", process)


EMULATORS: dict[str, Callable[[Path, str], RunningEmulator]] = {
    "ours": start_ours,
    "serverless_offline": start_serverless_offline,
    "architect": start_architect,
}
