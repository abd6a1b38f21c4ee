"""TokenVerifier with real RSA 2048 / EC P-256 keys, in memory and against a local JWKS server,
and the authorizer's configuration (AuthConfig)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from runtime import schema
from runtime.auth import (
    BoundedJWKClient,
    InvalidTokenError,
    TokenVerifier,
    VerificationUnavailableError,
    shared_jwk_client,
)
from runtime.config import AuthConfig, ConfigError
from runtime.schema import TokenUse
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
    jwks,
    make_token,
    new_rsa_key,
    rsa_key,
    standard_claims,
    trusted_jwks,
)
from tests.support import PROJECT_ROOT

CLIENT_ID = AUDIENCE
AUTH0_ISSUER = "https://tenant.auth0.com/"  # Auth0 and Azure AD issuers end with "/"


def verifier(
    token_use: TokenUse | None = None, document: dict[str, Any] | None = None
) -> TokenVerifier:
    config = AuthConfig(ISSUER, AUDIENCE, "https://issuer.test.invalid/jwks", token_use)
    return TokenVerifier(config, jwk_client=StaticJwks(document or trusted_jwks()))


def reason_for(token: str, token_use: TokenUse | None = None) -> str:
    with pytest.raises(InvalidTokenError) as info:
        verifier(token_use).verify(token)
    assert not token or token not in info.value.reason
    return info.value.reason


def tamper_payload(token: str) -> str:
    header, _, signature = token.split(".")
    forged = b64url(json.dumps(standard_claims(sub="admin")).encode())
    return f"{header}.{forged}.{signature}"


def tamper_signature(token: str) -> str:
    signing_input, _, signature = token.rpartition(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    return f"{signing_input}.{flipped}"


# --- acceptance ------------------------------------------------------------------------------


def test_accepts_rs256_token_and_returns_its_claims() -> None:
    claims = verifier().verify(make_token(rsa_key(), **standard_claims(email="a@example.com")))

    assert claims["sub"] == SUBJECT
    assert claims["iss"] == ISSUER
    assert claims["email"] == "a@example.com"


def test_accepts_es256_token() -> None:
    assert verifier().verify(make_token(ec_key(), **standard_claims()))["sub"] == SUBJECT


def test_accepts_token_without_iat() -> None:
    claims = standard_claims()
    del claims["iat"]
    assert verifier().verify(make_token(**claims))["sub"] == SUBJECT


def test_leeway_accepts_a_just_expired_token() -> None:
    now = int(time.time())
    token = make_token(
        **standard_claims(now=now - 300, lifetime=300 - schema.JWT_LEEWAY_SECONDS // 2)
    )
    assert verifier().verify(token)["sub"] == SUBJECT


def test_leeway_accepts_nbf_slightly_ahead_of_our_clock() -> None:
    nbf = int(time.time()) + schema.JWT_LEEWAY_SECONDS // 2
    assert verifier().verify(make_token(**standard_claims(nbf=nbf)))["sub"] == SUBJECT


def test_leeway_is_at_most_a_minute() -> None:
    assert 0 <= schema.JWT_LEEWAY_SECONDS <= 60


def test_accepts_cognito_id_token() -> None:
    token = make_token(**standard_claims(token_use="id", **{"cognito:username": "alice"}))
    assert verifier("id").verify(token)["sub"] == SUBJECT


def test_accepts_cognito_access_token_by_client_id() -> None:
    token = make_token(
        **standard_claims(audience=None, token_use="access", client_id=CLIENT_ID, username="alice")
    )
    claims = verifier("access").verify(token)
    assert claims["sub"] == SUBJECT
    assert claims["client_id"] == CLIENT_ID


# --- refusals (every reason is a fixed string that never quotes the token) -------------------


def _claims_without(name: str) -> dict[str, Any]:
    claims = standard_claims()
    del claims[name]
    return claims


REFUSALS: dict[str, tuple[Callable[[], str], str]] = {
    "alg none": (
        lambda: assemble_token({"alg": "none", "kid": rsa_key().kid}, standard_claims()),
        "algorithm not allowed",
    ),
    "hs256 with the rsa public key as secret": (
        lambda: hs256_token(rsa_key().public_pem, {"kid": rsa_key().kid}, standard_claims()),
        "algorithm not allowed",
    ),
    "ps256 is not on the allow-list": (
        lambda: make_token(rsa_key(), alg="PS256", **standard_claims()),
        "algorithm not allowed",
    ),
    "rs256 token naming the ec key": (
        lambda: make_token(rsa_key(), kid=ec_key().kid, **standard_claims()),
        "algorithm not allowed",
    ),
    "unknown kid": (
        lambda: make_token(new_rsa_key("someone-else"), **standard_claims()),
        "no matching signing key",
    ),
    "no kid": (lambda: make_token(omit_kid=True, **standard_claims()), "missing kid"),
    "key from another jwks": (
        lambda: make_token(impostor_rsa_key(), **standard_claims()),
        "invalid signature",
    ),
    "expired": (
        lambda: make_token(**standard_claims(now=int(time.time()) - 3600)),
        "token expired",
    ),
    "nbf in the future": (
        lambda: make_token(**standard_claims(nbf=int(time.time()) + 600)),
        "token not yet valid",
    ),
    "iat in the future": (
        lambda: make_token(**standard_claims(now=int(time.time()) + 600)),
        "token not yet valid",
    ),
    "wrong iss": (
        lambda: make_token(**standard_claims(issuer="https://evil.test.invalid")),
        "wrong issuer",
    ),
    "iss with our issuer as prefix": (
        lambda: make_token(**standard_claims(issuer=ISSUER + ".evil.test")),
        "wrong issuer",
    ),
    "wrong aud": (lambda: make_token(**standard_claims(audience="other-app")), "wrong audience"),
    "no aud": (lambda: make_token(**standard_claims(audience=None)), "missing aud claim"),
    "no exp": (lambda: make_token(**_claims_without("exp")), "missing exp claim"),
    "no iss": (lambda: make_token(**_claims_without("iss")), "missing iss claim"),
    "no sub": (lambda: make_token(**standard_claims(sub=None)), "missing sub claim"),
    "empty sub": (lambda: make_token(**standard_claims(sub="")), "missing sub claim"),
    "blank sub": (lambda: make_token(**standard_claims(sub="  ")), "missing sub claim"),
    "numeric sub": (lambda: make_token(**{**standard_claims(), "sub": 42}), "invalid sub claim"),
    # RFC 7519 §2: a NumericDate is a JSON number; PyJWT alone accepts these with int().
    "exp as a numeric string": (
        lambda: make_token(**{**standard_claims(), "exp": str(int(time.time()) + 3600)}),
        "invalid exp claim",
    ),
    "exp as a boolean": (
        lambda: make_token(**{**standard_claims(), "exp": True}),
        "invalid exp claim",
    ),
    "nbf as a numeric string": (
        lambda: make_token(**standard_claims(nbf=str(int(time.time()) - 60))),
        "invalid nbf claim",
    ),
    "nbf as a boolean": (lambda: make_token(**standard_claims(nbf=False)), "invalid nbf claim"),
    "iat as a numeric string": (
        lambda: make_token(**{**standard_claims(), "iat": str(int(time.time()))}),
        "invalid iat claim",
    ),
    "iat as a boolean": (
        lambda: make_token(**{**standard_claims(), "iat": True}),
        "invalid iat claim",
    ),
    "exp as infinity": (
        lambda: assemble_token(
            {"alg": "RS256", "kid": rsa_key().kid}, {**standard_claims(), "exp": float("inf")}
        ),
        "invalid exp claim",
    ),
    "tampered payload": (
        lambda: tamper_payload(make_token(**standard_claims())),
        "invalid signature",
    ),
    "tampered signature": (
        lambda: tamper_signature(make_token(**standard_claims())),
        "invalid signature",
    ),
    "over 8 KB": (
        lambda: make_token(**standard_claims(padding="x" * schema.MAX_TOKEN_BYTES)),
        "token too large",
    ),
    "not a jwt": (lambda: "not-a-jwt", "malformed token"),
    "non-ascii": (lambda: "é" + make_token(**standard_claims()), "malformed token"),
    "empty": (lambda: "", "malformed token"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refuses(case: str) -> None:
    make, expected_reason = REFUSALS[case]
    assert reason_for(make()) == expected_reason


def test_oversized_token_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    import jwt

    def no_parsing(*_: object, **__: object) -> None:
        raise AssertionError("an oversized token was parsed")

    monkeypatch.setattr(jwt, "get_unverified_header", no_parsing)
    monkeypatch.setattr(jwt, "decode", no_parsing)
    assert reason_for("a." * (schema.MAX_TOKEN_BYTES // 2 + 1)) == "token too large"


def test_token_of_exactly_the_limit_is_not_refused_for_size() -> None:
    token = "a" * schema.MAX_TOKEN_BYTES
    assert reason_for(token) == "malformed token"


@pytest.mark.parametrize(
    "case",
    ["alg none", "hs256 with the rsa public key as secret", "ps256 is not on the allow-list"],
)
def test_disallowed_algorithm_is_refused_without_a_key_lookup(case: str) -> None:
    class NoLookups:
        def get_signing_key(self, kid: str, deadline: float | None = None) -> Any:
            raise AssertionError("looked up a key for a token with a disallowed alg")

    config = AuthConfig(ISSUER, AUDIENCE, "https://issuer.test.invalid/jwks")
    with pytest.raises(InvalidTokenError, match="algorithm not allowed"):
        TokenVerifier(config, jwk_client=NoLookups()).verify(REFUSALS[case][0]())


def test_jwks_key_with_algorithm_outside_the_allow_list_is_refused() -> None:
    rs512_key = {**rsa_key().public_jwk, "alg": "RS512"}
    config = AuthConfig(ISSUER, AUDIENCE, "https://issuer.test.invalid/jwks")
    strict = TokenVerifier(config, jwk_client=StaticJwks({"keys": [rs512_key]}))
    with pytest.raises(InvalidTokenError, match="algorithm not allowed"):
        strict.verify(make_token(**standard_claims()))


def test_cognito_id_verifier_refuses_an_access_token() -> None:
    token = make_token(**standard_claims(audience=None, token_use="access", client_id=CLIENT_ID))
    assert reason_for(token, "id") == "missing aud claim"


def test_cognito_id_verifier_refuses_wrong_token_use() -> None:
    token = make_token(**standard_claims(token_use="access"))
    assert reason_for(token, "id") == "wrong token_use"


def test_cognito_access_verifier_refuses_an_id_token() -> None:
    token = make_token(**standard_claims(token_use="id", client_id=CLIENT_ID))
    assert reason_for(token, "access") == "wrong token_use"


def test_cognito_access_verifier_refuses_other_client_id() -> None:
    token = make_token(**standard_claims(audience=None, token_use="access", client_id="other"))
    assert reason_for(token, "access") == "wrong client_id"


def test_cognito_access_verifier_refuses_missing_client_id() -> None:
    token = make_token(**standard_claims(audience=None, token_use="access"))
    assert reason_for(token, "access") == "wrong client_id"


def test_an_unexpected_error_is_not_blamed_on_the_token() -> None:
    class Broken:
        def get_signing_key(self, kid: str, deadline: float | None = None) -> Any:
            raise ValueError(f"exploded on {kid}")

    config = AuthConfig(ISSUER, AUDIENCE, "https://issuer.test.invalid/jwks")
    with pytest.raises(VerificationUnavailableError, match=r"^verification failed$") as info:
        TokenVerifier(config, jwk_client=Broken()).verify(make_token(**standard_claims()))
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


# --- issuers are compared exactly ------------------------------------------------------------


def test_an_issuer_ending_with_a_slash_is_kept_and_matched_exactly() -> None:
    """Auth0's issuer is ``https://<tenant>.auth0.com/`` in config and in every token's ``iss``."""
    config = AuthConfig.from_env(
        {schema.ENV_AUTH_ISSUER: AUTH0_ISSUER, schema.ENV_AUTH_AUDIENCE: AUDIENCE}
    )
    assert config.issuer == AUTH0_ISSUER
    assert config.jwks_url == "https://tenant.auth0.com/.well-known/jwks.json"

    verifier = TokenVerifier(config, jwk_client=StaticJwks(trusted_jwks()))
    assert verifier.verify(make_token(**standard_claims(issuer=AUTH0_ISSUER)))["sub"] == SUBJECT
    with pytest.raises(InvalidTokenError, match="wrong issuer"):
        verifier.verify(make_token(**standard_claims(issuer=AUTH0_ISSUER.rstrip("/"))))


def test_an_issuer_without_a_slash_refuses_one_with_it() -> None:
    config = AuthConfig.from_env(
        {schema.ENV_AUTH_ISSUER: ISSUER, schema.ENV_AUTH_AUDIENCE: AUDIENCE}
    )
    verifier = TokenVerifier(config, jwk_client=StaticJwks(trusted_jwks()))
    with pytest.raises(InvalidTokenError, match="wrong issuer"):
        verifier.verify(make_token(**standard_claims(issuer=ISSUER + "/")))


def test_the_default_jwks_url_rule_is_stated_once() -> None:
    assert schema.default_jwks_url(AUTH0_ISSUER) == schema.default_jwks_url(
        "https://tenant.auth0.com"
    )
    config = AuthConfig.from_env(
        {schema.ENV_AUTH_ISSUER: AUTH0_ISSUER, schema.ENV_AUTH_AUDIENCE: AUDIENCE}
    )
    assert config.jwks_url == schema.default_jwks_url(AUTH0_ISSUER)


# --- the JWKS URL must be https:// (loopback excepted) ---------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://issuer.example/.well-known/jwks.json",
        "http://127.0.0.1:8080/.well-known/jwks.json",
        "http://127.8.9.10/jwks.json",
        "http://[::1]:8080/.well-known/jwks.json",
        "http://localhost:8080/.well-known/jwks.json",
    ],
)
def test_jwks_url_over_tls_or_on_loopback_is_accepted(url: str) -> None:
    env = {
        schema.ENV_AUTH_ISSUER: ISSUER,
        schema.ENV_AUTH_AUDIENCE: AUDIENCE,
        schema.ENV_AUTH_JWKS_URL: url,
    }
    assert AuthConfig.from_env(env).jwks_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://issuer.example/.well-known/jwks.json",
        "http://10.0.0.5/.well-known/jwks.json",
        # Not a destination: local mode gives its handlers 127.0.0.1 whatever --host it has.
        "http://0.0.0.0:8080/.well-known/jwks.json",
        "http://127.0.0.1.evil.example/jwks.json",
        "http://localhost.evil.example/jwks.json",
    ],
)
def test_jwks_url_in_clear_text_is_a_configuration_error(url: str) -> None:
    env = {
        schema.ENV_AUTH_ISSUER: ISSUER,
        schema.ENV_AUTH_AUDIENCE: AUDIENCE,
        schema.ENV_AUTH_JWKS_URL: url,
    }
    with pytest.raises(ConfigError, match=re.escape(f"AUTH_JWKS_URL={url!r} is not https://")):
        AuthConfig.from_env(env)


def test_a_clear_text_issuer_names_the_issuer_variable() -> None:
    """Without AUTH_JWKS_URL the keys come from the issuer's URL: the error names AUTH_ISSUER."""
    env = {schema.ENV_AUTH_ISSUER: "http://issuer.example", schema.ENV_AUTH_AUDIENCE: AUDIENCE}
    with pytest.raises(
        ConfigError, match=r"AUTH_ISSUER='http://issuer\.example' .* is not https://"
    ):
        AuthConfig.from_env(env)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://issuer.example/jwks", "jwks.json"])
