"""The sandbox scenario file: an organization, its accounts and each root user's state."""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import json

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

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


class Account(_Model):
    id: str
    name: str
    ou: str = ""  # path of OU names below the root, e.g. "Workloads/Prod"
    # Organizations' AccountState (botocore model); Status is retired.
    state: Literal["PENDING_ACTIVATION", "ACTIVE", "SUSPENDED", "PENDING_CLOSURE", "CLOSED"] = "ACTIVE"
    joined_method: Literal["CREATED", "INVITED"] = "CREATED"
    joined: datetime | None = None
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
    # Centralized root access (IAM ListOrganizationsFeatures); None: IAM trusted access off.
    root_access_features: list[Literal["RootCredentialsManagement", "RootSessions"]] | None = Field(default_factory=list)
    # Whether the SERVICE_CONTROL_POLICY type is enabled on the root. When false the SCPs
    # below are still created and attached (real AWS detaches them when the type is
    # disabled; moto keeps them): either way none is enforced and no root is fenced.
    scp_enabled: bool = True
    scps: list[Scp] = Field(default_factory=list)


class Scenario(_Model):
    organization: Organization = Field(default_factory=Organization)
    management: Account
    accounts: list[Account] = Field(default_factory=list)

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
        return self

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


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load a scenario file; None loads the default scenario shipped with the package."""
    if path is None:
        text = resources.files("exporter.sandbox").joinpath("default.yaml").read_text(encoding="utf-8")
        where = "default scenario"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"scenario {str(path)!r}: {exc.strerror or exc}") from None
        where = f"scenario {str(path)!r}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: not valid YAML: {exc}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ScenarioError(f"{where}: {loc}: {err['msg']}") from None
