"""The stack's settings: every ``rag-websocket:*`` config key, validated in one pass.

Pulumi.yaml declares each key with its type, default and description; ``StackSettings`` holds
the same keys (camelCase aliases of its fields) with the same defaults, so a test can hold the
two together. A bad stack fails ``pulumi preview`` with ONE error that lists every bad key and
the ``pulumi config set`` command that fixes it.

About 440 lines on purpose: one field and its validator per config key, beside the error that
names the key; splitting them would put a key's type and its check in two files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ValidationInfo

from runtime import schema

CONFIG_NAMESPACE = "rag-websocket"

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
    731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# API Gateway's account-level ceilings for a stage's default route throttling.
MAX_THROTTLE_BURST = 5000
MAX_THROTTLE_RATE = 10000
MIN_LAMBDA_MEMORY_MB = 128
MAX_LAMBDA_MEMORY_MB = 10240
MIN_IDLE_TIMEOUT_SECONDS = 30
# The chat queue's visibility timeout: how long a consumer may hold a message. Lambda refuses an
# SQS event source whose function timeout exceeds it, and AWS recommends at least six times the
# function timeout: 1800 s fits a RAG function of 5 minutes, 60 s one of 10 s. SQS allows 12 h.
DEFAULT_CHAT_VISIBILITY_TIMEOUT_SECONDS = 1800
MIN_CHAT_VISIBILITY_TIMEOUT_SECONDS = 60
MAX_CHAT_VISIBILITY_TIMEOUT_SECONDS = 12 * 60 * 60

LambdaArchitecture = Literal["arm64", "x86_64"]
LambdaRuntime = Literal["python3.12", "python3.13"]
LogLevel = schema.LogLevel
TokenUse = Literal["", schema.TokenUse]  # "": any issuer that is not Cognito

_HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d+)?(/\S*)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_TAG = re.compile(r"^([^=]{1,128})=(.{0,256})$")
_STACK_REFERENCE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+$")
# Keys a stack may still set from an earlier release, with what replaced them.
RETIRED_KEYS = {
    "manageApiGatewayAccount": (
        "is retired: the account stack (account/) owns the API Gateway CloudWatch role now. "
        "Move the role out of this stack first (docs/deploy.md: moving the account "
        "setting), or `pulumi up` deletes it and resets logging for every API in the region"
    ),
}


def _example(value: str) -> dict[str, Any]:
    """The value shown in the ``pulumi config set`` fix of a bad key."""
    return {"example": value}


class SettingsError(ValueError):
    """The stack configuration is invalid; the message lists every bad key and its fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"invalid {CONFIG_NAMESPACE} stack configuration ({len(problems)} {noun}):\n"
            + "\n".join(problems)
        )


@dataclass(frozen=True)
class LambdaSettings:
    """What every HandlerFunction shares."""

    architecture: LambdaArchitecture
    runtime: LambdaRuntime
    memory_mb: int
    timeout_seconds: int
    log_retention_days: int
    log_level: LogLevel

    @property
    def python_version(self) -> str:
        """``python3.13`` → ``3.13`` (what pip's ``--python-version`` wants)."""
        return self.runtime.removeprefix("python")