def test_jwks_url_that_is_not_a_url_names_the_variable(url: str) -> None:
    env = {
        schema.ENV_AUTH_ISSUER: ISSUER,
        schema.ENV_AUTH_AUDIENCE: AUDIENCE,
        schema.ENV_AUTH_JWKS_URL: url,
    }
    with pytest.raises(ConfigError, match=re.escape(f"AUTH_JWKS_URL={url!r} is not a URL")):
        AuthConfig.from_env(env)


# --- the real PyJWKClient against a JWKS on 127.0.0.1 ----------------------------------------


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/.well-known/jwks.json"


def network_verifier(url: str, token_use: TokenUse | None = None) -> TokenVerifier:
    return TokenVerifier(AuthConfig(ISSUER, AUDIENCE, url, token_use))


def test_shared_jwk_client_is_one_per_url_with_the_schema_limits() -> None:
    client = shared_jwk_client("https://issuer.test.invalid/a/jwks.json")

    assert isinstance(client, BoundedJWKClient)
    assert client is shared_jwk_client("https://issuer.test.invalid/a/jwks.json")
    assert client is not shared_jwk_client("https://issuer.test.invalid/b/jwks.json")
    assert client.timeout == schema.JWKS_TIMEOUT_SECONDS
    assert client.cooldown_duration == schema.JWKS_REFRESH_COOLDOWN_SECONDS
    assert client.jwk_set_cache is not None
    assert client.jwk_set_cache.lifespan == schema.JWKS_CACHE_SECONDS


