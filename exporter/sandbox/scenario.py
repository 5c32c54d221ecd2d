"""The sandbox scenario file: an organization, its accounts and each root user's state."""

from __future__ import annotations

from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import difflib
import json
import types

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from exporter.config.files import YamlFileError, read_yaml_file

# moto attributes requests with credentials it does not know to this account; the
# exporter's own (fake) credentials are therefore the management account's.
MANAGEMENT_ACCOUNT_ID = "123456789012"


class ScenarioError(ValueError):
    pass


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccessKey(_Model):
    active: bool = True
    # The credential report column pair it fills (access_key_1_* or access_key_2_*); by
    # default the next free one. A root that deleted its first key keeps the second in slot 2.
    slot: Literal[1, 2] | None = None
    last_used: datetime | None = None
    last_used_region: str = "us-east-1"
    last_used_service: str = "s3"
    created: datetime | None = None


class Certificate(_Model):
    active: bool = True


class Root(_Model):
    mfa: Literal["none", "virtual", "hardware", "u2f"] = "none"
    # Extra MFA devices beyond the first (root may hold up to 8).
    extra_mfa: list[Literal["virtual", "hardware", "u2f"]] = Field(default_factory=list)
    password: Literal["present", "absent"] = "present"
    # What the credential report shows in password_enabled, whatever the real state: AWS
    # mostly writes not_supported (also for a root without any credential), sometimes true
    # or false.
    password_report: Literal["not_supported", "true", "false"] = "not_supported"
    password_last_used: datetime | None = None
    # What the report shows in password_last_used instead of the time (None: the time when
    # there is one, else no_information with a password and N/A without).
    password_last_used_report: Literal["N/A", "no_information"] | None = None
    # Whether GetAccountSummary carries AccountPasswordPresent (False: an answer without the
    # key, which makes the exporter fall back to the credential report).
    summary_password_key: bool = True
    # The name of root's virtual MFA device (its serial is arn:aws:iam::<id>:mfa/<name>);
    # real names vary, which is why CIS 1.6 matches the assigned user, not the serial.
    virtual_mfa_name: str = "root-account-mfa-device"
    access_keys: list[AccessKey] = Field(default_factory=list, max_length=2)
    signing_certificates: list[Certificate] = Field(default_factory=list, max_length=2)

    @model_validator(mode="after")
    def _devices(self) -> Root:
        if self.extra_mfa and self.mfa == "none":
            raise ValueError("extra_mfa needs a first device in mfa")
        if len(self.extra_mfa) > 7:
            raise ValueError("root can hold at most 8 MFA devices")
        slots = [k.slot for k in self.access_keys if k.slot is not None]
        if len(slots) != len(set(slots)):
            raise ValueError("two access keys in the same slot")
        return self

    def key_slots(self) -> list[tuple[int, AccessKey]]:
        """(slot, key) of each access key: its own slot, else the first free one."""
        taken = {k.slot for k in self.access_keys if k.slot is not None}
        free = [n for n in (1, 2) if n not in taken]
        return [(k.slot if k.slot is not None else free.pop(0), k) for k in self.access_keys]


class CredentialReport(_Model):
    # Seconds GenerateCredentialReport stays in progress before the report is ready.
    generation_seconds: float = 0.0
    malformed: bool = False
    # Header shapes seen in real reports: 22 columns today; 16 before access-key last-use
    # columns existed (AWS's own 2014 example); 18 with only access_key_N_last_used_date.
    columns: Literal[16, 18, 22] = 22
    # AWS documents TRUE/FALSE and sends true/false.
    booleans: Literal["lower", "upper"] = "lower"
    # The root as a cached report generated an hour before the scenario starts saw it; the
    # live root (summary, AssumeRoot) is `root`. None: the report is generated on request.
    stale_root: Root | None = None


class IamUser(_Model):
    """An IAM user (not the root user), e.g. one literally named `root`."""

    name: str
    # Its own virtual MFA device, named after the user.
    virtual_mfa: bool = False


