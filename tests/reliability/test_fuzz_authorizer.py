"""The ``$connect`` authorizer over properly signed tokens whose header and claims are mutated.

Every token is really signed (RSA, EC, HMAC over the RSA public key, or not at all), then up to
four of its parts are mutated: signer, algorithm, ``kid``, extra header fields, ``iss``,
``aud``, ``exp``, ``nbf``, ``iat``, ``sub``, ``token_use``/``client_id``, ``jti``, size; the
verifier expects a plain issuer, a Cognito ID token or a Cognito access token. The expected
verdict is computed here, from the rules (RFC 7519 and DESIGN §4), not by asking PyJWT: the
handler must Allow exactly when every check passes, and otherwise raise
``Exception("Unauthorized")`` (401: the token's fault) — never anything else, in particular
never the 500 that says the token could not be checked.

(Arbitrary strings, not JWTs, are fuzzed in ``tests/unit/test_authorizer_handler.py``; the
gateway's handshake in ``test_fuzz_gateway.py``.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import get_default_algorithms

from runtime import schema
from runtime.auth import InvalidTokenError, TokenVerifier
from runtime.config import AuthConfig
from runtime.handlers import authorizer
from runtime.schema import TokenUse
from tests.jwt_keys import (
    AUDIENCE,
    ISSUER,
    SigningKey,
    StaticJwks,
    assemble_token,
    authorizer_context,
    b64url,
    ec_key,
    hs256_token,
    impostor_rsa_key,
    new_rsa_key,
    rsa_key,
    trusted_jwks,
)
from tests.reliability.figures import Figures
from tests.support import load_event

EXAMPLES = 1500
METHOD_ARN = load_event("authorizer_request")["methodArn"]
LEEWAY = schema.JWT_LEEWAY_SECONDS
# Offsets from now, in seconds, kept well away from every boundary (now ± leeway) so that the
# seconds a run takes never change a verdict.
EXPIRED, ALMOST_EXPIRED, VALID_FOR_A_MINUTE, VALID_FOR_AN_HOUR = -3600, -(LEEWAY - 20), 60, 3600
NOT_YET, SLIGHTLY_AHEAD = 600, LEEWAY - 20
# RFC 7519 §2 NumericDate is a JSON number: numeric strings and booleans are not (PyJWT alone
# would read them with int()).
NOT_NUMBERS: tuple[Any, ...] = ("soon", "", [1], {"t": 1}, None, "99999999999", "0", True, False)
tried = Figures("fuzz: authorizer, signed tokens with mutated header and claims")


@cache
def stranger_key() -> SigningKey:
    """A key in no JWKS we trust, under a kid of its own."""
    return new_rsa_key("stranger-key")


SIGNERS = {
    "trusted-rsa": rsa_key,
    "trusted-ec": ec_key,
    "impostor": impostor_rsa_key,  # the trusted RSA key's kid, other key material
    "stranger": stranger_key,
}
TRUSTED = {"trusted-rsa", "trusted-ec"}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256")


@dataclass
class Case:
    """One token's recipe: what was signed, how, and the verifier's configuration."""

    token_use_config: TokenUse | None
    signer: str = "trusted-rsa"  # a SIGNERS key, "hs256-public-key" or "none"
    alg: str = "RS256"
    kid: Any = "own"  # "own", "other-trusted", "missing", or a literal value
    tampered: bool = False
    header_extras: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)

    def header_kid(self) -> Any:
        if self.kid == "own":
            key = SIGNERS.get(self.signer, rsa_key)()
            return key.kid
        if self.kid == "other-trusted":
            return ec_key().kid if self.signer != "trusted-ec" else rsa_key().kid
        return self.kid


def sign(alg: str, key: SigningKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS signed by hand: ``jwt.encode`` refuses some of the headers and claims
    (a non-string ``kid`` or ``iss``) that an attacker's token may well carry."""
    algorithm = get_default_algorithms()[alg]
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode())
        for part in ({"typ": "JWT", **header, "alg": alg}, claims)
    )
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.private_key))
    return f"{signing_input}.{b64url(signature)}"


def encode(case: Case) -> str:
    header = dict(case.header_extras)
    if case.kid != "missing":
        header["kid"] = case.header_kid()
    if case.signer == "none":
        token = assemble_token({**header, "alg": "none"}, case.claims)
    elif case.signer == "hs256-public-key":
        token = hs256_token(rsa_key().public_pem, header, case.claims)
    else:
        token = sign(case.alg, SIGNERS[case.signer](), header, case.claims)
    if case.tampered:
        signing_input, _, signature = token.rpartition(".")
        flipped = "A" if signature[:1] != "A" else "B"
        token = f"{signing_input}.{flipped}{signature[1:]}"
    return token


# --- the expected verdict, from the rules --------------------------------------------------


def _numeric_date(value: Any) -> float | None:
    """RFC 7519 §2 NumericDate: a JSON number (not a string, not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _audience_ok(aud: Any) -> bool:
    if isinstance(aud, str):
        return aud == AUDIENCE
    if isinstance(aud, list):
        return all(isinstance(item, str) for item in aud) and AUDIENCE in aud
    return False


def signature_ok(case: Case) -> bool:
    """Signed by the trusted key its ``kid`` names, with that key's own algorithm, intact."""
    if case.signer not in TRUSTED or case.tampered or case.kid != "own":
        return False
    return case.alg == SIGNERS[case.signer]().alg