def test_unknown_kids_refetch_the_jwks_at_most_once_per_cooldown(jwks_server: JwksServer) -> None:
    """PyJWT 2.13 refetched the key set for every unknown kid (GHSA-fhv5-28vv-h8m8): tokens with
    made-up kids would turn the authorizer into an amplifier against the issuer."""
    url = jwks_server.serve(trusted_jwks())
    verifier = network_verifier(url)
    assert verifier.verify(make_token(**standard_claims()))["sub"] == SUBJECT

    for attempt in range(5):
        with pytest.raises(InvalidTokenError, match="no matching signing key"):
            verifier.verify(make_token(new_rsa_key(f"made-up-{attempt}"), **standard_claims()))
    assert jwks_server.hits(url) == 1


def _pyjwt_requirement(path: Path) -> Requirement:
    lines = (line.partition("#")[0].strip() for line in path.read_text().splitlines())
    (line,) = [line for line in lines if re.match(r"pyjwt\b", line, re.IGNORECASE)]
    return Requirement(line)


def test_the_layer_requires_a_pyjwt_that_rate_limits_jwks_refetches() -> None:
    """``cooldown_duration`` (one refetch per cooldown on unknown kids) came with PyJWT 2.14.0;
    2.13.0 refetches on every unknown kid. The pin in constraints.txt (what ``make`` installs and
    the tests run against) satisfies the layer's requirement."""
    required = _pyjwt_requirement(PROJECT_ROOT / "runtime" / "requirements.txt").specifier
    assert Version("2.13.0") not in required
    assert Version("2.14.0") in required
    (pinned,) = _pyjwt_requirement(PROJECT_ROOT / "constraints.txt").specifier
    assert pinned.operator == "=="
    assert Version(pinned.version) in required