class OperationFault(_Model):
    """Every call of one IAM operation in this account fails (the other operations work)."""

    operation: str
    error: Literal["throttle", "access_denied", "server_error"] = "throttle"

    @field_validator("operation")
    @classmethod
    def _operation(cls, value: str) -> str:
        import botocore.session

        names = botocore.session.get_session().get_service_model("iam").operation_names
        if value not in names:
            raise ValueError(f"{value!r} is not an IAM operation (e.g. ListVirtualMFADevices)")
        return value


# A fault is a name ("throttle_iam") or an OperationFault mapping; choosing the branch by the
# value's kind makes a mistake in either one reported as itself.
Fault = Annotated[
    Union[Annotated[Literal["throttle_iam"], Tag("named")], Annotated[OperationFault, Tag("operation")]],
    Discriminator(lambda value: "named" if isinstance(value, str) else "operation"),
]


Seconds = Annotated[float, Field(ge=0, le=3600)]


def _seconds(value: Any) -> Any:
    """A delay as a number of seconds or text with a unit: "2s", "500ms", "1m"."""
    if isinstance(value, str):
        text = value.strip()
        for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
            if text.endswith(unit):
                try:
                    return float(text[: -len(unit)]) * factor
                except ValueError:
                    break
        raise ValueError(f"must be seconds (e.g. 2, 2s, 500ms, 1m), got {value!r}")
    return value


class Delays(_Model):
    """How long after a call its CloudTrail record arrives through each source. AWS's own
    figures are minutes (LookupEvents about 5 on average, trail files about every 5); the
    defaults are a few seconds so that a demo proves every account at once."""

    eventbridge_sqs: Seconds = 2.0
    s3_trail: Seconds = 5.0
    lookup_events: Seconds = 5.0

    @field_validator("eventbridge_sqs", "s3_trail", "lookup_events", mode="before")
    @classmethod
    def _unit(cls, value: Any) -> Any:
        return _seconds(value)


class AccountMonitoring(_Model):
    """How this account's own monitoring starts: blinded in some regions, or not at all."""

    # Its own trail (monitoring.trail: per_account): logging, or stopped (StopLogging).
    trail: Literal["logging", "stopped"] = "logging"
    # The forwarder rule: enabled (ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS), disabled
    # (DisableRule), read_only_off (state ENABLED: no read-only management events, so no
    # canary), missing (never deployed).
    forwarder: Literal["enabled", "disabled", "read_only_off", "missing"] = "enabled"
    # The monitored regions these apply to (default: all of them).
    regions: list[str] | None = None
    # removed: RemoveAccountFromOrganization ran before the scenario starts.
    organization: Literal["member", "removed"] = "member"


class Account(_Model):
    id: str
    name: str
    ou: str = ""  # path of OU names below the root, e.g. "Workloads/Prod"
    # Organizations' AccountState (botocore model); Status is retired.
    state: Literal["PENDING_ACTIVATION", "ACTIVE", "SUSPENDED", "PENDING_CLOSURE", "CLOSED"] = "ACTIVE"
    joined_method: Literal["CREATED", "INVITED"] = "CREATED"
    joined: datetime | None = None
    # The root user's email as Organizations lists it (None: aws+<name>@example.com).
    email: str | None = None
    # Whether a security alternate contact is set (account:GetAlternateContact answers it,
    # or ResourceNotFoundException).
    security_contact: bool = True
    assume_role: Literal["allowed", "denied"] = "allowed"
    root: Root = Field(default_factory=Root)
    credential_report: CredentialReport = Field(default_factory=CredentialReport)
    cloudtrail_events: list[dict[str, Any]] = Field(default_factory=list)
    iam_users: list[IamUser] = Field(default_factory=list)
    # Names of virtual MFA devices assigned to nobody.
    unassigned_virtual_mfa: list[str] = Field(default_factory=list)
    # Faults to inject: `throttle_iam` answers every IAM call with Throttling; an
    # OperationFault fails one IAM operation only.
    faults: list[Fault] = Field(default_factory=list)
    monitoring: AccountMonitoring = Field(default_factory=AccountMonitoring)

    @property
    def root_email(self) -> str:
        return self.email if self.email is not None else f"aws+{self.name}@example.com"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if len(value) != 12 or not value.isdigit():
            raise ValueError(f"must be a 12-digit account id, got {value!r}")
        return value

    @model_validator(mode="after")
    def _device_names(self) -> Account:
        # Virtual MFA serials are unique per account: root's, each user's and the unassigned ones.
        names = list(self.unassigned_virtual_mfa) + [u.name for u in self.iam_users if u.virtual_mfa]
        if "virtual" in (self.root.mfa, *self.root.extra_mfa):
            names.append(self.root.virtual_mfa_name)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"virtual MFA device names used twice: {', '.join(dupes)}")
        users = [u.name for u in self.iam_users]
        if len(users) != len(set(users)):
            raise ValueError("IAM user names used twice")
        return self


