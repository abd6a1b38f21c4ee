"""Every authentication attack of the issue, against the real handshake of the local gateway.

The stack runs this project's authorizer configured for Cognito ID tokens (``AUTH_TOKEN_USE=id``)
against the dev JWKS; each attack is one named test case: the upgrade is refused with 401, no
connection row is written, and the access log records the refused ``$connect``. The JWKS
endpoint down or slow is played on a gateway whose authorizer points at such an endpoint: the
handshake fails with 500 (not the token's fault: clients retry it), within the authorizer's JWKS
timeout, never allowed.

The same attacks at unit level (``tests/unit/test_authorizer_handler.py``, ``test_auth.py``)
check the reasons; docs/reliability.md's table maps each attack to both.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from local.background import Background
from local.gateway import AccessRecord, Gateway, GatewaySettings, RouteTable
from local.stack import LocalStack
from local.tokens import LOCAL_AUDIENCE, LOCAL_ISSUER, DevTokens
from runtime import schema
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore
from tests.jwt_keys import (
    JwksServer,
    assemble_token,
    b64url,
    hs256_token,
    make_token,
    new_rsa_key,
    rsa_key,
    standard_claims,
    trusted_jwks,
)
from tests.reliability.figures import Figures

ATTACKER = "mallory"
refused = Figures("attacks: refused handshakes on the local gateway")


@pytest.fixture(scope="module")
def stack_environment() -> dict[str, str]:
    """Read by the authorizer when the gateway loads it: Cognito ID tokens only."""
    return {schema.ENV_AUTH_TOKEN_USE: "id"}


def valid_token(stack: LocalStack, **claims: Any) -> str:
    return stack.token_for(ATTACKER, **{"token_use": "id", **claims})


def dev_public_pem(stack: LocalStack) -> bytes:
    [jwk] = stack.tokens.jwks()["keys"]
    public_key = RSAAlgorithm.from_jwk(json.dumps(jwk))
    assert isinstance(public_key, rsa.RSAPublicKey)
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def dev_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
        "sub": ATTACKER,
        "token_use": "id",
        "iat": now,
        "exp": now + 3600,
    }
    return {**claims, **overrides}


def tamper_payload(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = b64url(json.dumps({**claims, "sub": "admin"}).encode())
    return f"{header}.{forged}.{signature}"


def tamper_signature(token: str) -> str:
    signing_input, _, signature = token.rpartition(".")
    flipped = "A" if signature[:1] != "A" else "B"
    return f"{signing_input}.{flipped}{signature[1:]}"


ATTACKS: dict[str, Callable[[LocalStack, Any], str]] = {
    "alg none": lambda stack, _: assemble_token(
        {"alg": "none", "typ": "JWT", "kid": stack.tokens.kid}, dev_claims()
    ),
    "HS256 signed with the RSA public key": lambda stack, _: hs256_token(
        dev_public_pem(stack), {"kid": stack.tokens.kid}, dev_claims()
    ),
    "unknown kid": lambda stack, tmp: DevTokens.load_or_create(tmp).issue(
        ATTACKER, claims={"token_use": "id"}
    ),
    "key from another JWKS (same kid)": lambda stack, _: jwt.encode(
        dev_claims(),
        new_rsa_key().private_key,
        algorithm="RS256",
        headers={"kid": stack.tokens.kid},
    ),
    "expired": lambda stack, _: valid_token(stack, exp=int(time.time()) - 3600),
    "nbf in the future": lambda stack, _: valid_token(stack, nbf=int(time.time()) + 600),
    "wrong iss": lambda stack, _: valid_token(stack, iss="https://evil.test.invalid"),
    "wrong aud": lambda stack, _: valid_token(stack, aud="another-app"),
    "wrong token_use": lambda stack, _: valid_token(stack, token_use="access"),
    "tampered payload": lambda stack, _: tamper_payload(valid_token(stack)),
    "tampered signature": lambda stack, _: tamper_signature(valid_token(stack)),
}


def handshake_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as rejected, connect(url, open_timeout=30):
        pass
    return rejected.value.response.status_code


def rows_of(stack: LocalStack, user: str) -> list[Any]:
    store = ConnectionStore(StoreConfig(stack.aws.table_name), client=stack.aws.dynamodb())
    return store.list_for_user(user)


def test_a_valid_token_connects(stack: LocalStack) -> None:
    """The control: the setup lets the right token in, so each 401 below is the attack's."""
    token = stack.token_for("control-user", token_use="id")
    url = f"{stack.ws_url}?{schema.TOKEN_QUERY_PARAMETER}={token}"
    with connect(url, open_timeout=30) as ws:
        ws.send('{"action":"ping"}')
        assert json.loads(ws.recv(timeout=30))["event"] == "pong"


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_refused_with_401(
    attack: str,
    stack: LocalStack,
    access_log: list[AccessRecord],
    tmp_path: Any,
) -> None:
    token = ATTACKS[attack](stack, tmp_path)
    status = handshake_status(f"{stack.ws_url}?{schema.TOKEN_QUERY_PARAMETER}={token}")
    refused[attack] = status
    assert status == 401
    last_connect = [r for r in access_log if r.routeKey == "$connect"][-1]
    assert last_connect.status == 401
    assert rows_of(stack, ATTACKER) == []
    assert rows_of(stack, "admin") == []