def claims_ok(case: Case, now: float) -> bool:
    claims = case.claims
    if claims.get("iss") != ISSUER:
        return False
    exp = _numeric_date(claims.get("exp"))
    if exp is None or exp <= now - LEEWAY:
        return False
    for name in ("nbf", "iat"):
        if name in claims:
            moment = _numeric_date(claims[name])
            if moment is None or moment > now + LEEWAY:
                return False
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        return False
    if "jti" in claims and not isinstance(claims["jti"], str):
        return False
    if case.token_use_config == "access":
        # Cognito access tokens: `client_id` instead of `aud`, which is then not checked.
        return claims.get("token_use") == "access" and claims.get("client_id") == AUDIENCE
    if not _audience_ok(claims.get("aud")):
        return False
    return case.token_use_config is None or claims.get("token_use") == case.token_use_config


def expected_allow(case: Case, token: str, now: float) -> bool:
    if len(token.encode("utf-8")) > schema.MAX_TOKEN_BYTES:
        return False
    if "crit" in case.header_extras:
        return False  # RFC 7515 §4.1.11: no extension here is understood, so none is accepted
    return signature_ok(case) and claims_ok(case, now)


# --- mutations -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
PARTS = (
    "signer",
    "alg",
    "kid",
    "tampered",
    "header",
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "sub",
    "token_use",
    "jti",
    "size",
)