class Scp(_Model):
    """A service control policy: real policy JSON, attached to the root, OUs or accounts."""

    name: str
    description: str = ""
    # The policy document: a YAML mapping, or the JSON text itself (e.g. a file's content).
    content: dict[str, Any] | str
    # "root", an OU path below the root ("Workloads/Prod"), or an account name or id.
    targets: list[str] = Field(default_factory=list)

    @field_validator("content")
    @classmethod
    def _content(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"is not valid JSON: {exc}") from None
            if not isinstance(parsed, dict):
                raise ValueError("must be a JSON object (a policy document)")
        return value

    def document(self) -> str:
        """The policy JSON as Organizations stores it."""
        return self.content if isinstance(self.content, str) else json.dumps(self.content, indent=2)


class Organization(_Model):
    # The AWS partition the organization lives in: its ARNs (the organization's, member roles',
    # root task policies') carry it, and the sandbox answers in its global-service region
    # (us-east-1, us-gov-west-1, cn-north-1), which the exporter then uses.
    partition: Literal["aws", "aws-us-gov", "aws-cn"] = "aws"
    # Centralized root access (IAM ListOrganizationsFeatures); None: IAM trusted access off.
    root_access_features: list[Literal["RootCredentialsManagement", "RootSessions"]] | None = Field(default_factory=list)
    # Whether the SERVICE_CONTROL_POLICY type is enabled on the root. When false the SCPs
    # below are still created and attached (real AWS detaches them when the type is
    # disabled; moto keeps them): either way none is enforced and no root is fenced.
    scp_enabled: bool = True
    scps: list[Scp] = Field(default_factory=list)
    # Trusted access for AWS Account Management: off, the management account cannot read a
    # member's alternate contacts (AccessDeniedException), only its own.
    account_trusted_access: bool = True


class Monitoring(_Model):
    """What a correct deployment has (docs/deployment.md), for the exporter to prove its sight."""

    # The regions where the forwarder rule is deployed and canaries are expected (default:
    # the sandbox's region, where root console sign-ins are recorded).
    regions: list[str] = Field(default_factory=list)
    # organization: one organization trail in the management account covers every account
    # and region; per_account: each account has its own trail in each monitored region
    # (and no organization trail), so one account and region can be blinded alone.
    trail: Literal["organization", "per_account"] = "organization"
    # The organization trail at start (StopLogging blinds every account).
    organization_trail: Literal["logging", "stopped"] = "logging"
    delays: Delays = Field(default_factory=Delays)
    # Whether a GetCallerIdentity made to the sandbox writes its CloudTrail record (the
    # canary). Off: no record comes back, so every configured source is blind.
    canaries: bool = True

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        import botocore.session

        known = set(botocore.session.get_session().get_available_regions("sts", "aws"))
        for partition in ("aws-us-gov", "aws-cn"):
            known |= set(botocore.session.get_session().get_available_regions("sts", partition))
        for region in value:
            if region not in known:
                close = difflib.get_close_matches(region, sorted(known), n=1)
                raise ValueError(f"{region!r} is not an AWS region" + (f"; did you mean {close[0]}?" if close else ""))
        if len(value) != len(set(value)):
            raise ValueError("a region is listed twice")
        return value


