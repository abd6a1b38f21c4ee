"""Test key material for JWT tests: real RSA 2048 / EC P-256 keys, JWKS, tokens, a JWKS server.

Keys are generated with ``cryptography`` at test time (never stored). ``rsa_key()``/``ec_key()``
are shared by the whole session; ``new_rsa_key()``/``new_ec_key()`` make fresh ones.
``JwksServer`` serves key sets over HTTP on 127.0.0.1 so the real ``PyJWKClient`` is exercised.
``authorizer_context()`` is the Lambda context the authorizer is invoked with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK, PyJWKSet

from local.gateway import LambdaContext
from tests.support import FUNCTION_TIMEOUT_MS, TEST_ENV, lambda_context

ISSUER = TEST_ENV["AUTH_ISSUER"]
AUDIENCE = TEST_ENV["AUTH_AUDIENCE"]
SUBJECT = "user-7f3a"
TOKEN_LIFETIME_SECONDS = 300
AUTHORIZER_TIMEOUT_MS = FUNCTION_TIMEOUT_MS

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private signing key with the ``kid`` and ``alg`` its public JWK advertises."""

    kid: str
    alg: str
    private_key: PrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        public_key = self.private_key.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)
        else:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(public_key, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_rsa_key(kid: str = "rsa-key-1") -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def new_ec_key(kid: str = "ec-key-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@cache
def rsa_key() -> SigningKey:
    """The session's RSA key (in ``trusted_jwks()``)."""
    return new_rsa_key("rsa-key-1")


@cache
def ec_key() -> SigningKey:
    """The session's EC P-256 key (in ``trusted_jwks()``)."""
    return new_ec_key("ec-key-1")


@cache
def impostor_rsa_key() -> SigningKey:
    """Same ``kid`` as ``rsa_key()`` but other key material: what another issuer would hold."""
    return new_rsa_key(rsa_key().kid)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """The public JWKS document of ``keys``."""
    return {"keys": [key.public_jwk for key in keys]}


def trusted_jwks() -> dict[str, Any]:
    return jwks(rsa_key(), ec_key())


def standard_claims(
    sub: str | None = SUBJECT,
    *,
    issuer: str = ISSUER,
    audience: str | None = AUDIENCE,
    lifetime: int = TOKEN_LIFETIME_SECONDS,
    now: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """iss/sub/aud/iat/exp valid for ``lifetime`` seconds; ``None`` leaves a claim out."""
    issued_at = int(time.time()) if now is None else now
    claims: dict[str, Any] = {"iss": issuer, "iat": issued_at, "exp": issued_at + lifetime}
    if sub is not None:
        claims["sub"] = sub
    if audience is not None:
        claims["aud"] = audience
    return {**claims, **extra}


def make_token(
    key: SigningKey | None = None,
    *,
    kid: str | None = None,
    omit_kid: bool = False,
    alg: str | None = None,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A JWT with exactly ``claims`` signed by ``key`` (default ``rsa_key()``).

    ``kid`` and ``alg`` default to the key's; ``omit_kid=True`` leaves ``kid`` out of the header.
    Use ``standard_claims()`` for a valid claim set: ``make_token(**standard_claims())``.
    """
    key = key or rsa_key()
    header: dict[str, Any] = dict(headers or {})
    if not omit_kid:
        header["kid"] = kid or key.kid
    return jwt.encode(claims, key.private_key, algorithm=alg or key.alg, headers=header)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def assemble_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS built by hand, for tokens PyJWT refuses to produce (``none``, forged)."""
    return ".".join(
        (
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(claims).encode()),
            b64url(signature),
        )
    )


def hs256_token(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """HS256 over ``secret`` — e.g. an RSA public key's PEM, the classic key-confusion attack."""
    full_header = {"alg": "HS256", "typ": "JWT", **header}
    signing_input = ".".join(
        (b64url(json.dumps(full_header).encode()), b64url(json.dumps(claims).encode()))
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def authorizer_context(remaining_ms: int = AUTHORIZER_TIMEOUT_MS) -> LambdaContext:
    """A Lambda context (local mode's) with ``remaining_ms`` left before the function times out."""
    return lambda_context("authorizer", remaining_ms)


class StaticJwks:
    """An in-memory signing-key source (the ``jwk_client=`` of ``TokenVerifier``), no network."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._keys = PyJWKSet.from_dict(document).keys

    def get_signing_key(self, kid: str, deadline: float | None = None) -> PyJWK:
        for key in self._keys:
            if key.key_id == kid:
                return key
        raise jwt.exceptions.PyJWKClientError("Unable to find a signing key that matches")


@dataclass
class _Route:
    body: bytes
    status: int = 200
    delay_seconds: float = 0.0
    trickle_seconds: float = 0.0
    hits: int = 0


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 (free port). Every ``serve()`` gets a fresh, unique URL.

    Unique URLs matter: ``runtime.auth.shared_jwk_client`` caches one client per URL for the
    process, so a reused URL would answer from another test's cached key set.
    """

    _routes: dict[str, _Route] = field(default_factory=dict)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> JwksServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = server._routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route.hits += 1
                if route.delay_seconds and server._release.wait(route.delay_seconds):
                    return  # the server is stopping: drop the slow request
                self.send_response(route.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if not route.trickle_seconds:
                    self.wfile.write(route.body)
                    return
                for index in range(len(route.body)):
                    # One byte at a time: every socket read succeeds well within its timeout.
                    self.wfile.write(route.body[index : index + 1])
                    self.wfile.flush()
                    if server._release.wait(route.trickle_seconds):
                        return

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve(
        self,
        document: dict[str, Any] | bytes,
        *,
        status: int = 200,
        delay_seconds: float = 0.0,
        trickle_seconds: float = 0.0,
    ) -> str:
        """Serve ``document`` (a JWKS dict, or raw bytes) at a new URL and return that URL.

        ``delay_seconds``: silence before the answer; ``trickle_seconds``: the body is sent one
        byte per that many seconds."""
        assert self._server is not None, "start() the server first"
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        path = f"/{uuid.uuid4().hex}/.well-known/jwks.json"
        self._routes[path] = _Route(body, status, delay_seconds, trickle_seconds)
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def hits(self, url: str) -> int:
        """How many requests reached ``url``."""
        return self._routes[urlparse(url).path].hits
