"""The $connect REQUEST authorizer: Allow exactly the methodArn, or Exception("Unauthorized").

Tokens are verified by the real PyJWKClient against a JWKS served on 127.0.0.1.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import schema
from runtime.auth import TokenVerifier
from runtime.config import AuthConfig, TokenUse
from runtime.handlers import authorizer
from runtime.observability import Metric, logger
from tests.jwt_keys import (
    AUDIENCE,
    ISSUER,
    SUBJECT,
    JwksServer,
    StaticJwks,
    assemble_token,
    b64url,
    ec_key,
    hs256_token,
    impostor_rsa_key,
    make_token,
    new_rsa_key,
    rsa_key,
    standard_claims,
    trusted_jwks,
)
from tests.support import load_event

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def connect_event(
    token: str | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The recorded authorizer event with ``?token=`` set, or without a query string at all."""
    event = load_event("authorizer_request")
    if token is None:
        del event["queryStringParameters"], event["multiValueQueryStringParameters"]
    else:
        event["queryStringParameters"] = {schema.TOKEN_QUERY_PARAMETER: token}
        event["multiValueQueryStringParameters"] = {schema.TOKEN_QUERY_PARAMETER: [token]}
    event["headers"].update(headers or {})
    event["multiValueHeaders"].update({k: [v] for k, v in (headers or {}).items()})
    return event


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture(scope="module")
def jwks_url(jwks_server: JwksServer) -> str:
    return jwks_server.serve(trusted_jwks())


def use_verifier(
    monkeypatch: pytest.MonkeyPatch, jwks_url: str, token_use: TokenUse | None = None
) -> None:
    """The handler's verifier, pointed at ``jwks_url`` through the real shared PyJWKClient."""
    config = AuthConfig(ISSUER, AUDIENCE, jwks_url, token_use)
    monkeypatch.setattr(authorizer, "VERIFIER", TokenVerifier(config))


@pytest.fixture(autouse=True)
def verifier(monkeypatch: pytest.MonkeyPatch, jwks_url: str) -> None:
    use_verifier(monkeypatch, jwks_url)


@pytest.fixture
def denials(monkeypatch: pytest.MonkeyPatch) -> list[Metric]:
    """The metrics the handler counts (still emitted for real)."""
    counted: list[Metric] = []
    real_count = authorizer.count

    def recording_count(metric: Metric, value: int = 1) -> None:
        counted.append(metric)
        real_count(metric, value)

    monkeypatch.setattr(authorizer, "count", recording_count)
    return counted


def assert_denied(event: Any, denials: list[Metric] | None = None) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - API Gateway wants a bare Exception
        authorizer.handler(event, None)
    assert type(info.value) is Exception
    assert info.value.args == ("Unauthorized",)
    assert info.value.__cause__ is None
    if denials is not None:
        assert denials == [Metric.AUTHORIZATION_DENIED]


def allow_policy(context: dict[str, str]) -> dict[str, Any]:
    return {
        "principalId": SUBJECT,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}
            ],
        },
        "context": context,
    }


# --- allowed ---------------------------------------------------------------------------------


def test_event_fixture_is_a_websocket_connect_request_event() -> None:
    event = load_event("authorizer_request")

    assert event["type"] == "REQUEST"
    assert event["methodArn"] == METHOD_ARN
    assert event["requestContext"]["routeKey"] == schema.ROUTE_CONNECT
    assert event["requestContext"]["eventType"] == "CONNECT"
    assert "messageId" not in event["requestContext"]


def test_allows_rs256_token_for_exactly_the_method_arn(denials: list[Metric]) -> None:
    response = authorizer.handler(connect_event(make_token(rsa_key(), **standard_claims())), None)

    assert response == allow_policy({"userId": SUBJECT})
    assert denials == []


def test_allows_es256_token(denials: list[Metric]) -> None:
    response = authorizer.handler(connect_event(make_token(ec_key(), **standard_claims())), None)

    assert response == allow_policy({"userId": SUBJECT})
    assert denials == []


def test_policy_resource_is_the_event_method_arn_not_a_wildcard() -> None:
    other_arn = "arn:aws-us-gov:execute-api:us-gov-west-1:210987654321:zyx987/prod/$connect"
    event = connect_event(make_token(**standard_claims()))
    event["methodArn"] = other_arn

    (statement,) = authorizer.handler(event, None)["policyDocument"]["Statement"]

    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": other_arn}


