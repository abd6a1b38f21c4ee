"""TokenVerifier with real RSA 2048 / EC P-256 keys, in memory and against a local JWKS server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from jwt import PyJWKClient

from runtime import schema
from runtime.auth import InvalidTokenError, TokenVerifier, shared_jwk_client
from runtime.config import AuthConfig, TokenUse
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

CLIENT_ID = AUDIENCE


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
        def get_signing_key(self, kid: str) -> Any:
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


def test_unexpected_key_source_error_becomes_invalid_token() -> None:
    class Broken:
        def get_signing_key(self, kid: str) -> Any:
            raise ValueError(f"exploded on {kid}")

    config = AuthConfig(ISSUER, AUDIENCE, "https://issuer.test.invalid/jwks")
    with pytest.raises(InvalidTokenError, match=r"^verification failed$"):
        TokenVerifier(config, jwk_client=Broken()).verify(make_token(**standard_claims()))


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

    assert isinstance(client, PyJWKClient)
    assert client is shared_jwk_client("https://issuer.test.invalid/a/jwks.json")
    assert client is not shared_jwk_client("https://issuer.test.invalid/b/jwks.json")
    assert client.timeout == schema.JWKS_TIMEOUT_SECONDS
    assert client.jwk_set_cache is not None
    assert client.jwk_set_cache.lifespan == schema.JWKS_CACHE_SECONDS


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


def test_jwks_down_is_refused(refused_url: str) -> None:
    with pytest.raises(InvalidTokenError, match="JWKS unreachable"):
        network_verifier(refused_url).verify(make_token(**standard_claims()))


def test_jwks_error_status_is_refused(jwks_server: JwksServer) -> None:
    url = jwks_server.serve(b'{"message": "internal error"}', status=500)
    with pytest.raises(InvalidTokenError, match="JWKS unreachable"):
        network_verifier(url).verify(make_token(**standard_claims()))


def test_jwks_not_json_is_refused(jwks_server: JwksServer) -> None:
    url = jwks_server.serve(b"<html>maintenance</html>")
    with pytest.raises(InvalidTokenError):
        network_verifier(url).verify(make_token(**standard_claims()))


def test_jwks_without_keys_is_refused(jwks_server: JwksServer) -> None:
    url = jwks_server.serve({"keys": []})
    with pytest.raises(InvalidTokenError, match="JWKS has no usable key"):
        network_verifier(url).verify(make_token(**standard_claims()))


def test_jwks_slow_is_refused_within_the_timeout(jwks_server: JwksServer) -> None:
    url = jwks_server.serve(trusted_jwks(), delay_seconds=schema.JWKS_TIMEOUT_SECONDS * 10)
    token = make_token(**standard_claims())

    started = time.monotonic()
    with pytest.raises(InvalidTokenError, match="JWKS unreachable"):
        network_verifier(url).verify(token)
    # A correctness bound (the fetch gives up at its timeout), not a performance benchmark.
    assert time.monotonic() - started < schema.JWKS_TIMEOUT_SECONDS * 3
