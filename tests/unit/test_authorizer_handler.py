"""The $connect REQUEST authorizer: Allow exactly the methodArn, 401 for a bad token, 500 otherwise.

API Gateway's documented answers to a Lambda authorizer
(https://docs.aws.amazon.com/apigateway/latest/developerguide/call-api-with-api-gateway-lambda-authorization.html,
and the example authorizer of aws/aws-lambda-go's events/README_ApiGatewayCustomAuthorizer.md):
an Allow policy → the request goes on (200); a Deny → 403; ``Exception("Unauthorized")`` → 401;
any other exception → 500. So a bad token raises ``Exception("Unauthorized")`` (the client must
get a new token) and a token that cannot be checked now (JWKS down, slow or malformed) raises
``AuthorizerUnavailableError`` (500: the client retries with backoff).

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
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import schema
from runtime.auth import TokenVerifier, VerificationUnavailableError
from runtime.config import AuthConfig
from runtime.handlers import authorizer
from runtime.observability import Metric, logger
from runtime.schema import TokenUse
from tests.jwt_keys import (
    AUDIENCE,
    ISSUER,
    SUBJECT,
    JwksServer,
    StaticJwks,
    assemble_token,
    authorizer_context,
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
from tests.support import PROJECT_ROOT, load_event

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect"


def connect_event(
    token: str | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The recorded authorizer event with ``?token=`` set, or without a query string at all.

    (API Gateway does not invoke the authorizer without ``?token=``; the tests still do.)"""
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
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Metric]:
    """The metrics the handler counts (still emitted for real)."""
    counted: list[Metric] = []
    real_count = authorizer.count

    def recording_count(metric: Metric, value: int = 1) -> None:
        counted.append(metric)
        real_count(metric, value)

    monkeypatch.setattr(authorizer, "count", recording_count)
    return counted


def invoke(event: Any, remaining_ms: int | None = None) -> Any:
    context = authorizer_context() if remaining_ms is None else authorizer_context(remaining_ms)
    return authorizer.handler(event, context)


