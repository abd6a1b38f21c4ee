"""JWT verification against the issuer's JWKS (RS256 / ES256), for the ``$connect`` authorizer.

Every failure, from a malformed token to an unreachable JWKS, raises one ``InvalidTokenError``
whose reason is a short fixed string: callers deny on it and may log it, because it never
carries any part of the token.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient
from jwt.types import Options

from runtime import schema
from runtime.config import AuthConfig


def _decode_options(*, verify_aud: bool) -> Options:
    return {
        "require": ["exp", "iss", "sub"],
        "verify_signature": True,
        "verify_aud": verify_aud,
        "verify_exp": True,
        "verify_nbf": True,
        "verify_iat": True,
        "verify_iss": True,
        "verify_sub": True,
        "enforce_minimum_key_length": True,
    }


# Most specific first: InvalidSignatureError is a DecodeError, every one is a PyJWTError.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.exceptions.ExpiredSignatureError, "token expired"),
    (jwt.exceptions.ImmatureSignatureError, "token not yet valid"),
    (jwt.exceptions.InvalidIssuerError, "wrong issuer"),
    (jwt.exceptions.InvalidAudienceError, "wrong audience"),
    (jwt.exceptions.InvalidSignatureError, "invalid signature"),
    (jwt.exceptions.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.exceptions.InvalidIssuedAtError, "invalid iat claim"),
    (jwt.exceptions.InvalidSubjectError, "invalid sub claim"),
    (jwt.exceptions.InvalidKeyError, "signing key rejected"),
    (jwt.exceptions.PyJWKClientConnectionError, "JWKS unreachable"),
    (jwt.exceptions.PyJWKSetError, "JWKS has no usable key"),
    (jwt.exceptions.PyJWKClientError, "no matching signing key"),
    (jwt.exceptions.DecodeError, "malformed token"),
)


class InvalidTokenError(Exception):
    """The token is not acceptable. ``reason`` is safe to log: it never contains the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SigningKeySource(Protocol):
    """Where signing keys come from: ``PyJWKClient`` in production, a stub in tests."""

    def get_signing_key(self, kid: str) -> PyJWK: ...


@cache
def shared_jwk_client(jwks_url: str) -> PyJWKClient:
    """One ``PyJWKClient`` per JWKS URL and container, so the key set is fetched once per lifespan.

    ``cache_keys`` stays off: its per-kid LRU never expires, which would keep accepting a key the
    issuer has withdrawn. The key-set cache (``lifespan``) already spares the network per request,
    and an unknown kid triggers at most one refresh per cooldown.
    """
    return PyJWKClient(
        jwks_url,
        cache_jwk_set=True,
        lifespan=schema.JWKS_CACHE_SECONDS,
        timeout=schema.JWKS_TIMEOUT_SECONDS,
    )


class TokenVerifier:
    """Verifies a bearer JWT and returns its claims; ``claims["sub"]`` is the userId."""

    def __init__(self, config: AuthConfig, jwk_client: SigningKeySource | None = None) -> None:
        self.config = config
        self._keys: SigningKeySource = (
            jwk_client if jwk_client is not None else shared_jwk_client(config.jwks_url)
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The token's verified claims, or ``InvalidTokenError``; never anything else."""
        try:
            return self._verify(token)
        except InvalidTokenError:
            raise
        except jwt.exceptions.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"missing {exc.claim} claim") from None
        except jwt.exceptions.PyJWTError as exc:
            raise InvalidTokenError(_reason(exc)) from None
        except Exception:
            # A JWKS answering non-JSON, a connection reset mid-body...: deny, never allow.
            raise InvalidTokenError("verification failed") from None

    def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > schema.MAX_TOKEN_BYTES or (
            len(token.encode("utf-8", "surrogatepass")) > schema.MAX_TOKEN_BYTES
        ):
            raise InvalidTokenError("token too large")
        if not token.isascii():
            raise InvalidTokenError("malformed token")
        header = jwt.get_unverified_header(token)
        # Checked before any JWKS lookup, so `none`/HS256 tokens cost no network call.
        if header.get("alg") not in schema.ALLOWED_JWT_ALGORITHMS:
            raise InvalidTokenError("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError("missing kid")
        key = self._keys.get_signing_key(kid)
        if key.algorithm_name not in schema.ALLOWED_JWT_ALGORITHMS:
            raise InvalidTokenError("algorithm not allowed")
        access_token = self.config.token_use == "access"  # noqa: S105 - a token type
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            # The key's own algorithm: a token may not pick another one for this key.
            algorithms=[key.algorithm_name],
            issuer=self.config.issuer,
            # Cognito access tokens carry `client_id` instead of `aud`.
            audience=None if access_token else self.config.audience,
            leeway=schema.JWT_LEEWAY_SECONDS,
            options=_decode_options(verify_aud=not access_token),
        )
        self._check_cognito_claims(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise InvalidTokenError("missing sub claim")
        return claims

    def _check_cognito_claims(self, claims: dict[str, Any]) -> None:
        expected_use = self.config.token_use
        if expected_use is None:
            return
        if claims.get("token_use") != expected_use:
            raise InvalidTokenError("wrong token_use")
        if expected_use == "access" and claims.get("client_id") != self.config.audience:
            raise InvalidTokenError("wrong client_id")


def _reason(exc: Exception) -> str:
    for exc_type, reason in _REASONS:
        if isinstance(exc, exc_type):
            return reason
    return "invalid token"
