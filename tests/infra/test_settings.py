"""Pulumi.yaml, the stack files and StackSettings say the same thing; bad config fails whole."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic.fields import FieldInfo

from components.settings import (
    LOG_RETENTION_DAYS,
    LogLevel,
    SettingsError,
    StackSettings,
    TokenUse,
    config_key,
    config_keys,
    parse_settings,
)
from runtime import schema
from tests.infra.conftest import ACCOUNT_STACK, AUDIENCE, ISSUER, PROJECT, run_stack
from tests.infra.mocks import config_from_stack_file
from tests.support import PROJECT_ROOT

PROJECT_FILE = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())
DECLARED: dict[str, dict[str, Any]] = PROJECT_FILE["config"]
PULUMI_TYPES = {"integer": int, "boolean": bool, "string": str, "array": list}
VALID = {"authIssuer": ISSUER, "authAudience": AUDIENCE, "accountStack": ACCOUNT_STACK}


def _field(key: str) -> FieldInfo:
    return next(
        info for name, info in StackSettings.model_fields.items() if config_key(name) == key
    )


def _python_type(info: FieldInfo) -> type:
    annotation = info.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return type(typing.get_args(annotation)[0])
    origin = typing.get_origin(annotation)
    return origin if isinstance(origin, type) else typing.cast(type, annotation)


def test_project_file_names_the_python_runtime_with_the_venv() -> None:
    assert PROJECT_FILE["name"] == PROJECT
    assert PROJECT_FILE["description"].strip()
    assert PROJECT_FILE["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv"},
    }


def test_every_setting_is_declared_with_type_default_and_description() -> None:
    assert sorted(DECLARED) == sorted(config_keys())
    for key, declaration in DECLARED.items():
        assert set(declaration) >= {"type", "default", "description"}, key
        assert declaration["description"].strip(), key
        info = _field(key)
        assert PULUMI_TYPES[declaration["type"]] is _python_type(info), key
        assert declaration["default"] == info.default, key


def test_defaults_are_valid_once_the_issuer_is_set() -> None:
    settings = parse_settings(VALID)
    assert settings.lambda_architecture == "arm64"
    assert settings.lambda_runtime == "python3.13"
    assert settings.lambda_settings.python_version == "3.13"
    assert settings.jwks_url == f"{ISSUER}/.well-known/jwks.json"
    assert settings.effective_stage_name("dev") == "dev"


def test_an_issuer_ending_with_a_slash_is_passed_on_as_is() -> None:
    """Auth0's issuer ends with "/": the authorizer compares ``iss`` with it exactly, so the
    stack must not strip it; only the default JWKS URL drops it (``schema.default_jwks_url``)."""
    settings = parse_settings({**VALID, "authIssuer": "https://tenant.auth0.com/"})
    assert settings.auth_issuer == "https://tenant.auth0.com/"
    assert settings.jwks_url == "https://tenant.auth0.com/.well-known/jwks.json"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_set_only_declared_keys_and_validate(stack: str) -> None:
    config = config_from_stack_file(PROJECT_ROOT / f"Pulumi.{stack}.yaml")
    assert config["aws:region"]
    own = {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith(PROJECT)}
    assert set(own) <= set(DECLARED)
    parse_settings({**own, **VALID})


def test_dev_and_prod_stage_values() -> None:
    dev = parse_settings({**_own("dev"), **VALID})
    prod = parse_settings({**_own("prod"), **VALID})
    assert (dev.throttle_burst_limit, dev.throttle_rate_limit) == (100, 50)
    assert dev.log_retention_days == 14
    assert prod.throttle_burst_limit > dev.throttle_burst_limit
    assert prod.throttle_rate_limit > dev.throttle_rate_limit
    assert prod.log_retention_days == 365
    assert prod.point_in_time_recovery
    assert prod.deletion_protection
    assert not dev.point_in_time_recovery
    assert not dev.deletion_protection


def _own(stack: str) -> dict[str, str]:
    config = config_from_stack_file(PROJECT_ROOT / f"Pulumi.{stack}.yaml")
    prefix = f"{PROJECT}:"
    return {key.removeprefix(prefix): value for key, value in config.items() if prefix in key}


def test_every_bad_key_is_reported_at_once_with_its_fix() -> None:
    bad = {
        "throttleBurstLimit": "0",
        "throttleRateLimit": "lots",
        "logRetentionDays": "10",
        "idleTimeoutSeconds": "3600",
        "lambdaArchitecture": "arm",
        "lambdaRuntime": "python3.9",
        "lambdaTimeoutSeconds": "60",
        "logLevel": "VERBOSE",
        "authTokenUse": "refresh",
        "authJwksUrl": "ftp://keys",
        "alarmEmail": "nobody",
        "pointInTimeRecovery": "maybe",
        "customDomainName": "chat.example.com",
        "tags": '["no-equals-sign"]',
    }
    with pytest.raises(SettingsError) as caught:
        parse_settings(bad)
    problems = caught.value.problems
    message = str(caught.value)
    reported = {problem.split(":", 2)[1].split(":")[0] for problem in problems}
    expected = set(bad) - {"customDomainName"} | {
        "authIssuer",
        "authAudience",
        "certificateArn",
        "accountStack",
    }
    assert reported == expected
    assert f"({len(expected)} problems)" in message
    for key in expected - {"tags"}:
        assert f"fix: pulumi config set {PROJECT}:{key} " in message, key
    assert f"fix: pulumi config set --path '{PROJECT}:tags[0]' team=chat" in message
    assert "3600" in message
    assert "'arm'" in message
    assert "use one of 1, 3, 5, 7, 14" in message


@pytest.mark.parametrize(("key", "value"), [("stageName", "live\n"), ("tags", '["team=chat\\n"]')])
def test_a_value_with_a_trailing_newline_is_refused(key: str, value: str) -> None:
    """A regular expression's ``$`` also matches before a final newline, so every pattern must
    match the whole value: ``"live\n"`` is no stage name API Gateway accepts. (The keys whose
    values are stripped of whitespace first, like ``alarmEmail``, never see one.)"""
    with pytest.raises(SettingsError, match=key):
        parse_settings({**VALID, key: value})
    assert parse_settings({**VALID, "alarmEmail": "ops@example.com\n"}).alarm_email == (
        "ops@example.com"
    )


def test_a_certificate_without_a_domain_is_to_be_removed() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(
            {**VALID, "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/x"}
        )
    assert f"fix: pulumi config rm {PROJECT}:certificateArn" in str(caught.value)


def test_an_unknown_key_is_named() -> None:
    with pytest.raises(SettingsError, match="throttleBurstLimt is not a known key"):
        parse_settings({**VALID, "throttleBurstLimt": "10"})


@pytest.mark.parametrize("days", LOG_RETENTION_DAYS)
def test_every_cloudwatch_retention_is_accepted(days: int) -> None:
    assert parse_settings({**VALID, "logRetentionDays": str(days)}).log_retention_days == days


def test_choices_match_the_runtime_schema() -> None:
    assert typing.get_args(LogLevel) == schema.LOG_LEVELS
    assert typing.get_args(TokenUse) == ("", *schema.TOKEN_USES)


def test_tags_arrive_as_json_text_and_become_a_map() -> None:
    settings = parse_settings({**VALID, "tags": '["team=chat", "cost-center=42=x"]'})
    assert settings.tag_map == {"team": "chat", "cost-center": "42=x"}


def test_preview_fails_with_every_bad_key(build_dir: Path) -> None:
    run = run_stack(
        "dev",
        expect_error=True,
        throttleBurstLimit="0",
        logRetentionDays="13",
        authIssuer="",
    )
    assert isinstance(run.error, SettingsError)
    message = str(run.error)
    for key in ("throttleBurstLimit", "logRetentionDays", "authIssuer"):
        assert f"{PROJECT}:{key}:" in message
    assert not [resource for resource in run.resources if resource.custom]


def test_a_function_timeout_too_short_for_one_aws_call_is_refused() -> None:
    """A handler calls DynamoDB or SQS only while the call's worst case fits the time left
    (runtime.aws.Deadline): under 6 s every chat message would be answered "unavailable"."""
    from runtime import aws as runtime_aws

    needed = runtime_aws.call_worst_case_seconds() + runtime_aws.ANSWER_MARGIN_SECONDS
    assert needed <= schema.MIN_LAMBDA_TIMEOUT_SECONDS
    with pytest.raises(SettingsError, match="lambdaTimeoutSeconds"):
        parse_settings({**VALID, "lambdaTimeoutSeconds": "5"})
    assert parse_settings({**VALID, "lambdaTimeoutSeconds": "6"}).lambda_timeout_seconds == 6
