"""Exporter settings: environment variables, an optional YAML file, validation.

Every setting is documented in README.md (Configuration); tests/test_settings.py checks that
the table there lists exactly the fields below, with their defaults.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError as PydanticSettingsError

from exporter.config.files import SettingsError, YamlFileError, read_yaml_file
from exporter.config.webconfig import check_web_config

ENV_PREFIX = "AWS_ROOT_EXPORTER_"
CONFIG_FILE_ENV = ENV_PREFIX + "CONFIG_FILE"

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_OU_ID = re.compile(r"^(r-[0-9a-z]{4,32}|ou-[0-9a-z]{4,32}-[0-9a-z]{8,32})$")
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_RULE_NAME = re.compile(r"^[.\-_A-Za-z0-9]{1,64}$")
_IAM_ACTION = re.compile(r"^[a-zA-Z0-9-]+:[a-zA-Z0-9*?]+$")
# iam:ListOrganizationsFeatures' valid values (IAM API reference, EnabledFeatures).
_ROOT_ACCESS_FEATURES = ("RootCredentialsManagement", "RootSessions")
# The activity sources a canary proves (exporter.monitoring.problems.SOURCES), with the
# default bound of each: how long after a canary call its record may take to come back
# through that source before the path counts as blind. README, Proof of sight, says why.
CANARY_BOUNDS_SECONDS = {"eventbridge_sqs": 300.0, "s3_trail": 900.0, "lookup_events": 900.0}


class AccountMode(str, Enum):
    organization = "organization"
    roles = "roles"
    single = "single"


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class BreakGlassWindow(BaseModel):
    """An approved period in which root activity in one account is expected."""

    model_config = ConfigDict(extra="forbid")

    account_id: str
    start: datetime
    end: datetime
    ticket: str = ""

    @field_validator("account_id")
    @classmethod
    def _account_id(cls, value: str) -> str:
        if not _ACCOUNT_ID.match(value):
            raise ValueError(f"must be a 12-digit AWS account id, got {value!r}")
        return value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2026-01-01T10:00:00Z")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> BreakGlassWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    listen_address: str = Field("0.0.0.0:9784", description="host:port the HTTP server listens on.")
    account_mode: AccountMode = Field(
        AccountMode.organization,
        description="`organization` (list accounts in AWS Organizations), `roles` (the `role_arns` list) or `single` (the current credentials' account).",
    )
    region: str | None = Field(
        None,
        description="Region for Organizations, IAM and STS calls (unset: us-east-1, or in `roles` mode the role ARNs' partition's; GovCloud and China organizations set it, e.g. `us-gov-west-1`).",
    )
    endpoint_url: str | None = Field(
        None, description="Send every AWS request to this URL (the sandbox and tests use it; leave unset for AWS)."
    )
    role_name: str = Field(
        "AwsRootExporterReadOnly", description="Role assumed in each member account in `organization` mode."
    )
    role_arns: list[str] = Field(default_factory=list, description="Roles to assume in `roles` mode, one per account.")
    external_id: str | None = Field(
        None, description="External id passed to `sts:AssumeRole` (never logged or exposed)."
    )
    role_session_name: str = Field("aws-root-exporter", description="Session name for assumed roles.")
    include_account_ids: list[str] = Field(default_factory=list, description="Only these accounts (empty: all).")
    exclude_account_ids: list[str] = Field(default_factory=list, description="Never these accounts.")
    include_ou_ids: list[str] = Field(
        default_factory=list, description="Only accounts directly in these OUs or below them (empty: all)."
    )
    exclude_ou_ids: list[str] = Field(default_factory=list, description="Never accounts in these OUs or below them.")
    assume_root_audit: bool = Field(
        False,
        description="Audit member roots with `sts:AssumeRoot` and the `IAMAuditRootUserCredentials` task policy instead of a role in each member account (needs centralized root access).",
    )
    posture_interval_seconds: float = Field(600.0, ge=10, description="Seconds between posture sweeps.")
    credential_report_max_age_seconds: float = Field(
        14400.0, ge=0, description="Reuse an IAM credential report younger than this instead of generating one (AWS regenerates at most every 4 h)."
    )
    credential_report_wait_seconds: float = Field(
        60.0, gt=0, description="How long to wait for a credential report that is being generated."
    )
    scp_check: bool = Field(
        True,
        description="In `organization` mode, check on every posture sweep whether an SCP fences each member account's root user (docs/scp.md).",
    )
    scp_sensitive_actions: list[str] = Field(
        default_factory=list,
        description="Actions an SCP must deny to root for the account to count as fenced, e.g. `[\"iam:*\", \"s3:PutBucketPolicy\"]` (empty: only a deny of every action, or a `NotAction` deny, is a fence).",
    )
    central_root_access_required: list[str] = Field(
        default_factory=lambda: ["RootCredentialsManagement", "RootSessions"],
        description="Centralized root access features the organization must have enabled (`RootCredentialsManagement`, `RootSessions`): `AwsRootCentralRootAccessDisabled` fires for each one that is off or unknown. `[]` opts the organization out.",
    )
    mfa_hardware_waived_when_fenced: bool = Field(
        False,
        description="Pass the `mfa_hardware` control (Security Hub IAM.6) for a member account whose root is fenced by an SCP (`aws_root_scp_fence_state` `fenced`); the audit shows it as waived. See README, Hardware MFA behind an SCP fence, for the trade-off.",
    )
    allowed_root_email_domains: list[str] = Field(
        default_factory=list,
        description="In `organization` mode, the domains an account's root email may have: control `root_email_domain_allowed` fails outside them (exact domain, case-insensitive; a subdomain is listed on its own). Empty: the control is not evaluated.",
    )
    security_contact_check: bool = Field(
        True,
        description="In `organization` mode, read each account's security alternate contact (`account:GetAlternateContact`, trusted access for AWS Account Management) for control `security_contact_present`.",
    )
    security_contact_max_age_seconds: float = Field(
        43200.0,
        ge=0,
        description="Reuse an account's security alternate contact read within this many seconds instead of reading it again (Security Hub's periodic check of Account.1 runs every 12 or 24 h); a failed read is tried again at the next sweep. 0: read on every sweep.",
    )
    concurrency: int = Field(32, ge=1, le=1024, description="Accounts collected at the same time.")
    account_timeout_seconds: float = Field(120.0, gt=0, description="Time limit for one account's collection.")
    max_attempts: int = Field(
        5, ge=1, le=20, description="Attempts per AWS request (botocore standard retry mode: exponential backoff with jitter)."
    )
    shard_index: int = Field(0, ge=0, description="This replica's shard (0-based).")
    shard_count: int = Field(1, ge=1, description="Number of replicas sharing the accounts (by a hash of the account id).")
    break_glass_windows: list[BreakGlassWindow] = Field(
        default_factory=list, description="Approved break-glass windows: `account_id`, `start`, `end`, `ticket`."
    )
    required_signin_mfa: Literal["any", "totp", "u2f"] = Field(
        "any",
        description="The weakest factor the organization accepts for a root console sign-in: `any` (no factor alert), `totp` (any MFA device) or `u2f` (a FIDO security key or passkey); a successful root sign-in with a weaker one raises `AwsRootConsoleLoginWeakMfa` (see [Which factor signed in](#which-factor-signed-in)).",
    )
    lookup_events_enabled: bool = Field(
        True, description="Poll CloudTrail `LookupEvents` in every account for root records (needs the member role)."
    )
    lookup_events_regions: list[str] = Field(
        default_factory=list,
        description="Regions polled with `LookupEvents` (empty: where root sign-ins and IAM calls are recorded, us-east-1, or us-gov-west-1 / cn-north-1 in those partitions).",
    )
    lookup_events_interval_seconds: float = Field(60.0, ge=5, description="Seconds between `LookupEvents` polls of an account and region.")
    lookup_events_overlap_seconds: float = Field(
        900.0, ge=0, description="Each poll re-reads this much before the previous one: CloudTrail delivers records minutes late."
    )
    lookup_events_history_days: int = Field(
        90, ge=1, le=90, description="History read on a start without a state file (the trailing-90-day login count needs 90)."
    )
    monitored_regions: list[str] = Field(
        default_factory=list,
        description="Regions in which root activity must be seen: canaries are made there, each configured source must deliver them, and the configuration checks run there (empty: `lookup_events_regions`, else the partition's global-service region, us-east-1 / us-gov-west-1 / cn-north-1). See [Proof of sight](#proof-of-sight).",
    )
    canary_enabled: bool = Field(
        True,
        description="Call `sts:GetCallerIdentity` in every collected account and monitored region every `canary_interval_seconds` and prove that each configured source delivers its CloudTrail record (see [Proof of sight](#proof-of-sight)).",
    )
    canary_interval_seconds: float = Field(300.0, ge=10, description="Seconds between canary calls to an account and region.")
    canary_bounds_seconds: dict[str, float] = Field(
        default_factory=lambda: dict(CANARY_BOUNDS_SECONDS),
        description="Per source (`eventbridge_sqs`, `s3_trail`, `lookup_events`), seconds a canary's record may take to arrive before the path counts as blind (plus `canary_interval_seconds`); a source not given keeps its default.",
    )
    eventbridge_queue_url: str | None = Field(
        None, description="SQS queue fed by an EventBridge rule on root CloudTrail events (near real time)."
    )
    s3_trail_queue_url: str | None = Field(
        None, description="SQS queue of S3 notifications for an organization trail's log files."
    )
    monitoring_checks_enabled: bool = Field(
        True,
        description="Check, through the member role, that a logging trail with read and write management events covers each monitored region and that the forwarder rule is in place, for the configured queue sources (see README, Configuration checks).",
    )
    monitoring_checks_interval_seconds: float = Field(900.0, ge=5, description="Seconds between configuration checks of every account and monitored region.")
    forwarder_rule_name: str = Field(
        "aws-root-activity-forwarder",
        description="Name of the EventBridge rule on each account's default bus that sends root activity on (the `Name` of root-activity-forwarder.yaml's and root-activity-eventbridge.yaml's rule), checked when `eventbridge_queue_url` is set.",
    )
    left_organization_days: float = Field(
        7.0,
        gt=0,
        description="Days an account that vanished from the organization without being seen closing is reported as `left_organization` (sooner when it comes back).",
    )
    sqs_wait_seconds: int = Field(20, ge=0, le=20, description="SQS long-polling wait.")
    sqs_max_receives: int = Field(
        5, ge=1, description="A message that failed this many times is dropped and counted as rejected (`poison`)."
    )
    assume_root_evidence_wait_seconds: float = Field(
        120.0,
        ge=0,
        description="How long a root record that could be an `sts:AssumeRoot` session waits for its AssumeRoot record before it counts as root use (see README, What counts as root activity).",
    )
    state_file: Path | None = Field(
        None, description="File that keeps activity checkpoints and seen event ids across restarts."
    )
    state_save_interval_seconds: float = Field(30.0, ge=1, description="Seconds between saves of the state file.")
    web_config_file: Path | None = Field(
        None,
        description="Prometheus web configuration file (exporter-toolkit format) for TLS and basic auth on the HTTP endpoints; see docs/security.md.",
    )
    log_level: str = Field("info", description="`debug`, `info`, `warning` or `error`.")
    log_format: LogFormat = Field(LogFormat.text, description="`text` or `json` (one object per line).")

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be host:port with a port from 0 to 65535, got {value!r}")
        return value

    @field_validator("include_account_ids", "exclude_account_ids")
    @classmethod
    def _account_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _ACCOUNT_ID.match(item):
                raise ValueError(f"must be 12-digit AWS account ids, got {item!r}")
        return value

    @field_validator("include_ou_ids", "exclude_ou_ids")
    @classmethod
    def _ou_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _OU_ID.match(item):
                raise ValueError(f"must be organization root or OU ids (r-..., ou-...), got {item!r}")
        return value

    @field_validator("role_arns")
    @classmethod
    def _role_arns(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for item in value:
            match = _ROLE_ARN.match(item)
            if not match:
                raise ValueError(f"must be IAM role ARNs (arn:aws:iam::<12 digits>:role/<name>), got {item!r}")
            if match.group(1) in seen:
                raise ValueError(f"lists account {match.group(1)} twice")
            seen.add(match.group(1))
        partitions = sorted({item.split(":")[1] for item in value})
        if len(partitions) > 1:
            # Credentials are valid in one partition only: one exporter per partition.
            raise ValueError(f"mixes AWS partitions ({', '.join(partitions)}); run one exporter per partition")
        return value

    @property
    def role_partition(self) -> str | None:
        """The partition of the role ARNs in `roles` mode (one, see _role_arns); None otherwise."""
        return self.role_arns[0].split(":")[1] if self.role_arns else None

    @field_validator("role_name")
    @classmethod
    def _role_name(cls, value: str) -> str:
        if not _ROLE_NAME.match(value):
            raise ValueError(f"must be an IAM role name (1-64 characters of letters, digits and +=,.@_-), got {value!r}")
        return value

    @field_validator("lookup_events_regions", "monitored_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _REGION.match(item):
                raise ValueError(f"must be AWS region names such as us-east-1, got {item!r}")
        return value

    @field_validator("forwarder_rule_name")
    @classmethod
    def _rule_name(cls, value: str) -> str:
        # EventBridge's RuleName (botocore events model): 1-64 of [.-_A-Za-z0-9].
        if not _RULE_NAME.match(value):
            raise ValueError(f"must be an EventBridge rule name (1-64 characters of letters, digits and .-_), got {value!r}")
        return value

    @field_validator("canary_bounds_seconds")
    @classmethod
    def _canary_bounds(cls, value: dict[str, float]) -> dict[str, float]:
        for source, bound in value.items():
            if source not in CANARY_BOUNDS_SECONDS:
                raise ValueError(f"keys must be sources ({', '.join(CANARY_BOUNDS_SECONDS)}), got {source!r}")
            if not bound > 0:
                raise ValueError(f"{source}: must be a number of seconds above 0, got {bound!r}")
        return {**CANARY_BOUNDS_SECONDS, **value}

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.match(value):
            raise ValueError(f"must be an AWS region name such as us-east-1 or us-gov-west-1, got {value!r}")
        return value

    @field_validator("eventbridge_queue_url", "s3_trail_queue_url")
    @classmethod
    def _queue_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/]+/\d{12}/[\w-]+(\.fifo)?$", value):
            raise ValueError(f"must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>), got {value!r}")
        return value

    @field_validator("web_config_file")
    @classmethod
    def _web_config_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_web_config(value)  # reads the file, its certificates and keys
        return value

    @field_validator("scp_sensitive_actions")
    @classmethod
    def _scp_sensitive_actions(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _IAM_ACTION.match(item):
                raise ValueError(f"must be IAM actions such as iam:CreateAccessKey or s3:* (wildcards * and ?), got {item!r}")
        return value

    @field_validator("central_root_access_required")
    @classmethod
    def _central_root_access_required(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in _ROOT_ACCESS_FEATURES:
                raise ValueError(f"must list RootCredentialsManagement and/or RootSessions (or be [] to opt out), got {item!r}")
        return list(dict.fromkeys(value))

    @field_validator("allowed_root_email_domains")
    @classmethod
    def _email_domains(cls, value: list[str]) -> list[str]:
        domains = []
        for entry in value:
            domain = entry.strip().lower()
            if "@" in domain or "." not in domain or any(not label for label in domain.split(".")) or " " in domain:
                raise ValueError(f"{entry!r} is not a domain: list domains such as example.com, without the user part or a wildcard")
            domains.append(domain)
        return domains

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError(f"must be debug, info, warning or error, got {value!r}")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> Settings:
        if self.account_mode is AccountMode.roles and not self.role_arns:
            raise _combination("role_arns", "must list at least one role when account_mode is 'roles'")
        if self.account_mode is not AccountMode.roles and self.role_arns:
            raise _combination("role_arns", "is only used when account_mode is 'roles'")
        if self.assume_root_audit and self.account_mode is not AccountMode.organization:
            raise _combination("assume_root_audit", "needs account_mode 'organization'")
        if self.scp_sensitive_actions and not self.scp_check:
            raise _combination("scp_sensitive_actions", "is only used when scp_check is true")
        if self.mfa_hardware_waived_when_fenced and not (self.scp_check and self.account_mode is AccountMode.organization):
            raise _combination("mfa_hardware_waived_when_fenced", "needs the SCP check: account_mode 'organization' and scp_check true")
        if self.allowed_root_email_domains and self.account_mode is not AccountMode.organization:
            raise _combination("allowed_root_email_domains", "needs account_mode 'organization' (root emails come from AWS Organizations)")
        if self.shard_index >= self.shard_count:
            raise _combination("shard_index", f"must be below shard_count ({self.shard_count})")
        if self.eventbridge_queue_url and self.eventbridge_queue_url == self.s3_trail_queue_url:
            raise _combination("s3_trail_queue_url", "must differ from eventbridge_queue_url (the two queues carry different messages)")
        both = set(self.include_account_ids) & set(self.exclude_account_ids)
        if both:
            raise _combination("exclude_account_ids", f"also included: {', '.join(sorted(both))}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))


_FILE_VALUES: ContextVar[dict[str, Any]] = ContextVar("_FILE_VALUES", default={})


class _YamlFileSource(PydanticBaseSettingsSource):
    """The YAML config file's values, read by load_settings; lowest priority."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _FILE_VALUES.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_VALUES.get())