def assert_denied(event: Any, counted: list[Metric] | None = None) -> None:
    """401: ``Exception("Unauthorized")`` exactly, counted as a denial."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - API Gateway wants a bare Exception
        invoke(event)
    assert type(info.value) is Exception
    assert info.value.args == ("Unauthorized",)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    if counted is not None:
        assert counted == [Metric.AUTHORIZATION_DENIED]


def assert_unavailable(
    event: Any, reason: str, metrics: list[Metric] | None = None, remaining_ms: int | None = None
) -> None:
    """500: any exception but ``Exception("Unauthorized")``, counted as an unexpected failure."""
    with pytest.raises(authorizer.AuthorizerUnavailableError) as info:
        invoke(event, remaining_ms)
    assert info.value.args == (f"cannot verify tokens now: {reason}",)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    if metrics is not None:
        assert metrics == [Metric.UNEXPECTED_FAILURES]


def allow_policy(context: dict[str, str]) -> dict[str, Any]:
    return {
        "principalId": SUBJECT,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [METHOD_ARN]}
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


def test_allows_rs256_token_for_exactly_the_method_arn(counted: list[Metric]) -> None:
    response = invoke(connect_event(make_token(rsa_key(), **standard_claims())))

    assert response == allow_policy({"userId": SUBJECT})
    assert counted == []


def test_allows_es256_token(counted: list[Metric]) -> None:
    response = invoke(connect_event(make_token(ec_key(), **standard_claims())))

    assert response == allow_policy({"userId": SUBJECT})
    assert counted == []


def test_policy_resource_is_the_event_method_arn_not_a_wildcard() -> None:
    other_arn = "arn:aws-us-gov:execute-api:us-gov-west-1:210987654321:zyx987/prod/$connect"
    event = connect_event(make_token(**standard_claims()))
    event["methodArn"] = other_arn

    (statement,) = invoke(event)["policyDocument"]["Statement"]

    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [other_arn]}


@pytest.mark.parametrize(
    "method_arn",
    [
        METHOD_ARN,
        "arn:aws-us-gov:execute-api:us-gov-west-1:210987654321:zyx987/prod/$connect",
        "arn:aws-cn:execute-api:cn-north-1:123456789012:a1b2c3/dev_2-x/$connect",
    ],
)
def test_the_policy_is_the_one_powertools_builds(method_arn: str) -> None:
    """Powertools' ``parse_api_gateway_arn`` and ``APIGatewayAuthorizerResponseWebSocket`` are
    the reference; the handler builds the same policy without importing them (their package
    imports every Powertools event class: tests/unit/test_cold_start.py)."""
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
        APIGatewayAuthorizerResponseWebSocket,
        parse_api_gateway_arn,
    )

    claims = standard_claims(email="alice@example.com", token_use="id", username="alice")
    arn = parse_api_gateway_arn(method_arn, is_websocket_authorizer=True)
    reference = APIGatewayAuthorizerResponseWebSocket(
        principal_id=SUBJECT,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context={
            "userId": SUBJECT,
            "tokenUse": "id",
            "email": "alice@example.com",
            "username": "alice",
        },
        partition=arn.partition,
    )
    reference.allow_route(arn.resource)
    assert arn.arn == method_arn

    event = connect_event(make_token(**claims))
    event["methodArn"] = method_arn
    assert invoke(event) == reference.asdict()


def test_context_carries_only_string_extras() -> None:
    claims = standard_claims(
        email="alice@example.com",
        token_use="id",
        groups=["admins"],
        **{"cognito:username": "alice", "email_verified": True},
    )
    response = invoke(connect_event(make_token(**claims)))

    assert response["context"] == {
        "userId": SUBJECT,
        "email": "alice@example.com",
        "tokenUse": "id",
        "username": "alice",
    }


def test_non_string_email_is_left_out_of_the_context() -> None:
    response = invoke(connect_event(make_token(**standard_claims(email=["x"]))))
    assert response["context"] == {"userId": SUBJECT}


def test_identity_source_is_the_token_query_parameter() -> None:
    """The stack configures ``route.request.querystring.token``; ``token_from_event`` reads it."""
    assert (
        f"route.request.querystring.{schema.TOKEN_QUERY_PARAMETER}"
        == schema.AUTHORIZER_IDENTITY_SOURCE
    )
    token = make_token(**standard_claims())
    assert authorizer.token_from_event(connect_event(token)) == token


@pytest.mark.parametrize("header_name", ["Authorization", "authorization"])
def test_an_authorization_header_is_never_read(header_name: str, counted: list[Metric]) -> None:
    """API Gateway answers 401 without invoking the authorizer when ``?token=`` is missing, so a
    header fallback could never run in AWS: a valid bearer header alone is a missing token."""
    event = connect_event(headers={header_name: f"Bearer {make_token(**standard_claims())}"})
    assert_denied(event, counted)


def test_an_empty_query_token_is_not_replaced_by_the_header(counted: list[Metric]) -> None:
    event = connect_event(
        "", headers={"Authorization": f"Bearer {make_token(**standard_claims())}"}
    )
    assert_denied(event, counted)


def test_accepts_cognito_id_token(monkeypatch: pytest.MonkeyPatch, jwks_url: str) -> None:
    use_verifier(monkeypatch, jwks_url, "id")
    token = make_token(**standard_claims(token_use="id", email="alice@example.com"))

    response = invoke(connect_event(token))

    assert response == allow_policy(
        {"userId": SUBJECT, "tokenUse": "id", "email": "alice@example.com"}
    )


def test_accepts_cognito_access_token(monkeypatch: pytest.MonkeyPatch, jwks_url: str) -> None:
    use_verifier(monkeypatch, jwks_url, "access")
    token = make_token(
        **standard_claims(audience=None, token_use="access", client_id=AUDIENCE, username="alice")
    )

    response = invoke(connect_event(token))

    assert response == allow_policy({"userId": SUBJECT, "tokenUse": "access", "username": "alice"})


# --- denied: each attack on its own ----------------------------------------------------------


def test_denies_missing_token(counted: list[Metric]) -> None:
    assert_denied(connect_event(), counted)


def test_denies_alg_none(counted: list[Metric]) -> None:
    token = assemble_token({"alg": "none", "typ": "JWT", "kid": rsa_key().kid}, standard_claims())
    assert_denied(connect_event(token), counted)


def test_denies_hs256_signed_with_the_rsa_public_key(counted: list[Metric]) -> None:
    token = hs256_token(rsa_key().public_pem, {"kid": rsa_key().kid}, standard_claims())
    assert_denied(connect_event(token), counted)


def test_denies_unknown_kid(counted: list[Metric]) -> None:
    token = make_token(new_rsa_key("not-in-the-jwks"), **standard_claims())
    assert_denied(connect_event(token), counted)


def test_denies_key_from_another_jwks(counted: list[Metric]) -> None:
    token = make_token(impostor_rsa_key(), **standard_claims())
    assert impostor_rsa_key().kid == rsa_key().kid
    assert_denied(connect_event(token), counted)


def test_denies_expired_token(counted: list[Metric]) -> None:
    token = make_token(**standard_claims(now=int(time.time()) - 3600, lifetime=600))
    assert_denied(connect_event(token), counted)


def test_denies_nbf_in_the_future(counted: list[Metric]) -> None:
    token = make_token(**standard_claims(nbf=int(time.time()) + 600))
    assert_denied(connect_event(token), counted)


def test_denies_wrong_issuer(counted: list[Metric]) -> None:
    token = make_token(**standard_claims(issuer="https://evil.test.invalid"))
    assert_denied(connect_event(token), counted)


def test_denies_wrong_audience(counted: list[Metric]) -> None:
    token = make_token(**standard_claims(audience="another-app"))
    assert_denied(connect_event(token), counted)


def test_denies_wrong_token_use(
    monkeypatch: pytest.MonkeyPatch, jwks_url: str, counted: list[Metric]
) -> None:
    use_verifier(monkeypatch, jwks_url, "id")
    token = make_token(**standard_claims(token_use="access"))
    assert_denied(connect_event(token), counted)


def test_denies_access_token_for_another_client_id(
    monkeypatch: pytest.MonkeyPatch, jwks_url: str, counted: list[Metric]
) -> None:
    use_verifier(monkeypatch, jwks_url, "access")
    token = make_token(**standard_claims(audience=None, token_use="access", client_id="other"))
    assert_denied(connect_event(token), counted)


def test_denies_tampered_payload(counted: list[Metric]) -> None:
    header, _, signature = make_token(**standard_claims()).split(".")
    forged = b64url(json.dumps(standard_claims(sub="admin")).encode())
    assert_denied(connect_event(f"{header}.{forged}.{signature}"), counted)


def test_denies_tampered_signature(counted: list[Metric]) -> None:
    signing_input, _, signature = make_token(**standard_claims()).rpartition(".")
    flipped = signature[:-6] + ("AAAAAA" if signature[-6:] != "AAAAAA" else "BBBBBB")
    assert_denied(connect_event(f"{signing_input}.{flipped}"), counted)


def test_denies_token_over_8_kb(counted: list[Metric]) -> None:
    token = make_token(**standard_claims(padding="x" * schema.MAX_TOKEN_BYTES))
    assert len(token) > schema.MAX_TOKEN_BYTES
    assert_denied(connect_event(token), counted)


def test_denies_missing_sub(counted: list[Metric]) -> None:
    assert_denied(connect_event(make_token(**standard_claims(sub=None))), counted)


# --- cannot verify now: 500 (the client retries), never 401 ---------------------------------


def test_jwks_down_is_a_500_not_a_401(
    monkeypatch: pytest.MonkeyPatch, counted: list[Metric]
) -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        use_verifier(monkeypatch, f"http://127.0.0.1:{port}/.well-known/jwks.json")
        event = connect_event(make_token(**standard_claims()))
        assert_unavailable(event, "JWKS unreachable", counted)


def test_jwks_error_status_is_a_500(
    monkeypatch: pytest.MonkeyPatch, jwks_server: JwksServer, counted: list[Metric]
) -> None:
    use_verifier(monkeypatch, jwks_server.serve(b'{"message": "busy"}', status=503))
    assert_unavailable(connect_event(make_token(**standard_claims())), "JWKS unreachable", counted)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"<html>maintenance</html>", "JWKS malformed"),
        (b'["not", "an", "object"]', "JWKS malformed"),
        ({"keys": [{**trusted_jwks()["keys"][0], "use": "enc"}]}, "JWKS malformed"),
        ({"keys": []}, "JWKS has no usable key"),
    ],
    ids=["not json", "not an object", "no signing key", "no keys"],
)
def test_malformed_jwks_is_a_500(
    monkeypatch: pytest.MonkeyPatch,
    jwks_server: JwksServer,
    counted: list[Metric],
    document: Any,
    reason: str,
) -> None:
    use_verifier(monkeypatch, jwks_server.serve(document))
    assert_unavailable(connect_event(make_token(**standard_claims())), reason, counted)


def test_silent_jwks_gives_up_before_the_lambda_times_out(
    monkeypatch: pytest.MonkeyPatch, jwks_server: JwksServer, counted: list[Metric]
) -> None:
    """The fetch's budget comes from ``context.get_remaining_time_in_millis()``: with 1.2 s left
    (a slow cold start, a short timeout), giving up at the 2 s JWKS timeout would be too late,
    and API Gateway would answer for a Lambda that timed out."""
    remaining_ms = 1200
    silent = jwks_server.serve(trusted_jwks(), delay_seconds=schema.JWKS_TIMEOUT_SECONDS * 10)
    use_verifier(monkeypatch, silent)
    event = connect_event(make_token(**standard_claims()))

    started = time.monotonic()
    assert_unavailable(event, "JWKS too slow", counted, remaining_ms=remaining_ms)
    # A correctness bound (the answer comes before the Lambda's deadline), not a benchmark.
    assert time.monotonic() - started < remaining_ms / 1000


def test_trickling_jwks_is_bounded_in_total_time(
    monkeypatch: pytest.MonkeyPatch, jwks_server: JwksServer, counted: list[Metric]
) -> None:
    """One byte every 0.2 s: each socket read succeeds long before PyJWKClient's per-read timeout,
    and the whole body would take minutes. The fetch still gives up at its total budget."""
    trickling = jwks_server.serve(trusted_jwks(), trickle_seconds=0.2)
    use_verifier(monkeypatch, trickling)
    event = connect_event(make_token(**standard_claims()))

    started = time.monotonic()
    assert_unavailable(event, "JWKS too slow", counted)
    # A correctness bound (the fetch gives up at its total timeout), not a performance benchmark.
    assert time.monotonic() - started < schema.JWKS_TIMEOUT_SECONDS + 1


def test_a_fetch_that_outlives_its_caller_serves_the_next_one(
    monkeypatch: pytest.MonkeyPatch, jwks_server: JwksServer
) -> None:
    """At most one fetch runs at a time; when it ends after its caller gave up, it fills the
    cache, and the next connect is allowed without a second request to the issuer."""
    url = jwks_server.serve(trusted_jwks(), delay_seconds=0.6)
    use_verifier(monkeypatch, url)
    event = connect_event(make_token(**standard_claims()))

    assert_unavailable(event, "JWKS too slow", remaining_ms=700)
    time.sleep(1.0)
    assert invoke(event)["principalId"] == SUBJECT
    assert jwks_server.hits(url) == 1


def test_a_crash_is_a_500(monkeypatch: pytest.MonkeyPatch, counted: list[Metric]) -> None:
    class Exploding(TokenVerifier):
        def verify(self, token: str, within_seconds: float = 0) -> dict[str, Any]:
            raise RuntimeError(f"bug while handling {token}")

    monkeypatch.setattr(authorizer, "VERIFIER", Exploding(authorizer.VERIFIER.config))
    assert_unavailable(connect_event(make_token(**standard_claims())), "authorizer failed", counted)


def test_a_verifier_that_cannot_verify_is_a_500(
    monkeypatch: pytest.MonkeyPatch, counted: list[Metric]
) -> None:
    class Unavailable(TokenVerifier):
        def verify(self, token: str, within_seconds: float = 0) -> dict[str, Any]:
            raise VerificationUnavailableError("verification failed")

    monkeypatch.setattr(authorizer, "VERIFIER", Unavailable(authorizer.VERIFIER.config))
    event = connect_event(make_token(**standard_claims()))
    assert_unavailable(event, "verification failed", counted)


@pytest.mark.parametrize(
    "method_arn",
    [
        None,
        "*",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/*",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/*",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234",
        "arn:aws:s3:::bucket/dev/$connect",
    ],
)
def test_an_event_without_a_usable_method_arn_is_a_500(
    method_arn: str | None, counted: list[Metric]
) -> None:
    """Only a misconfigured integration could send it: the operator's problem, not the user's."""
    event = connect_event(make_token(**standard_claims()))
    if method_arn is None:
        del event["methodArn"]
    else:
        event["methodArn"] = method_arn
    assert_unavailable(event, "event has no execute-api methodArn", counted)


def test_an_event_that_is_not_a_dict_is_a_500(counted: list[Metric]) -> None:
    assert_unavailable(["not", "an", "event"], "authorizer failed", counted)


def test_unexpected_failure_emits_the_unexpected_failures_metric(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        use_verifier(monkeypatch, f"http://127.0.0.1:{port}/.well-known/jwks.json")
        capsys.readouterr()
        assert_unavailable(connect_event(make_token(**standard_claims())), "JWKS unreachable")

    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Metrics"] == [{"Name": schema.UNEXPECTED_FAILURES_METRIC, "Unit": "Count"}]
    assert emf[schema.UNEXPECTED_FAILURES_METRIC] == [1.0]


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

    invoke(connect_event(valid))
    for token in (expired, forged):
        assert_denied(connect_event(token))

    class Exploding(TokenVerifier):
        def verify(self, token: str, within_seconds: float = 0) -> dict[str, Any]:
            raise RuntimeError(f"bug while handling {token}")

    monkeypatch.setattr(authorizer, "VERIFIER", Exploding(authorizer.VERIFIER.config))
    with pytest.raises(authorizer.AuthorizerUnavailableError) as failure:
        invoke(connect_event(valid))

    logged = debug_log.getvalue()
    out, err = capfd.readouterr()
    assert "authorization granted" in logged
    assert "authorization denied" in logged
    assert "authorizer failed" in logged
    for token in (valid, expired, forged):
        signature = token.rsplit(".", 1)[-1]
        for text in (logged, out, err, str(failure.value)):
            assert token not in text
            assert signature not in text


def test_every_log_line_carries_the_lambda_context(debug_log: io.StringIO) -> None:
    """The keys Powertools' ``inject_lambda_context`` puts on each line (cold start, function
    and request id), per thread (``handles_invocation``)."""
    context = authorizer_context()
    authorizer.handler(connect_event(make_token(**standard_claims())), context)

    (granted,) = [
        json.loads(line)
        for line in debug_log.getvalue().splitlines()
        if "authorization granted" in line
    ]
    assert granted["function_request_id"] == context.aws_request_id
    assert granted["function_name"] == context.function_name
    assert isinstance(granted["cold_start"], bool)
    assert granted["requestId"] == connect_event()["requestContext"]["requestId"]


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
    assert invoke(connect_event(token))["context"]["userId"] == SUBJECT
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
@given(token=_TOKENS)
def test_no_arbitrary_string_is_ever_allowed(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    """Never allowed, and always a 401: an arbitrary string is the client's fault, never ours."""
    config = AuthConfig(ISSUER, AUDIENCE, "http://127.0.0.1:9/.well-known/jwks.json")
    monkeypatch.setattr(
        authorizer, "VERIFIER", TokenVerifier(config, jwk_client=StaticJwks(trusted_jwks()))
    )
    assert_denied(connect_event(token))