def _valid_claims(draw: st.DrawFn, config: TokenUse | None, now: int) -> dict[str, Any]:
    """Claims that pass every check for ``config``, in one of several valid shapes."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": draw(st.sampled_from(["user-7f3a", "alice@example.com", "ünïcode-user"])),
        "exp": now + draw(st.sampled_from([ALMOST_EXPIRED, VALID_FOR_A_MINUTE, VALID_FOR_AN_HOUR])),
    }
    if draw(st.booleans()):
        claims["iat"] = now - draw(st.sampled_from([0, 60, -SLIGHTLY_AHEAD]))
    if draw(st.booleans()):
        claims["nbf"] = now - draw(st.sampled_from([0, 3600, -SLIGHTLY_AHEAD]))
    if config == "access":
        claims |= {"token_use": "access", "client_id": AUDIENCE}
        if draw(st.booleans()):
            claims["aud"] = draw(st.sampled_from(["anything", AUDIENCE]))
    else:
        claims["aud"] = draw(st.sampled_from([AUDIENCE, [AUDIENCE], ["other-app", AUDIENCE]]))
        if config == "id":
            claims["token_use"] = "id"
    if draw(st.booleans()):
        claims["jti"] = "9f1c6a"
    return claims


def _mutate_claims(draw: st.DrawFn, part: str, claims: dict[str, Any], now: int) -> dict[str, Any]:
    def value_or_gone(*choices: Any) -> Any:
        return draw(st.sampled_from([*choices, "<absent>"]) | json_values)

    def dates(*offsets: int) -> Any:
        return draw(st.sampled_from([now + o for o in offsets] + list(NOT_NUMBERS)))

    mutated = dict(claims)
    if part == "iss":
        mutated["iss"] = value_or_gone(
            ISSUER + "/", ISSUER.upper(), "https://evil.test.invalid", ISSUER + ".evil", [ISSUER]
        )
    elif part == "aud":
        mutated["aud"] = value_or_gone(
            "other-app", ["other-app"], [], "", [AUDIENCE, 7], AUDIENCE.upper(), {"aud": AUDIENCE}
        )
    elif part == "exp":
        mutated["exp"] = draw(
            st.sampled_from([now + EXPIRED, now - LEEWAY - 60, "<absent>", 10**12, now + 3600.5])
            | st.sampled_from(NOT_NUMBERS)
        )
    elif part == "nbf":
        mutated["nbf"] = dates(NOT_YET, LEEWAY + 60, -3600)
    elif part == "iat":
        mutated["iat"] = dates(NOT_YET, LEEWAY + 60, -60)
    elif part == "sub":
        mutated["sub"] = value_or_gone("", "   ", 42, ["alice"], None, "admin")
    elif part == "token_use":
        mutated["token_use"] = value_or_gone("id", "access", "ID", "refresh")
        mutated["client_id"] = value_or_gone(AUDIENCE, "other-app")
    elif part == "jti":
        mutated["jti"] = value_or_gone(5, ["a"], "ok")
    elif part == "size":
        mutated["padding"] = "x" * draw(st.sampled_from([10, 5000, schema.MAX_TOKEN_BYTES]))
    return {name: value for name, value in mutated.items() if value != "<absent>"}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    now = int(time.time())
    config: TokenUse | None = draw(st.sampled_from([None, "id", "access"]))
    case = Case(token_use_config=config, claims=_valid_claims(draw, config, now))
    if draw(st.booleans()):
        case.signer, case.alg = "trusted-ec", "ES256"
    # Sorted: a set's iteration order depends on the hash seed, and the draws must not.
    for part in sorted(draw(st.sets(st.sampled_from(PARTS), max_size=4)), key=PARTS.index):
        tried[f"mutated {part}"] += 1
        if part == "signer":
            case.signer = draw(st.sampled_from([*SIGNERS, "hs256-public-key", "none"]))
            case.alg = {"trusted-ec": "ES256", "hs256-public-key": "HS256", "none": "none"}.get(
                case.signer, "RS256"
            )
        elif part == "alg" and case.signer not in ("trusted-ec", "hs256-public-key", "none"):
            case.alg = draw(st.sampled_from(RSA_ALGORITHMS))
        elif part == "kid":
            case.kid = draw(
                st.sampled_from(["other-trusted", "missing", "", "no-such-kid", 7, ["x"], None])
            )
        elif part == "tampered":
            case.tampered = True
        elif part == "header":
            case.header_extras = draw(
                st.dictionaries(
                    st.sampled_from(["typ", "cty", "jku", "x5u", "jwk", "x5c", "crit", "x-extra"]),
                    st.sampled_from(
                        [
                            "JWT",
                            "at+jwt",
                            "https://evil.test.invalid/jwks.json",
                            stranger_key().public_jwk,
                            ["exp"],
                        ]
                    )
                    | json_values,
                    min_size=1,
                    max_size=3,
                )
            )
        else:
            case.claims = _mutate_claims(draw, part, case.claims, now)
    return case


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_allows_exactly_the_tokens_that_pass_every_check(
    monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    # The trusted key set in memory: the real PyJWKClient is exercised in tests/unit.
    config = AuthConfig(ISSUER, AUDIENCE, "http://127.0.0.1:9/", case.token_use_config)
    verifier = TokenVerifier(config, jwk_client=StaticJwks(trusted_jwks()))
    monkeypatch.setattr(authorizer, "VERIFIER", verifier)
    token = encode(case)
    event = load_event("authorizer_request")
    event["queryStringParameters"] = {schema.TOKEN_QUERY_PARAMETER: token}
    event["multiValueQueryStringParameters"] = {schema.TOKEN_QUERY_PARAMETER: [token]}
    allow = expected_allow(case, token, time.time())
    tried["tokens"] += 1
    if allow:
        tried["expected allow"] += 1
        answer = authorizer.handler(event, authorizer_context())
        assert answer["principalId"] == case.claims["sub"]
        assert answer["context"]["userId"] == case.claims["sub"]
        [statement] = answer["policyDocument"]["Statement"]
        assert statement == {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": [METHOD_ARN],
        }
        return
    tried["expected deny"] += 1
    with pytest.raises(InvalidTokenError) as refused:
        verifier.verify(token)
    # The catch-all reason would mean an unexpected exception inside the verifier.
    assert refused.value.reason != "verification failed"
    tried[f"denied: {refused.value.reason}"] += 1
    with pytest.raises(Exception) as denied:  # noqa: PT011 - API Gateway wants a bare Exception
        authorizer.handler(event, authorizer_context())
    assert type(denied.value) is Exception, f"{type(denied.value).__name__}: {denied.value}"
    assert denied.value.args == ("Unauthorized",)


# --- where PyJWT alone is more lenient than RFC 7519 --------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "99999999999"},
        {"nbf": True},
        {"iat": "0"},
    ],
    ids=["exp as a numeric string", "nbf as a boolean", "iat as a numeric string"],
)
def test_numeric_dates_must_be_json_numbers(claims: dict[str, Any]) -> None:
    """PyJWT reads exp/nbf/iat with int(); TokenVerifier wants a JSON number (RFC 7519 §2)."""
    now = int(time.time())
    valid = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-7f3a", "exp": now + 3600}
    token = sign("RS256", rsa_key(), {"kid": rsa_key().kid}, {**valid, **claims})
    verifier = TokenVerifier(
        AuthConfig(ISSUER, AUDIENCE, "http://127.0.0.1:9/"), jwk_client=StaticJwks(trusted_jwks())
    )
    with pytest.raises(InvalidTokenError, match=f"invalid {next(iter(claims))} claim"):
        verifier.verify(token)


def test_the_oracle_agrees_on_a_plain_valid_token() -> None:
    """The expected-verdict function itself: a valid token is allowed, one change denies."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "exp": now + 3600}
    valid = Case(token_use_config=None, claims=claims)
    assert expected_allow(valid, encode(valid), now)
    for changed in (
        Case(None, claims={**claims, "aud": "x"}),
        Case(None, claims={**claims, "exp": now - 3600}),
        Case(None, claims={**claims, "sub": 1}),
        Case(None, kid="other-trusted", claims=claims),
        Case(None, alg="PS256", claims=claims),
        Case(None, signer="impostor", claims=claims),
        Case(None, tampered=True, claims=claims),
        Case(None, header_extras={"crit": ["exp"]}, claims=claims),
        Case("id", claims=claims),
        Case(None, claims={**claims, "padding": "x" * schema.MAX_TOKEN_BYTES}),
    ):
        assert not expected_allow(changed, encode(changed), now)