class _CombinationError(ValueError):
    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting
        self.message = message


def _combination(setting: str, message: str) -> _CombinationError:
    return _CombinationError(setting, message)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = read_yaml_file(path)
    except YamlFileError as exc:
        raise SettingsError(f"config_file: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config_file: {str(path)!r} must hold a mapping of setting names to values")
    for key in data:
        if not isinstance(key, str):
            raise SettingsError(f"config_file: {str(path)!r} has a key that is not a setting name: {key!r}")
    return data


def _unknown_env_settings(environ: dict[str, str]) -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {CONFIG_FILE_ENV}
    return sorted(key for key in environ if key.upper().startswith(ENV_PREFIX) and key.upper() not in known)


def load_settings(
    config_file: str | Path | None = None, overrides: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None
) -> Settings:
    """Build the settings from overrides > environment > YAML file > `defaults` (a command's
    own, such as the sandbox's short demo intervals) > the fields' defaults, or raise SettingsError."""
    unknown = _unknown_env_settings(dict(os.environ))
    if unknown:
        raise SettingsError(f"{unknown[0]}: unknown setting (see the Configuration section of README.md)")
    if config_file is None and os.environ.get(CONFIG_FILE_ENV):
        config_file = os.environ[CONFIG_FILE_ENV]
    file_values = _read_config_file(Path(config_file)) if config_file else {}
    token = _FILE_VALUES.set({**(defaults or {}), **file_values})
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
    except PydanticSettingsError as exc:
        # An environment value pydantic-settings cannot decode (a list setting that is not JSON).
        match = re.search(r'field "(\w+)"', str(exc))
        name = match.group(1) if match else "settings"
        raise SettingsError(f"{name} (from {ENV_PREFIX}{name.upper()}): not valid JSON; list and mapping settings take JSON, e.g. [\"123456789012\"]") from None
    finally:
        _FILE_VALUES.reset(token)


def describe_validation_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _CombinationError):
        return f"{ctx_error.setting}: {ctx_error.message}"
    loc = [str(part) for part in error["loc"]]
    name = loc[0] if loc else "settings"
    where = ".".join(loc)
    if error["type"] == "extra_forbidden":
        return f"{name}: unknown setting (see the Configuration section of README.md)"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    source = f" (from {ENV_PREFIX}{name.upper()})" if ENV_PREFIX + name.upper() in os.environ else ""
    got = error.get("input")
    # Our own validators say what they got where it helps; pydantic's built-in checks do not.
    shown = "" if error["type"] in {"missing", "value_error"} or isinstance(got, dict) else f", got {got!r}"
    return f"{where}{source}: {message}{shown}"