def test_a_token_over_8_kb_never_connects(stack: LocalStack) -> None:
    """Refused before the authorizer: a URL over API Gateway's 4,096 characters is answered
    ``414``. The authorizer's own 8 KB check, for a token that does reach it, is a 401:
    ``test_denies_token_over_8_kb``."""
    token = valid_token(stack, padding="x" * schema.MAX_TOKEN_BYTES)
    assert len(token) > schema.MAX_TOKEN_BYTES
    address = urlsplit(stack.gateway.http_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request(
            "GET",
            f"/{stack.gateway.settings.stage}?{schema.TOKEN_QUERY_PARAMETER}={token}",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
                "Sec-WebSocket-Version": "13",
            },
        )
        status = connection.getresponse().status
    finally:
        connection.close()
    refused["token over 8 KB (URL over 4,096 characters)"] = status
    assert status == 414
    assert rows_of(stack, ATTACKER) == []


# --- the JWKS endpoint down or slow ----------------------------------------------------------


def _ok_connect(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"statusCode": 200}


@pytest.fixture
def gateway_with_jwks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Gateway]]:
    """A gateway whose authorizer (this project's) fetches its keys from the given URL."""
    running: list[Background[Gateway]] = []

    def start(jwks_url: str) -> Gateway:
        monkeypatch.setenv(schema.ENV_AUTH_JWKS_URL, jwks_url)
        monkeypatch.delenv(schema.ENV_AUTH_TOKEN_USE, raising=False)
        gateway = Gateway(
            RouteTable(
                routes={"$connect": _ok_connect}, authorizer="runtime.handlers.authorizer:handler"
            ),
            GatewaySettings(port=0, access_log=lambda record: None),
        )
        background = Background(gateway)
        running.append(background)
        return background.__enter__()

    yield start
    for background in running:
        background.__exit__(None, None, None)


def _timed_status(gateway: Gateway) -> tuple[int, float]:
    token = make_token(rsa_key(), **standard_claims())
    started = time.monotonic()
    status = handshake_status(f"{gateway.ws_url}?{schema.TOKEN_QUERY_PARAMETER}={token}")
    return status, time.monotonic() - started


def test_jwks_down_fails_with_500(gateway_with_jwks: Callable[[str], Gateway]) -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        gateway = gateway_with_jwks(f"http://127.0.0.1:{port}/.well-known/jwks.json")
        status, seconds = _timed_status(gateway)
    refused["JWKS endpoint down"] = status
    assert status == 500
    assert seconds < schema.JWKS_TIMEOUT_SECONDS * 3


def test_jwks_slow_fails_with_500_within_the_timeout(
    gateway_with_jwks: Callable[[str], Gateway],
) -> None:
    with JwksServer() as server:
        slow = server.serve(trusted_jwks(), delay_seconds=schema.JWKS_TIMEOUT_SECONDS * 10)
        gateway = gateway_with_jwks(slow)
        status, seconds = _timed_status(gateway)
    refused["JWKS endpoint slow"] = status
    assert status == 500
    # Fail fast: at the JWKS fetch's timeout, far inside the 29 s integration timeout.
    assert seconds < schema.JWKS_TIMEOUT_SECONDS * 3