class Scenario(_Model):
    organization: Organization = Field(default_factory=Organization)
    management: Account
    accounts: list[Account] = Field(default_factory=list)
    monitoring: Monitoring = Field(default_factory=Monitoring)

    @model_validator(mode="after")
    def _ids(self) -> Scenario:
        if self.management.id != MANAGEMENT_ACCOUNT_ID:
            raise ValueError(f"management.id must be {MANAGEMENT_ACCOUNT_ID} (moto's default account)")
        if self.management.ou:
            raise ValueError("management account sits at the organization root (ou must be empty)")
        ids = [a.id for a in self.all_accounts]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"account ids used twice: {', '.join(dupes)}")
        self._check_scps()
        self._check_monitoring()
        return self

    def _check_monitoring(self) -> None:
        from exporter.aws.partitions import global_region

        regions = self.monitoring.regions or [global_region(self.organization.partition)]
        for n, account in enumerate(self.all_accounts):
            where = "management.monitoring" if n == 0 else f"accounts.{n - 1}.monitoring"
            own = account.monitoring
            for region in own.regions or []:
                if region not in regions:
                    raise ValueError(f"{where}.regions: {region} is not a monitored region; add it to monitoring.regions (now {', '.join(regions)})")
            if own.trail == "stopped" and self.monitoring.trail != "per_account":
                raise ValueError(
                    f"{where}.trail: stopped needs monitoring.trail: per_account (the organization trail records every account;"
                    " to stop it, set monitoring.organization_trail: stopped)"
                )
            if own.organization == "removed" and n == 0:
                raise ValueError(f"{where}.organization: the management account cannot leave its organization")
        if self.monitoring.trail == "per_account" and self.monitoring.organization_trail != "logging":
            raise ValueError("monitoring.organization_trail: there is no organization trail with monitoring.trail: per_account")

    @property
    def monitored_regions(self) -> list[str]:
        from exporter.aws.partitions import global_region

        return self.monitoring.regions or [global_region(self.organization.partition)]

    def _check_scps(self) -> None:
        names = [p.name for p in self.organization.scps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"SCP names used twice: {', '.join(dupes)}")
        if "FullAWSAccess" in names:
            raise ValueError("SCP name FullAWSAccess is taken by the AWS-managed policy on every target")
        accounts = {a.name for a in self.all_accounts} | {a.id for a in self.all_accounts}
        ous = self.ou_paths()
        for policy in self.organization.scps:
            for target in policy.targets:
                if target in ous and target in accounts:
                    raise ValueError(f"SCP {policy.name!r}: target {target!r} is both an OU path and an account name")
                if target != "root" and target not in ous and target not in accounts:
                    raise ValueError(
                        f"SCP {policy.name!r}: target {target!r} is neither root, an OU path of an account "
                        "(e.g. Workloads/Prod) nor an account name or id"
                    )

    def ou_paths(self) -> set[str]:
        """Every OU path the scenario creates (each account's OU and the OUs above it)."""
        paths: set[str] = set()
        for account in self.all_accounts:
            parts = [p for p in account.ou.split("/") if p]
            for n in range(1, len(parts) + 1):
                paths.add("/".join(parts[:n]))
        return paths

    @property
    def all_accounts(self) -> list[Account]:
        return [self.management, *self.accounts]

    def account(self, name_or_id: str) -> Account:
        for account in self.all_accounts:
            if name_or_id in (account.id, account.name):
                return account
        raise KeyError(name_or_id)


# Keys a scenario once had: a file written for the old name is told the new one and why.
_RENAMED_KEYS = {
    (Account, "status"): (
        "state",
        "an account's status was renamed state when scenarios gained every Organizations AccountState:"
        " PENDING_ACTIVATION, ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED",
    ),
}

