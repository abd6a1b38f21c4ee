"""Dev tokens: an RS256 signing key kept under ``.local/``, its JWKS, and tokens it signs.

The key is created once (``.local/dev-signing-key.pem``, mode 0600, gitignored) and reused, so
``python -m local token --user alice`` works with or without a running gateway and its token
is accepted by any gateway started from the same folder, also after a restart. Issuer and
audience are fixed local values; the gateway serves the JWKS at ``/.well-known/jwks.json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

LOCAL_ISSUER = "https://auth.rag-websocket.localhost"
LOCAL_AUDIENCE = "rag-websocket-local"
DEFAULT_STATE_DIR = Path(".local")
KEY_FILE_NAME = "dev-signing-key.pem"
DEFAULT_TOKEN_TTL_SECONDS = 24 * 60 * 60
ALGORITHM = "RS256"
RSA_KEY_BITS = 2048


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DevTokens:
    """Signs dev tokens with one RSA key; ``kid`` is the key's RFC 7638 thumbprint."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self._private_key = private_key
        public_jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
        self._public_jwk = {name: public_jwk[name] for name in ("kty", "n", "e")}
        canonical = json.dumps(self._public_jwk, separators=(",", ":"), sort_keys=True)
        self.kid = _b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    @classmethod
    def load_or_create(cls, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> DevTokens:
        """The key in ``state_dir``, created (atomically, 0600) on first use."""
        state_dir = Path(state_dir)
        path = state_dir / KEY_FILE_NAME
        if not path.exists():
            state_dir.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            draft = state_dir / f".{KEY_FILE_NAME}.{os.getpid()}"
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
            try:
                # link() fails if another process won the race: then its key is the one.
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path} is not an RSA private key; delete it to get a new one")
        return cls(loaded)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._public_jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}]}

    def issue(
        self,
        user_id: str,
        *,
        ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
        claims: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> str:
        """A token for ``user_id`` (its ``sub``), valid ``ttl_seconds``; ``claims`` override."""
        if not user_id:
            raise ValueError("user_id must be a non-empty string, e.g. 'alice'")
        issued_at = int(time.time() if now is None else now)
        payload: dict[str, Any] = {
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": user_id,
            "username": user_id,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + ttl_seconds,
            **(claims or {}),
        }
        return jwt.encode(
            payload, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid}
        )