class StackSettings(BaseModel):
    """Every config key of the stack. Field ``throttle_burst_limit`` is key
    ``rag-websocket:throttleBurstLimit``; defaults equal Pulumi.yaml's."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        validate_default=True,
    )

    throttle_burst_limit: Annotated[
        int, Field(ge=1, le=MAX_THROTTLE_BURST, json_schema_extra=_example("100"))
    ] = 100
    throttle_rate_limit: Annotated[
        int, Field(ge=1, le=MAX_THROTTLE_RATE, json_schema_extra=_example("50"))
    ] = 50
    log_retention_days: Annotated[int, Field(json_schema_extra=_example("30"))] = 14
    idle_timeout_seconds: Annotated[
        int,
        Field(
            ge=MIN_IDLE_TIMEOUT_SECONDS,
            le=schema.IDLE_TIMEOUT_SECONDS,
            json_schema_extra=_example(str(schema.IDLE_TIMEOUT_SECONDS)),
        ),
    ] = schema.IDLE_TIMEOUT_SECONDS
    messages_per_minute: Annotated[int, Field(ge=0, json_schema_extra=_example("60"))] = (
        schema.DEFAULT_MESSAGES_PER_MINUTE
    )
    max_connections_per_user: Annotated[int, Field(ge=0, json_schema_extra=_example("10"))] = (
        schema.DEFAULT_MAX_CONNECTIONS_PER_USER
    )
    auth_issuer: Annotated[
        str,
        Field(json_schema_extra=_example("https://cognito-idp.<region>.amazonaws.com/<poolId>")),
    ] = ""
    auth_audience: Annotated[str, Field(json_schema_extra=_example("<app client id>"))] = ""
    auth_jwks_url: Annotated[
        str, Field(json_schema_extra=_example("https://<issuer>/.well-known/jwks.json"))
    ] = ""
    auth_token_use: Annotated[TokenUse, Field(json_schema_extra=_example("id"))] = ""
    lambda_architecture: Annotated[
        LambdaArchitecture, Field(json_schema_extra=_example("arm64"))
    ] = "arm64"
    lambda_memory_mb: Annotated[
        int,
        Field(ge=MIN_LAMBDA_MEMORY_MB, le=MAX_LAMBDA_MEMORY_MB, json_schema_extra=_example("256")),
    ] = 256
    lambda_timeout_seconds: Annotated[
        int,
        Field(
            ge=schema.MIN_LAMBDA_TIMEOUT_SECONDS,
            le=schema.INTEGRATION_TIMEOUT_SECONDS,
            json_schema_extra=_example("10"),
        ),
    ] = 10
    lambda_runtime: Annotated[LambdaRuntime, Field(json_schema_extra=_example("python3.13"))] = (
        "python3.13"
    )
    log_level: Annotated[LogLevel, Field(json_schema_extra=_example("INFO"))] = "INFO"
    alarm_email: Annotated[str, Field(json_schema_extra=_example("oncall@example.com"))] = ""
    oldest_message_alarm_seconds: Annotated[
        int, Field(ge=60, json_schema_extra=_example("300"))
    ] = 300
    chat_visibility_timeout_seconds: Annotated[
        int,
        Field(
            ge=MIN_CHAT_VISIBILITY_TIMEOUT_SECONDS,
            le=MAX_CHAT_VISIBILITY_TIMEOUT_SECONDS,
            json_schema_extra=_example(str(DEFAULT_CHAT_VISIBILITY_TIMEOUT_SECONDS)),
        ),
    ] = DEFAULT_CHAT_VISIBILITY_TIMEOUT_SECONDS
    point_in_time_recovery: Annotated[bool, Field(json_schema_extra=_example("true"))] = False
    deletion_protection: Annotated[bool, Field(json_schema_extra=_example("true"))] = False
    table_kms_key_arn: Annotated[
        str, Field(json_schema_extra=_example("arn:aws:kms:<region>:<account>:key/<id>"))
    ] = ""
    stage_name: Annotated[str, Field(json_schema_extra=_example("dev"))] = ""
    custom_domain_name: Annotated[str, Field(json_schema_extra=_example("chat-ws.example.com"))] = (
        ""
    )
    certificate_arn: Annotated[
        str,
        Field(
            json_schema_extra=_example("arn:aws:acm:<region>:<account>:certificate/<id>"),
        ),
    ] = ""
    access_logs: Annotated[bool, Field(json_schema_extra=_example("false"))] = True
    account_stack: Annotated[
        str, Field(json_schema_extra=_example("<org>/rag-websocket-account/<region>"))
    ] = ""
    tags: Annotated[list[str], Field(json_schema_extra=_example('["team=chat"]'))] = []

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise PydanticCustomError(
                "retention",
                "{value} is not a CloudWatch Logs retention period; use one of {allowed}",
                {"value": value, "allowed": ", ".join(map(str, LOG_RETENTION_DAYS))},
            )
        return value

    @field_validator("auth_issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        # Kept exactly as configured: tokens' `iss` is compared with it (Auth0's ends with "/").
        value = value.strip()
        if not value:
            raise PydanticCustomError("required", "is required: the token issuer's https:// URL")
        if not _HTTPS_URL.fullmatch(value):
            raise PydanticCustomError(
                "url", "must be an https:// URL, got {value!r}", {"value": value}
            )
        return value

    @field_validator("auth_audience")
    @classmethod
    def _audience(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError(
                "required", "is required: the token audience (Cognito: the app client id)"
            )
        return value

    @field_validator("auth_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str) -> str:
        value = value.strip()
        if value and not _HTTPS_URL.fullmatch(value):
            raise PydanticCustomError(
                "url", "must be an https:// URL or empty, got {value!r}", {"value": value}
            )
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip()
        if value and not _EMAIL.fullmatch(value):
            raise PydanticCustomError(
                "email", "must be an e-mail address or empty, got {value!r}", {"value": value}
            )
        return value

    @field_validator("stage_name")
    @classmethod
    def _stage(cls, value: str) -> str:
        if value and not _STAGE_NAME.fullmatch(value):
            raise PydanticCustomError(
                "stage",
                "must be 1-128 letters, digits, '-' or '_' (or empty for the stack name), "
                "got {value!r}",
                {"value": value},
            )
        return value

    @field_validator("custom_domain_name")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not _DOMAIN.fullmatch(value):
            raise PydanticCustomError(
                "domain", "must be a DNS name or empty, got {value!r}", {"value": value}
            )
        return value

    @field_validator("certificate_arn")
    @classmethod
    def _certificate(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        domain = (info.data or {}).get("custom_domain_name", "")
        if value and not _CERTIFICATE_ARN.fullmatch(value):
            raise PydanticCustomError(
                "arn", "must be an ACM certificate ARN, got {value!r}", {"value": value}
            )
        if domain and not value:
            raise PydanticCustomError(
                "required",
                "is required when customDomainName is set: an ACM certificate for that name "
                "in the stack's region",
            )
        if value and not domain:
            raise PydanticCustomError(
                "unused", "is set but customDomainName is not; set both or neither"
            )
        return value

    @field_validator("table_kms_key_arn")
    @classmethod
    def _kms_key(cls, value: str) -> str:
        value = value.strip()
        if value and not _KMS_KEY_ARN.fullmatch(value):
            raise PydanticCustomError(
                "arn",
                "must be a KMS key ARN, or empty for the AWS-owned key, got {value!r}",
                {"value": value},
            )
        return value

    @field_validator("account_stack")
    @classmethod
    def _account_stack(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if value and not _STACK_REFERENCE.fullmatch(value):
            raise PydanticCustomError(
                "stack",
                "must name a stack as <org>/<project>/<stack>, got {value!r}",
                {"value": value},
            )
        if not value and (info.data or {}).get("access_logs", True):
            raise PydanticCustomError(
                "required",
                "is required while accessLogs is on: the account stack (account/) of this "
                "account and region, which holds the API Gateway CloudWatch role access logs "
                "need; deploy it first, or set accessLogs false",
            )
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_from_json(cls, value: object) -> object:
        """Pulumi hands an array key to the program as its JSON text."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise PydanticCustomError(
                    "json", 'must be a list of "key=value" strings, got {value!r}', {"value": value}
                ) from None
        return value

    @field_validator("tags")
    @classmethod
    def _tag_pairs(cls, value: list[str]) -> list[str]:
        bad = [tag for tag in value if not _TAG.fullmatch(tag) or tag.startswith("aws:")]
        if bad:
            raise PydanticCustomError(
                "tag",
                'every tag must be "key=value" (key 1-128 characters, not aws:...), got {bad}',
                {"bad": ", ".join(map(repr, bad))},
            )
        return value

    def effective_stage_name(self, stack: str) -> str:
        """The API stage: ``stageName`` or else the stack's name."""
        return self.stage_name or stack

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(tag.split("=", 1) for tag in self.tags)

    @property
    def jwks_url(self) -> str:
        return self.auth_jwks_url or schema.default_jwks_url(self.auth_issuer)

    @property
    def lambda_settings(self) -> LambdaSettings:
        return LambdaSettings(
            architecture=self.lambda_architecture,
            runtime=self.lambda_runtime,
            memory_mb=self.lambda_memory_mb,
            timeout_seconds=self.lambda_timeout_seconds,
            log_retention_days=self.log_retention_days,
            log_level=self.log_level,
        )