def test_context_carries_only_string_extras() -> None:
    claims = standard_claims(
        email="alice@example.com",
        token_use="id",
        groups=["admins"],
        **{"cognito:username": "alice", "email_verified": True},
    )
    response = authorizer.handler(connect_event(make_token(**claims)), None)

    assert response["context"] == {
        "userId": SUBJECT,
        "email": "alice@example.com",
        "tokenUse": "id",
        "username": "alice",
    }


def test_non_string_email_is_left_out_of_the_context() -> None:
    response = authorizer.handler(connect_event(make_token(**standard_claims(email=["x"]))), None)
    assert response["context"] == {"userId": SUBJECT}


@pytest.mark.parametrize("header_name", ["Authorization", "authorization", "AUTHORIZATION"])
def test_falls_back_to_bearer_header(header_name: str) -> None:
    token = make_token(**standard_claims())
    event = connect_event(headers={header_name: f"Bearer {token}"})

    assert authorizer.handler(event, None) == allow_policy({"userId": SUBJECT})


def test_bearer_scheme_is_case_insensitive() -> None:
    event = connect_event(headers={"Authorization": f"bearer {make_token(**standard_claims())}"})
    assert authorizer.handler(event, None)["principalId"] == SUBJECT


def test_query_token_is_preferred_over_the_header() -> None:
    event = connect_event(
        make_token(**standard_claims()),
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert authorizer.handler(event, None)["principalId"] == SUBJECT


def test_empty_query_token_falls_back_to_the_header() -> None:
    event = connect_event(
        "", headers={"Authorization": f"Bearer {make_token(**standard_claims())}"}
    )
    assert authorizer.handler(event, None)["principalId"] == SUBJECT


def test_accepts_cognito_id_token(monkeypatch: pytest.MonkeyPatch, jwks_url: str) -> None:
    use_verifier(monkeypatch, jwks_url, "id")
    token = make_token(**standard_claims(token_use="id", email="alice@example.com"))

    response = authorizer.handler(connect_event(token), None)

    assert response == allow_policy(
        {"userId": SUBJECT, "tokenUse": "id", "email": "alice@example.com"}
    )


def test_accepts_cognito_access_token(monkeypatch: pytest.MonkeyPatch, jwks_url: str) -> None:
    use_verifier(monkeypatch, jwks_url, "access")
    token = make_token(
        **standard_claims(audience=None, token_use="access", client_id=AUDIENCE, username="alice")
    )

    response = authorizer.handler(connect_event(token), None)

    assert response == allow_policy({"userId": SUBJECT, "tokenUse": "access", "username": "alice"})


# --- denied: each attack on its own ----------------------------------------------------------


def test_denies_missing_token(denials: list[Metric]) -> None:
    assert_denied(connect_event(), denials)


def test_denies_header_without_bearer_scheme(denials: list[Metric]) -> None:
    event = connect_event(headers={"Authorization": f"Basic {make_token(**standard_claims())}"})
    assert_denied(event, denials)


def test_denies_missing_method_arn(denials: list[Metric]) -> None:
    event = connect_event(make_token(**standard_claims()))
    del event["methodArn"]
    assert_denied(event, denials)


def test_denies_malformed_method_arn(denials: list[Metric]) -> None:
    event = connect_event(make_token(**standard_claims()))
    event["methodArn"] = "*"
    assert_denied(event, denials)


def test_denies_an_event_that_is_not_a_dict(denials: list[Metric]) -> None:
    assert_denied(["not", "an", "event"], denials)


def test_denies_alg_none(denials: list[Metric]) -> None:
    token = assemble_token({"alg": "none", "typ": "JWT", "kid": rsa_key().kid}, standard_claims())
    assert_denied(connect_event(token), denials)


def test_denies_hs256_signed_with_the_rsa_public_key(denials: list[Metric]) -> None:
    token = hs256_token(rsa_key().public_pem, {"kid": rsa_key().kid}, standard_claims())
    assert_denied(connect_event(token), denials)


def test_denies_unknown_kid(denials: list[Metric]) -> None:
    token = make_token(new_rsa_key("not-in-the-jwks"), **standard_claims())
    assert_denied(connect_event(token), denials)


def test_denies_key_from_another_jwks(denials: list[Metric]) -> None:
    token = make_token(impostor_rsa_key(), **standard_claims())
    assert impostor_rsa_key().kid == rsa_key().kid
    assert_denied(connect_event(token), denials)


def test_denies_expired_token(denials: list[Metric]) -> None:
    token = make_token(**standard_claims(now=int(time.time()) - 3600, lifetime=600))
    assert_denied(connect_event(token), denials)


def test_denies_nbf_in_the_future(denials: list[Metric]) -> None:
    token = make_token(**standard_claims(nbf=int(time.time()) + 600))
    assert_denied(connect_event(token), denials)


def test_denies_wrong_issuer(denials: list[Metric]) -> None:
    token = make_token(**standard_claims(issuer="https://evil.test.invalid"))
    assert_denied(connect_event(token), denials)


def test_denies_wrong_audience(denials: list[Metric]) -> None:
    token = make_token(**standard_claims(audience="another-app"))
    assert_denied(connect_event(token), denials)


def test_denies_wrong_token_use(
    monkeypatch: pytest.MonkeyPatch, jwks_url: str, denials: list[Metric]
) -> None:
    use_verifier(monkeypatch, jwks_url, "id")
    token = make_token(**standard_claims(token_use="access"))
    assert_denied(connect_event(token), denials)


def test_denies_access_token_for_another_client_id(
    monkeypatch: pytest.MonkeyPatch, jwks_url: str, denials: list[Metric]
) -> None:
    use_verifier(monkeypatch, jwks_url, "access")
    token = make_token(**standard_claims(audience=None, token_use="access", client_id="other"))
    assert_denied(connect_event(token), denials)


def test_denies_tampered_payload(denials: list[Metric]) -> None:
    header, _, signature = make_token(**standard_claims()).split(".")
    forged = b64url(json.dumps(standard_claims(sub="admin")).encode())
    assert_denied(connect_event(f"{header}.{forged}.{signature}"), denials)


def test_denies_tampered_signature(denials: list[Metric]) -> None:
    signing_input, _, signature = make_token(**standard_claims()).rpartition(".")
    flipped = signature[:-6] + ("AAAAAA" if signature[-6:] != "AAAAAA" else "BBBBBB")
    assert_denied(connect_event(f"{signing_input}.{flipped}"), denials)


def test_denies_token_over_8_kb(denials: list[Metric]) -> None:
    token = make_token(**standard_claims(padding="x" * schema.MAX_TOKEN_BYTES))
    assert len(token) > schema.MAX_TOKEN_BYTES
    assert_denied(connect_event(token), denials)


def test_denies_missing_sub(denials: list[Metric]) -> None:
    assert_denied(connect_event(make_token(**standard_claims(sub=None))), denials)


def test_denies_when_jwks_is_down(monkeypatch: pytest.MonkeyPatch, denials: list[Metric]) -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        use_verifier(monkeypatch, f"http://127.0.0.1:{port}/.well-known/jwks.json")
        assert_denied(connect_event(make_token(**standard_claims())), denials)


def test_denies_within_the_timeout_when_jwks_is_slow(
    monkeypatch: pytest.MonkeyPatch, jwks_server: JwksServer, denials: list[Metric]
) -> None:
    slow_url = jwks_server.serve(trusted_jwks(), delay_seconds=schema.JWKS_TIMEOUT_SECONDS * 10)
    use_verifier(monkeypatch, slow_url)
    event = connect_event(make_token(**standard_claims()))

    started = time.monotonic()
    assert_denied(event, denials)
    # A correctness bound (the JWKS fetch gives up at its timeout), not a performance benchmark.
    assert time.monotonic() - started < schema.JWKS_TIMEOUT_SECONDS * 3


def test_denies_on_unexpected_error(monkeypatch: pytest.MonkeyPatch, denials: list[Metric]) -> None:
    class Exploding(TokenVerifier):
        def verify(self, token: str) -> dict[str, Any]:
            raise RuntimeError(f"bug while handling {token}")

    monkeypatch.setattr(authorizer, "VERIFIER", Exploding(authorizer.VERIFIER.config))
    assert_denied(connect_event(make_token(**standard_claims())), denials)


def test_denial_emits_the_authorization_denied_metric(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert_denied(connect_event("not-a-token"))

    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf[Metric.AUTHORIZATION_DENIED.value] == [1.0]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == schema.METRICS_NAMESPACE
    assert directive["Metrics"] == [{"Name": "AuthorizationDenied", "Unit": "Count"}]


# --- hygiene: no token in logs, no boto3, configuration at cold start ------------------------


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes, at DEBUG, formatted as in Lambda."""
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(logger.registered_formatter)
    previous_level = logger.log_level
    logger.addHandler(capture)
    logger.setLevel("DEBUG")
    yield stream
    logger.removeHandler(capture)
    logger.setLevel(previous_level)


def test_never_logs_the_token(
    monkeypatch: pytest.MonkeyPatch,
    debug_log: io.StringIO,
    capfd: pytest.CaptureFixture[str],
) -> None:
    valid = make_token(**standard_claims())
    expired = make_token(**standard_claims(now=int(time.time()) - 3600, lifetime=600))
    forged = hs256_token(rsa_key().public_pem, {"kid": rsa_key().kid}, standard_claims())

    authorizer.handler(connect_event(valid), None)
    for token in (expired, forged):
        assert_denied(connect_event(token))
    assert_denied(connect_event(headers={"Authorization": f"Bearer {expired}"}))

    class Exploding(TokenVerifier):
        def verify(self, token: str) -> dict[str, Any]:
            raise RuntimeError(f"bug while handling {token}")

    monkeypatch.setattr(authorizer, "VERIFIER", Exploding(authorizer.VERIFIER.config))
    assert_denied(connect_event(valid))

    logged = debug_log.getvalue()
    out, err = capfd.readouterr()
    assert "authorization granted" in logged
    assert "authorization denied" in logged
    assert "authorizer failed" in logged
    for token in (valid, expired, forged):
        signature = token.rsplit(".", 1)[-1]
        for text in (logged, out, err):
            assert token not in text
            assert signature not in text


def _subprocess_env(**overrides: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_does_not_import_boto3() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runtime.handlers.authorizer, sys; assert 'boto3' not in sys.modules",
        ],
        cwd=PROJECT_ROOT,
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("variable", [schema.ENV_AUTH_ISSUER, schema.ENV_AUTH_AUDIENCE])
def test_cold_start_fails_naming_a_missing_variable(variable: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import runtime.handlers.authorizer"],
        cwd=PROJECT_ROOT,
        env=_subprocess_env(**{variable: None}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ConfigError" in result.stderr
    assert variable in result.stderr


@pytest.fixture
def reloaded_from_env(monkeypatch: pytest.MonkeyPatch, jwks_url: str) -> Iterator[None]:
    monkeypatch.setenv(schema.ENV_AUTH_JWKS_URL, jwks_url)
    monkeypatch.setenv(schema.ENV_AUTH_TOKEN_USE, "id")
    importlib.reload(authorizer)
    yield
    monkeypatch.undo()
    importlib.reload(authorizer)


@pytest.mark.usefixtures("reloaded_from_env")
def test_cold_start_builds_the_verifier_from_the_environment(jwks_url: str) -> None:
    assert authorizer.VERIFIER.config == AuthConfig(ISSUER, AUDIENCE, jwks_url, "id")

    token = make_token(**standard_claims(token_use="id"))
    assert authorizer.handler(connect_event(token), None)["context"]["userId"] == SUBJECT
    assert_denied(connect_event(make_token(**standard_claims(token_use="access"))))


# --- property: no string ever gets in --------------------------------------------------------

_B64URL = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_TOKENS = st.one_of(
    st.text(max_size=300),
    st.lists(_B64URL, min_size=1, max_size=5).map(".".join),
    st.builds(
        lambda header, claims, signature: assemble_token(header, claims, signature),
        st.fixed_dictionaries(
            {"alg": st.sampled_from(["RS256", "ES256", "none", "HS256", "PS256"])},
            optional={"kid": st.sampled_from([rsa_key().kid, ec_key().kid, "x"]) | _JSON},
        ),
        st.dictionaries(st.text(max_size=8), _JSON) | st.just(standard_claims()),
        st.binary(max_size=300),
    ),
)


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(token=_TOKENS, in_header=st.booleans())
def test_no_arbitrary_string_is_ever_allowed(
    monkeypatch: pytest.MonkeyPatch, token: str, in_header: bool
) -> None:
    config = AuthConfig(ISSUER, AUDIENCE, "http://127.0.0.1:9/.well-known/jwks.json")
    monkeypatch.setattr(
        authorizer, "VERIFIER", TokenVerifier(config, jwk_client=StaticJwks(trusted_jwks()))
    )
    event = (
        connect_event(headers={"Authorization": f"Bearer {token}"})
        if in_header
        else connect_event(token)
    )
    assert_denied(event)