def test_jwks_fetched_once_then_served_from_cache(jwks_server: JwksServer) -> None:
    url = jwks_server.serve(trusted_jwks())
    rs256 = make_token(rsa_key(), **standard_claims())
    es256 = make_token(ec_key(), **standard_claims())

    assert network_verifier(url).verify(rs256)["sub"] == SUBJECT
    assert network_verifier(url).verify(es256)["sub"] == SUBJECT
    assert jwks_server.hits(url) == 1


def test_unknown_kid_against_real_jwks_is_refused(jwks_server: JwksServer) -> None:
    url = jwks_server.serve(trusted_jwks())
    with pytest.raises(InvalidTokenError, match="no matching signing key"):
        network_verifier(url).verify(make_token(new_rsa_key("rotated"), **standard_claims()))


def test_key_from_another_jwks_against_real_jwks_is_refused(jwks_server: JwksServer) -> None:
    url = jwks_server.serve(jwks(rsa_key()))
    with pytest.raises(InvalidTokenError, match="invalid signature"):
        network_verifier(url).verify(make_token(impostor_rsa_key(), **standard_claims()))


# --- a JWKS we cannot use is not the token's fault ---------------------------------------------


def test_jwks_down_cannot_verify(refused_url: str) -> None:
    with pytest.raises(VerificationUnavailableError, match="JWKS unreachable"):
        network_verifier(refused_url).verify(make_token(**standard_claims()))