def config_key(field_name: str) -> str:
    """``throttle_burst_limit`` → ``throttleBurstLimit``."""
    return to_camel(field_name)


def config_keys() -> list[str]:
    return [config_key(name) for name in StackSettings.model_fields]


def fix_command(key: str) -> str:
    """The ``pulumi config set`` command that gives ``key`` a valid value."""
    name = next(field for field in StackSettings.model_fields if config_key(field) == key)
    extra = StackSettings.model_fields[name].json_schema_extra
    example = extra.get("example", "<value>") if isinstance(extra, dict) else "<value>"
    if key == "tags":
        return f"pulumi config set --path '{CONFIG_NAMESPACE}:tags[0]' team=chat"
    return f"pulumi config set {CONFIG_NAMESPACE}:{key} {_shell_quote(str(example))}"


def _shell_quote(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_.:/@=-]+", value) else f"'{value}'"


_OWN_ERROR_TYPES = frozenset(
    {
        "retention",
        "required",
        "url",
        "email",
        "stage",
        "domain",
        "arn",
        "unused",
        "json",
        "tag",
        "stack",
    }
)


def _describe(error: ErrorDetails) -> str:
    # Defaults are reported under the field's name, given values under the key: one spelling.
    key = config_key(str(error["loc"][0]))
    if error["type"] == "extra_forbidden":
        if key in RETIRED_KEYS:
            return (
                f"  - {CONFIG_NAMESPACE}:{key} {RETIRED_KEYS[key]}\n"
                f"    fix: pulumi config rm {CONFIG_NAMESPACE}:{key}"
            )
        return f"  - {CONFIG_NAMESPACE}:{key} is not a known key; see Pulumi.yaml for the list"
    # The project's own messages already quote the bad value; pydantic's do not.
    shown = "" if error["type"] in _OWN_ERROR_TYPES else f" (got {error['input']!r})"
    fix = (
        f"pulumi config rm {CONFIG_NAMESPACE}:{key}"
        if error["type"] == "unused"
        else fix_command(key)
    )
    return f"  - {CONFIG_NAMESPACE}:{key}: {error['msg']}{shown}\n    fix: {fix}"


def parse_settings(raw: dict[str, str]) -> StackSettings:
    """Validate raw config values (key → text as Pulumi hands them over); SettingsError lists
    every problem at once."""
    try:
        return StackSettings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError([_describe(error) for error in exc.errors()]) from None


def load_settings(config: pulumi.Config | None = None) -> StackSettings:
    """Read every declared key from the stack's config and validate them together."""
    config = config or pulumi.Config(CONFIG_NAMESPACE)
    raw = {key: value for key in config_keys() if (value := config.get(key)) is not None}
    return parse_settings(raw)
