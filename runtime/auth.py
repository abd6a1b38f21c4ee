"""JWT verification against the issuer's JWKS (RS256 / ES256), for the ``$connect`` authorizer.

Two outcomes besides the claims, so that the authorizer can tell whose fault a refusal is:
``InvalidTokenError`` when the token is not acceptable (the client must get a new one), and
``VerificationUnavailableError`` when the token could not be checked at all (the JWKS is
unreachable, slow or malformed, or verification crashed: the client should retry later). Both
carry a short fixed reason that is safe to log: it never contains any part of the token.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future
from functools import cache
from typing import Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient
from jwt.types import Options

from runtime import schema
from runtime.config import AuthConfig

TIME_CLAIMS = ("exp", "nbf", "iat")


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


# Most specific first: InvalidSignatureError is a DecodeError, every one is a PyJWTError. Every
# failure of the key set itself was already turned into VerificationUnavailableError by
# BoundedJWKClient, so a PyJWKClientError left here is an unknown kid: the token's fault.
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
    (jwt.exceptions.PyJWKClientError, "no matching signing key"),
    (jwt.exceptions.DecodeError, "malformed token"),
)


class InvalidTokenError(Exception):
    """The token is not acceptable. ``reason`` is safe to log: it never contains the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VerificationUnavailableError(Exception):
    """The token could not be checked, through no fault of its own (the JWKS is unreachable,
    too slow or malformed). ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SigningKeySource(Protocol):
    """Where signing keys come from: ``BoundedJWKClient`` in production, a stub in tests.

    ``deadline`` is a ``time.monotonic()`` instant: a fetch still running then is given up.
    """

    def get_signing_key(self, kid: str, deadline: float | None = None) -> PyJWK: ...


class BoundedJWKClient(PyJWKClient):
    """``PyJWKClient`` with a fetch bounded in TOTAL time and failures that say whose they are.

    ``PyJWKClient``'s ``timeout`` bounds each socket operation, so an endpoint that trickles a
    byte per second holds a fetch for as long as it likes. Here the fetch runs on a worker thread
    and the caller waits for it until its deadline only. At most one fetch runs at a time: a
    caller that finds one running waits for it instead of starting another, and a fetch that
    finishes after its caller gave up still fills the cache for the next one.
    """

    def __init__(self, jwks_url: str) -> None:
        super().__init__(
            jwks_url,
            # cache_keys stays off: its per-kid LRU never expires, which would keep accepting a
            # key the issuer has withdrawn. The key-set cache already spares the network.
            cache_jwk_set=True,
            lifespan=schema.JWKS_CACHE_SECONDS,
            timeout=schema.JWKS_TIMEOUT_SECONDS,
            cooldown_duration=schema.JWKS_REFRESH_COOLDOWN_SECONDS,
        )
        self._deadline = threading.local()
        self._fetch_lock = threading.Lock()
        self._fetch: Future[Any] | None = None

    def get_signing_key(self, kid: str, deadline: float | None = None) -> PyJWK:
        self._deadline.value = deadline
        try:
            return super().get_signing_key(kid)
        finally:
            self._deadline.value = None

    def get_signing_keys(self, refresh: bool = False) -> list[PyJWK]:
        """The key set's signing keys; a key set we cannot get or read is our problem."""
        try:
            return super().get_signing_keys(refresh)
        except (jwt.exceptions.PyJWKClientConnectionError, OSError):
            raise VerificationUnavailableError("JWKS unreachable") from None
        except jwt.exceptions.PyJWKSetError:
            raise VerificationUnavailableError("JWKS has no usable key") from None
        except (jwt.exceptions.PyJWKClientError, ValueError):
            # Not a JSON object, or no signing key in it (json's errors are ValueErrors).
            raise VerificationUnavailableError("JWKS malformed") from None

    def fetch_data(self) -> Any:
        deadline = getattr(self._deadline, "value", None)
        if deadline is None:
            deadline = time.monotonic() + schema.JWKS_TIMEOUT_SECONDS
        with self._fetch_lock:
            if self._fetch is None or self._fetch.done():
                self._fetch = Future()
                threading.Thread(
                    target=self._fetch_into, args=(self._fetch,), name="jwks-fetch", daemon=True
                ).start()
            fetch = self._fetch
        try:
            return fetch.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise VerificationUnavailableError("JWKS too slow") from None

    def _fetch_into(self, future: Future[Any]) -> None:
        try:
            future.set_result(super().fetch_data())
        except BaseException as exc:  # handed to the waiting caller, which re-raises it
            future.set_exception(exc)


@cache
def shared_jwk_client(jwks_url: str) -> BoundedJWKClient:
    """One client per JWKS URL and container, so the key set is fetched once per lifespan."""
    return BoundedJWKClient(jwks_url)


class TokenVerifier:
    """Verifies a bearer JWT and returns its claims; ``claims["sub"]`` is the userId."""

    def __init__(self, config: AuthConfig, jwk_client: SigningKeySource | None = None) -> None:
        self.config = config
        self._keys: SigningKeySource = (
            jwk_client if jwk_client is not None else shared_jwk_client(config.jwks_url)
        )

    def verify(
        self, token: str, within_seconds: float = schema.JWKS_TIMEOUT_SECONDS
    ) -> dict[str, Any]:
        """The token's verified claims, ``InvalidTokenError`` (the token's fault) or
        ``VerificationUnavailableError`` (ours); never anything else. A JWKS fetch gives up
        after ``within_seconds`` (at most ``schema.JWKS_TIMEOUT_SECONDS``)."""
        deadline = time.monotonic() + max(0.0, min(within_seconds, schema.JWKS_TIMEOUT_SECONDS))
        try:
            return self._verify(token, deadline)
        except (InvalidTokenError, VerificationUnavailableError):
            raise
        except jwt.exceptions.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"missing {exc.claim} claim") from None
        except jwt.exceptions.PyJWTError as exc:
            raise InvalidTokenError(_reason(exc)) from None
        except Exception:
            # A crash is not the token's fault; nothing of it is kept, its message could quote
            # the token.
            raise VerificationUnavailableError("verification failed") from None

    def _verify(self, token: str, deadline: float) -> dict[str, Any]:
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
        _check_time_claims(jwt.decode(token, options={"verify_signature": False}))
        key = self._keys.get_signing_key(kid, deadline)
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


def _check_time_claims(claims: dict[str, Any]) -> None:
    """RFC 7519 §2: a NumericDate is a JSON number. PyJWT reads them with ``int()``, which would
    accept ``"99999999999"`` or ``true``; checked on the unverified claims, so before PyJWT."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        # Python's json reads NaN and Infinity, which no JSON number is.
        if not number or (isinstance(value, float) and not math.isfinite(value)):
            raise InvalidTokenError(f"invalid {name} claim")


def _reason(exc: Exception) -> str:
    for exc_type, reason in _REASONS:
        if isinstance(exc, exc_type):
            return reason
    return "invalid token"
