"""A signing key, its JWKS served on loopback, and tokens: what the authorizer's cold start needs.

The authorizer fetches the JWKS on its first event, as it does in Lambda, so the cold start
measured includes that round trip (to loopback here, to the issuer in AWS).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from benchmarks.environment import LOOPBACK
from runtime import schema

ISSUER = "https://issuer.benchmark.invalid"
AUDIENCE = "rag-websocket-benchmark"
KEY_ID = "benchmark-key-1"
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_LIFETIME_SECONDS = 3600


@dataclass(frozen=True)
class Issuer:
    """An RS256 key pair and the URL its public JWKS is served at."""

    private_key: rsa.RSAPrivateKey
    jwks_url: str

    def token(self, subject: str) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
        }
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": KEY_ID})

    def auth_environment(self) -> dict[str, str]:
        """What ``AuthConfig.from_env`` reads."""
        return {
            schema.ENV_AUTH_ISSUER: ISSUER,
            schema.ENV_AUTH_AUDIENCE: AUDIENCE,
            schema.ENV_AUTH_JWKS_URL: self.jwks_url,
        }


def _jwks(private_key: rsa.RSAPrivateKey) -> bytes:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update(kid=KEY_ID, alg="RS256", use="sig")
    return json.dumps({"keys": [jwk]}).encode("utf-8")


@contextmanager
def serve_issuer() -> Iterator[Issuer]:
    """A fresh key whose JWKS an HTTP server on a free loopback port serves until the block ends."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = _jwks(private_key)

    class JwksHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != JWKS_PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((LOOPBACK, 0), JwksHandler)
    thread = threading.Thread(target=server.serve_forever, name="jwks-server", daemon=True)
    thread.start()
    try:
        yield Issuer(private_key, f"http://{LOOPBACK}:{server.server_address[1]}{JWKS_PATH}")
    finally:
        server.shutdown()
        server.server_close()
