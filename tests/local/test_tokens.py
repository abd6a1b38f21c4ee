"""Dev tokens: one key kept under the state folder, its JWKS, and the `token` command."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from local.__main__ import main
from local.tokens import KEY_FILE_NAME, LOCAL_AUDIENCE, LOCAL_ISSUER, DevTokens
from runtime.auth import InvalidTokenError, TokenVerifier
from runtime.config import AuthConfig
from tests.jwt_keys import StaticJwks
from tests.support import PROJECT_ROOT


def _verifier(tokens: DevTokens) -> TokenVerifier:
    config = AuthConfig(LOCAL_ISSUER, LOCAL_AUDIENCE, "http://127.0.0.1:9/jwks")
    return TokenVerifier(config, jwk_client=StaticJwks(tokens.jwks()))


def test_key_is_created_once_private_and_reused(tmp_path):
    first = DevTokens.load_or_create(tmp_path / "state")
    key_file = tmp_path / "state" / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = DevTokens.load_or_create(tmp_path / "state")
    assert second.kid == first.kid
    assert second.jwks() == first.jwks()
    assert [p.name for p in (tmp_path / "state").iterdir()] == [KEY_FILE_NAME]


def test_tokens_pass_the_runtime_verifier(tmp_path):
    tokens = DevTokens.load_or_create(tmp_path)
    claims = _verifier(tokens).verify(tokens.issue("alice"))
    assert claims["sub"] == "alice"
    assert claims["iss"] == LOCAL_ISSUER
    assert claims["aud"] == LOCAL_AUDIENCE
    [key] = tokens.jwks()["keys"]
    assert key["kid"] == tokens.kid
    assert key["alg"] == "RS256"
    assert "d" not in key  # public half only


def test_a_token_from_another_key_or_expired_is_refused(tmp_path):
    tokens = DevTokens.load_or_create(tmp_path / "a")
    other = DevTokens.load_or_create(tmp_path / "b")
    with pytest.raises(InvalidTokenError):
        _verifier(tokens).verify(other.issue("mallory"))
    with pytest.raises(InvalidTokenError, match="expired"):
        _verifier(tokens).verify(tokens.issue("alice", ttl_seconds=-120))


def test_empty_user_is_refused(tmp_path):
    with pytest.raises(ValueError, match="user_id"):
        DevTokens.load_or_create(tmp_path).issue("")


def test_token_command_prints_a_token_for_the_user(tmp_path, capsys):
    assert main(["token", "--user", "alice", "--state-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    tokens = DevTokens.load_or_create(tmp_path)
    assert _verifier(tokens).verify(token)["sub"] == "alice"


def test_token_command_works_without_a_gateway(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(  # noqa: S603 - this project's own CLI, fixed arguments
        [sys.executable, "-m", "local", "token", "--user", "bob", "--state-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = result.stdout.strip()
    assert _verifier(DevTokens.load_or_create(tmp_path)).verify(token)["sub"] == "bob"