def test_jwks_error_status_cannot_verify(jwks_server: JwksServer) -> None:
    url = jwks_server.serve(b'{"message": "internal error"}', status=500)
    with pytest.raises(VerificationUnavailableError, match="JWKS unreachable"):
        network_verifier(url).verify(make_token(**standard_claims()))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>maintenance</html>", "JWKS malformed"),
        (b"[1, 2]", "JWKS malformed"),
        (json.dumps({"keys": [{**rsa_key().public_jwk, "use": "enc"}]}).encode(), "JWKS malformed"),
        (b'{"keys": [{"kty": "RSA", "kid": "k"}]}', "JWKS has no usable key"),
    ],
    ids=["not json", "not an object", "no signing key", "no key that parses"],
)
def test_jwks_malformed_cannot_verify(jwks_server: JwksServer, body: bytes, reason: str) -> None:
    url = jwks_server.serve(body)
    with pytest.raises(VerificationUnavailableError) as info:
        network_verifier(url).verify(make_token(**standard_claims()))
    assert info.value.reason == reason


def test_jwks_without_keys_cannot_verify(jwks_server: JwksServer) -> None:
    url = jwks_server.serve({"keys": []})
    with pytest.raises(VerificationUnavailableError, match="JWKS has no usable key"):
        network_verifier(url).verify(make_token(**standard_claims()))