MINIMAL_SCENARIO = 'management: {id: "123456789012", name: management}'


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load a scenario file; None loads the default scenario shipped with the package."""
    if path is None:
        with resources.as_file(resources.files("exporter.sandbox").joinpath("default.yaml")) as default:
            return _load(default, "default scenario")
    return _load(Path(path), f"scenario {str(path)!r}")


def _load(path: Path, where: str) -> Scenario:
    try:
        data = read_yaml_file(path)
    except YamlFileError as exc:
        raise ScenarioError(f"{where}: {exc.reason}") from None
    if data is None:
        raise ScenarioError(
            f"{where}: the file is empty (or only comments); the smallest scenario is {MINIMAL_SCENARIO}"
            " (the built-in one, to copy from: exporter/sandbox/default.yaml)"
        )
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{where}: {_describe_error(exc.errors(include_url=False)[0])}") from None


def _describe_error(error: Any) -> str:
    """One pydantic error as `location: problem`, with the fix where a usual mistake explains it."""
    loc, holder, annotation = _walk(error["loc"])
    where = ".".join(str(part) for part in loc) or "(top level)"
    kind, got = error["type"], error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = sorted(holder.model_fields) if holder is not None else []
        if (holder, key) in _RENAMED_KEYS:
            new, why = _RENAMED_KEYS[(holder, key)]
            hint = f"did you mean {new}? ({why})"
        elif close := difflib.get_close_matches(key, known, n=1):
            hint = f"did you mean {close[0]}?"
        else:
            hint = "keys here: " + ", ".join(known)
        return f"{where}: unknown key; {hint}" if known else f"{where}: unknown key"
    if kind == "missing":
        example = f"; the smallest scenario is {MINIMAL_SCENARIO}" if loc == ["management"] else ""
        return f"{where}: required key missing{example}"
    if kind == "model_type":
        keys = f" (keys: {', '.join(annotation.model_fields)})" if _is_model(annotation) else ""
        return f"{where}: must be a mapping{keys}, got {_kind_of(got)}"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        # A check across keys names the key it is about itself.
        if not loc and message.startswith(("accounts.", "management.", "monitoring.")):
            return message
        return f"{where}: {message}"
    hint = _quote_hint(loc[-1] if loc else "", got) if _takes_text(annotation) else ""
    return f"{where}: {message}, got {repr(got) if isinstance(got, str) else _kind_of(got)}{hint}"


def _walk(loc: tuple[int | str, ...]) -> tuple[list[int | str], type[BaseModel] | None, Any]:
    """The location as a user wrote it (without pydantic's union member labels), the model
    whose key its last part is, and the type expected at the location itself (None: unknown)."""
    shown: list[int | str] = []
    holder: type[BaseModel] | None = None
    annotation: Any = Scenario
    for part in loc:
        annotation = _unwrap(annotation)
        members = get_args(annotation) if get_origin(annotation) is Union else ()
        if members:
            # A union's errors name the member they are about; the user wrote no such key.
            tagged = {m.tag: a for a in members for m in getattr(a, "__metadata__", ()) if isinstance(m, Tag)}
            annotation = tagged.get(str(part))
            continue
        shown.append(part)
        if get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        elif _is_model(annotation) and part in annotation.model_fields:
            holder = annotation
            annotation = annotation.model_fields[str(part)].annotation
        else:
            holder = annotation if _is_model(annotation) else None
            annotation = None
    return shown, holder, _unwrap(annotation)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _takes_text(annotation: Any) -> bool:
    if get_origin(annotation) is Literal:
        return any(isinstance(value, str) for value in get_args(annotation))
    return annotation is str


def _unwrap(annotation: Any) -> Any:
    """The annotation without Annotated and without None in an optional."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if get_origin(annotation) in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
            annotation = Union[tuple(members)]
        return annotation


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, date):
        return f"{value.isoformat()} (a date)"
    if isinstance(value, str):
        return f"the text {value!r}"
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}"


def _quote_hint(key: int | str, value: Any) -> str:
    # YAML 1.1 reads unquoted yes/no, on/off, true/false as booleans and digits as numbers,
    # so `name: yes`, `mfa: no` or `id: 123456789012` arrive as something other than text.
    if isinstance(value, bool):
        return "; YAML reads unquoted true/false, yes/no and on/off as booleans: quote the value"
    if isinstance(value, (int, float)):
        example = f' (e.g. {key}: "{value}")' if isinstance(key, str) else ""
        return f"; YAML reads unquoted digits as a number: quote the value{example}"
    if isinstance(value, date):
        return "; YAML reads an unquoted date as a date: quote the value"
    return ""