def test_jwks_slow_gives_up_at_the_callers_budget(jwks_server: JwksServer) -> None:
    url = jwks_server.serve(trusted_jwks(), delay_seconds=schema.JWKS_TIMEOUT_SECONDS * 10)
    token = make_token(**standard_claims())

    started = time.monotonic()
    with pytest.raises(VerificationUnavailableError, match="JWKS too slow"):
        network_verifier(url).verify(token, within_seconds=0.5)
    # A correctness bound (the fetch gives up at its budget), not a performance benchmark.
    assert time.monotonic() - started < schema.JWKS_TIMEOUT_SECONDS


def test_jwks_trickling_gives_up_at_the_total_timeout(jwks_server: JwksServer) -> None:
    """Every read succeeds within PyJWKClient's per-read timeout; the total is what bounds it."""
    url = jwks_server.serve(trusted_jwks(), trickle_seconds=0.2)
    token = make_token(**standard_claims())

    started = time.monotonic()
    with pytest.raises(VerificationUnavailableError, match="JWKS too slow"):
        network_verifier(url).verify(token, within_seconds=60)
    # A correctness bound (never past schema.JWKS_TIMEOUT_SECONDS), not a performance benchmark.
    assert time.monotonic() - started < schema.JWKS_TIMEOUT_SECONDS + 1
