"""What moto 5.2.5 lacks and the exporter needs, added without forking moto.

moto serves each request by calling the method named after the action (snake_case) on the
service's response class, looked up at call time; a method set on that class is served in
server mode with moto's own wire serialization. State lives on moto's backend objects, so
moto's reset clears it. What is added:

- the root user of every account (`RootState`): its MFA devices, password, access keys and
  signing certificates, reflected in `GetAccountSummary`, the credential report's
  `<root_account>` row, and `ListVirtualMFADevices` (virtual devices assigned to root);
- credential reports generated at a real time, cached for 4 hours, optionally slow to
  generate or malformed (`ReportInProgress`, `ReportExpired`, `ReportNotPresent`);
- `iam:ListOrganizationsFeatures` (centralized root access);
- `sts:AssumeRoot` and the `IAMAuditRootUserCredentials` session it opens: the audit
  calls on the root user, and AccessDenied for everything the task policy does not allow;
- member roles that cannot be assumed (AccessDenied from `sts:AssumeRole`);
- CloudTrail `LookupEvents` over records the sandbox holds, with AWS's limit of 2
  requests per second per account and region (`ThrottlingException` beyond it);
- CloudTrail trails as AWS shows and applies them, one model for the API and the sandbox's
  deliveries: the organization trail shows in members (`DescribeTrails` with
  `includeShadowTrails`), `GetTrailStatus` and `GetEventSelectors` take a shadow or
  organization trail's ARN, and a trail created without selectors records (and reports) all
  read and write management events;
- EventBridge rule states (a `DISABLED` rule matches nothing, an `ENABLED` one no read-only
  CloudTrail event), events forwarded to another bus unchanged, and the CloudTrail record of
  every `sts:GetCallerIdentity` (the exporter's canary) handed to the sandbox;
- `account:GetAlternateContact` with `AccountId` as AWS Organizations allows it (moto
  answers for any account): only the management account of the member's organization, and
  only while trusted access for AWS Account Management is on (AccessDeniedException with
  AWS's "enable trusted access" message otherwise).
"""

from __future__ import annotations

import copy
import logging
import random
import string
import threading
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore import xform_name
from moto.account.models import account_backends
from moto.account.responses import AccountResponse
from moto.cloudtrail.models import CloudTrailBackend, Trail
from moto.cloudtrail.responses import CloudTrailResponse
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.events.models import Rule
from moto.iam import iam_backends
from moto.iam.exceptions import IAMException, ReportNotPresentException
from moto.iam.models import IAMBackend, VirtualMfaDevice
from moto.iam.responses import IamResponse
from moto.organizations.models import organizations_backends
from moto.sts.exceptions import STSClientError, STSValidationError
from moto.sts.models import STSBackend
from moto.sts.responses import TokenResponse

from exporter.posture.credential_report import REPORT_HEADER

REPORT_CACHE = timedelta(hours=4)
TASK_POLICIES = {
    "IAMAuditRootUserCredentials",
    "IAMCreateRootUserPassword",
    "IAMDeleteRootUserCredentials",
    "S3UnlockBucketPolicy",
    "SQSUnlockQueuePolicy",
}
# What the IAMAuditRootUserCredentials task policy allows on the root user.
AUDIT_ACTIONS = {
    "GetAccountSummary",
    "GetUser",
    "GetLoginProfile",
    "ListAccessKeys",
    "GetAccessKeyLastUsed",
    "ListSigningCertificates",
    "ListMFADevices",
}


class ReportInProgress(IAMException):
    code = "ReportInProgress"


class ReportExpired(IAMException):
    code = "ReportExpired"


class ServiceAccessNotEnabled(IAMException):
    code = "ServiceAccessNotEnabledException"


class OrganizationNotInAllFeaturesMode(IAMException):
    code = "OrganizationNotInAllFeaturesModeException"


class IamAccessDenied(IAMException):
    code = "AccessDenied"


class IamThrottling(IAMException):
    code = "Throttling"


class StsAccessDenied(STSClientError):
    code = "AccessDenied"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00") if value else "N/A"


def _random(prefix: str, length: int) -> str:
    return prefix + "".join(random.choices(string.ascii_uppercase + string.digits, k=length - len(prefix)))


@dataclass
class RootKey:
    access_key_id: str
    active: bool = True
    created: datetime = field(default_factory=_now)
    last_used: datetime | None = None
    last_used_region: str = "us-east-1"
    last_used_service: str = "s3"
    slot: int | None = None  # credential report column pair; None: the first free one


@dataclass
class RootCertificate:
    certificate_id: str
    active: bool = True
    created: datetime = field(default_factory=_now)


@dataclass
class RootState:
    account_id: str
    created: datetime = field(default_factory=lambda: datetime(2019, 4, 1, tzinfo=timezone.utc))
    mfa_devices: list[tuple[str, str, datetime]] = field(default_factory=list)  # (kind, serial, enabled)
    password: bool = True
    password_report: str = "not_supported"
    password_last_used: datetime | None = None
    password_last_used_report: str | None = None  # "N/A" / "no_information" shown instead of the time
    summary_password_key: bool = True
    virtual_mfa_name: str = "root-account-mfa-device"
    report_columns: int = 22
    report_upper_booleans: bool = False
    # IAM operation -> error ("throttle", "access_denied", "server_error") for this account only.
    iam_faults: dict[str, str] = field(default_factory=dict)
    access_keys: list[RootKey] = field(default_factory=list)
    certificates: list[RootCertificate] = field(default_factory=list)
    deny_assume_role: bool = False
    report_generation_seconds: float = 0.0
    report_malformed: bool = False
    # Every IAM call made in this account, whatever the operation and the caller (its member
    # role, an AssumeRoot session, the exporter's own credentials in the management account),
    # answers Throttling: a throttled account, for fault tests.
    throttle_iam: bool = False
    # The organization's partition: the root's ARN and its MFA serials carry it.
    partition: str = "aws"

    @property
    def arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:root"

    def add_mfa(self, kind: str, when: datetime | None = None) -> str:
        n = len(self.mfa_devices)
        if kind == "virtual":
            serial = f"arn:{self.partition}:iam::{self.account_id}:mfa/{self.virtual_mfa_name}" + (f"-{n}" if n else "")
        elif kind == "u2f":
            serial = f"arn:{self.partition}:iam::{self.account_id}:u2f/root/security-key-{n}-{_random('', 12).lower()}"
        else:
            serial = _random("GAHT", 12)
        self.mfa_devices.append((kind, serial, when or self.created + timedelta(days=1)))
        return serial

    def key_slots(self) -> list[RootKey | None]:
        """The keys in credential-report order: slot 1, slot 2 (None for an empty slot)."""
        slots: list[RootKey | None] = [None, None]
        for key in self.access_keys:
            if key.slot is not None:
                slots[key.slot - 1] = key
        for key in self.access_keys:
            if key.slot is None:
                slots[slots.index(None)] = key
        return slots

    def report_header(self) -> str:
        return ",".join(c for c in REPORT_HEADER.split(",") if c in _REPORT_COLUMNS[self.report_columns])

    def report_row(self) -> str:
        """The `<root_account>` row, with the columns of `report_header()`."""
        certs = self.certificates + [None] * (2 - len(self.certificates))
        if self.password_last_used_report is not None:
            used = self.password_last_used_report
        elif self.password_last_used:
            used = _iso(self.password_last_used)
        else:
            used = "no_information" if self.password else "N/A"
        row = {
            "user": "<root_account>",
            "arn": self.arn,
            "user_creation_time": _iso(self.created),
            # Independent of `password`: AWS writes not_supported for most roots, with or without one.
            "password_enabled": (
                self._bool(self.password_report == "true") if self.password_report in ("true", "false") else self.password_report
            ),
            "password_last_used": used,
            "password_last_changed": "not_supported",
            "password_next_rotation": "not_supported",
            "mfa_active": self._bool(bool(self.mfa_devices)),
        }
        for n, key in enumerate(self.key_slots(), start=1):
            used_at = key.last_used if key else None
            row[f"access_key_{n}_active"] = self._bool(bool(key and key.active))
            row[f"access_key_{n}_last_rotated"] = _iso(key.created) if key else "N/A"
            row[f"access_key_{n}_last_used_date"] = _iso(used_at)
            row[f"access_key_{n}_last_used_region"] = key.last_used_region if key and used_at else "N/A"
            row[f"access_key_{n}_last_used_service"] = key.last_used_service if key and used_at else "N/A"
        for n, cert in enumerate(certs, start=1):
            row[f"cert_{n}_active"] = self._bool(bool(cert and cert.active))
            row[f"cert_{n}_last_rotated"] = _iso(cert.created) if cert else "N/A"
        return ",".join(row[c] for c in self.report_header().split(","))

    def _bool(self, value: bool) -> str:
        text = "true" if value else "false"
        return text.upper() if self.report_upper_booleans else text


# Which columns each report shape has (see scenario.CredentialReport.columns).
_KEY_LAST_USED = {f"access_key_{n}_last_used_{c}" for n in (1, 2) for c in ("date", "region", "service")}
_REPORT_COLUMNS = {
    22: set(REPORT_HEADER.split(",")),
    18: set(REPORT_HEADER.split(",")) - {c for c in _KEY_LAST_USED if not c.endswith("_date")},
    16: set(REPORT_HEADER.split(",")) - _KEY_LAST_USED,
}

_lock = threading.RLock()


def _backend(account_id: str) -> IAMBackend:
    return iam_backends[account_id]["aws"]


def root_state(account_id: str) -> RootState:
    """The root user of an account (created on first use: password, nothing else)."""
    backend = _backend(account_id)
    with _lock:
        state = getattr(backend, "sandbox_root", None)
        if state is None:
            state = RootState(account_id)
            backend.sandbox_root = state  # type: ignore[attr-defined]
        return state


def set_root_features(management_account_id: str, features: list[str] | None, partition: str = "aws") -> None:
    """Centralized root access features; None means IAM's trusted access to Organizations is off."""
    organizations_backends[management_account_id][partition].sandbox_root_features = features  # type: ignore[attr-defined]


def set_account_trusted_access(management_account_id: str, enabled: bool, partition: str = "aws") -> None:
    """Trusted access for AWS Account Management (`account.amazonaws.com`) in the organization."""
    organizations_backends[management_account_id][partition].sandbox_account_trusted_access = enabled  # type: ignore[attr-defined]


def set_security_contact(account_id: str, name: str, partition: str = "aws") -> None:
    account_backends[account_id][partition].put_alternate_contact(
        alternate_contact_type="SECURITY",
        email_address=f"security+{name}@example.com",
        name=f"{name} security",
        phone_number="+1-555-0100",
        title="Security",
    )


class AccountAccessDenied(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__(error_type="AccessDeniedException", message=message)


_original_get_alternate_contact = AccountResponse.get_alternate_contact


def _get_alternate_contact(self: AccountResponse) -> Any:
    """Another account's contact only for its organization's management account, with trusted access on.

    botocore's `account` model (GetAlternateContactRequest.AccountId): the caller must be in the
    management account (or a delegated administrator) and the organization must have trusted
    access enabled for the Account Management service."""
    target = self._get_param("AccountId")
    caller = self.current_account
    if target and target != caller:
        action = f"User: arn:{self.partition}:iam::{caller}:root is not authorized to perform: account:GetAlternateContact"
        org_backend = organizations_backends[caller][self.partition]
        if org_backend.org is None or org_backend.org.master_account_id != caller or _management_of(target) != caller:
            raise AccountAccessDenied(action)
        if not getattr(org_backend, "sandbox_account_trusted_access", True):
            raise AccountAccessDenied(f"{action} (Your organization must first enable trusted access with AWS Account Management.)")
    return _original_get_alternate_contact(self)


def _root_features(account_id: str, partition: str) -> list[str] | None:
    backend = organizations_backends[account_id][partition]
    return getattr(backend, "sandbox_root_features", [])


def _management_of(account_id: str) -> str | None:
    entry = organizations_backends.master_accounts.get(account_id)
    return entry[0] if entry else None


# -- account summary and credential report ---------------------------------------------------

_original_summary = IAMBackend.get_account_summary


def _get_account_summary(self: IAMBackend) -> Any:
    summary = _original_summary(self)
    root = root_state(self.account_id)
    summary._account_mfa_enabled = int(bool(root.mfa_devices))
    summary._account_access_keys_present = int(bool(root.access_keys))
    summary._account_signing_certificates_present = int(bool(root.certificates))
    return summary


def _report_csv(backend: IAMBackend, root: RootState | None = None) -> str:
    """The report as generated now; `root` replaces the live root (a report from before a change)."""
    live = root_state(backend.account_id)
    root = root or live
    if live.report_malformed:
        return "this is,not a credential report\n\x00\x01"
    # moto writes every user row with the 22 current columns: keep those of this report's shape.
    full = REPORT_HEADER.split(",")
    keep = [full.index(c) for c in root.report_header().split(",")]
    users = ""
    for name in backend.users:
        cells = backend.users[name].to_csv().rstrip("\n").split(",")
        users += ",".join(root._bool(cells[i] == "true") if cells[i] in ("true", "false") else cells[i] for i in keep) + "\n"
    return f"{root.report_header()}\n{root.report_row()}\n{users}"


def set_cached_report(account_id: str, root: RootState, generated: datetime) -> None:
    """A report generated at `generated` from `root` (an earlier state), cached as IAM caches it."""
    backend = _backend(account_id)
    with _lock:
        backend.sandbox_report = (_report_csv(backend, root), generated)  # type: ignore[attr-defined]


def _generate_credential_report(self: IamResponse) -> ActionResult:
    backend = self.backend
    now = _now()
    with _lock:
        report = getattr(backend, "sandbox_report", None)  # (csv, generated_at) or None
        pending = getattr(backend, "sandbox_report_pending", None)  # ready_at or None
        if pending is not None:
            if now < pending:
                return ActionResult({"State": "INPROGRESS", "Description": "Report generation in progress"})
            backend.sandbox_report = (_report_csv(backend), pending)
            backend.sandbox_report_pending = None
            return ActionResult({"State": "COMPLETE"})
        if report is not None and now - report[1] < REPORT_CACHE:
            return ActionResult({"State": "COMPLETE"})
        delay = root_state(backend.account_id).report_generation_seconds
        if delay <= 0:
            backend.sandbox_report = (_report_csv(backend), now)
            return ActionResult({"State": "STARTED", "Description": "No report exists. Starting a new report generation task"})
        backend.sandbox_report_pending = now + timedelta(seconds=delay)
        return ActionResult({"State": "STARTED", "Description": "No report exists. Starting a new report generation task"})


def _get_credential_report(self: IamResponse) -> ActionResult:
    backend = self.backend
    now = _now()
    with _lock:
        pending = getattr(backend, "sandbox_report_pending", None)
        if pending is not None and now >= pending:
            backend.sandbox_report = (_report_csv(backend), pending)
            backend.sandbox_report_pending = None
            pending = None
        report = getattr(backend, "sandbox_report", None)
    if report is None:
        if pending is not None:
            raise ReportInProgress("Report generation in progress")
        raise ReportNotPresentException("Credential report not present")
    if now - report[1] >= REPORT_CACHE:
        raise ReportExpired("The most recent credential report has expired")
    return ActionResult({"Content": report[0], "ReportFormat": "text/csv", "GeneratedTime": report[1]})


def _list_organizations_features(self: IamResponse) -> ActionResult:
    account = self.current_account
    org_backend = organizations_backends[account][self.partition]
    if org_backend.org is None:
        raise IamAccessDenied("The account is not part of an organization")
    if org_backend.org.master_account_id != account:
        raise IamAccessDenied("Only the management account or a delegated administrator can list features")
    # An organization created with FeatureSet CONSOLIDATED_BILLING (moto keeps it on the organization).
    if org_backend.org.feature_set != "ALL":
        raise OrganizationNotInAllFeaturesMode("The request was rejected because your organization does not have All features enabled.")
    features = _root_features(account, self.partition)
    if features is None:
        raise ServiceAccessNotEnabled("Trusted access for IAM is not enabled in AWS Organizations")
    return ActionResult({"OrganizationId": org_backend.org.id, "EnabledFeatures": list(features)})


# -- virtual MFA assigned to root -------------------------------------------------------------

_original_list_virtual = IAMBackend.list_virtual_mfa_devices


def _list_virtual_mfa_devices(self: IAMBackend, assignment_status: str, marker: Any, max_items: Any) -> Any:
    root = root_state(self.account_id)
    with _lock:
        assigned = {serial: enabled for kind, serial, enabled in root.mfa_devices if kind == "virtual"}
        for serial, enabled in assigned.items():
            device = self.virtual_mfa_devices.get(serial)
            if device is None:
                # moto reads a partition name where it expects a region (its get_partition).
                device = VirtualMfaDevice(self.account_id, self.partition, "/" + serial.split(":mfa/", 1)[-1])
                device.serial_number = serial
                self.virtual_mfa_devices[serial] = device
            device.enable_date = enabled
            device.user = {"Path": "/", "UserId": self.account_id, "Arn": root.arn, "CreateDate": root.created}
        # A device removed from root (DeactivateMFADevice) still exists, assigned to nobody.
        for serial, device in self.virtual_mfa_devices.items():
            if serial not in assigned and isinstance(device.user, dict) and device.user.get("Arn") == root.arn:
                device.user = None
                device.enable_date = None
    return _original_list_virtual(self, assignment_status, marker, max_items)


# -- sts:AssumeRoot and the root audit session ----------------------------------------------


def _root_session(response: IamResponse) -> str | None:
    """The task policy of the caller's AssumeRoot session, or None for any other caller."""
    backend = response.backend
    sessions = getattr(backend, "sandbox_root_sessions", {})
    return sessions.get(response.get_access_key())


def _assume_root(self: TokenResponse) -> ActionResult:
    params = self._get_params()
    target = params.get("TargetPrincipal") or ""
    policy = params.get("TaskPolicyArn") or {}
    policy_arn = policy.get("arn") if isinstance(policy, dict) else str(policy)
    duration = int(params.get("DurationSeconds") or 900)
    caller = self.current_account
    if duration > 900 or duration < 0:
        raise STSValidationError("DurationSeconds must be at most 900 for AssumeRoot")
    # The task policy is AWS-managed in the caller's partition (arn:aws-us-gov:iam::aws:policy/...).
    if not policy_arn or not policy_arn.startswith(f"arn:{self.partition}:iam::aws:policy/root-task/") or policy_arn.rsplit("/", 1)[-1] not in TASK_POLICIES:
        raise STSValidationError(f"TaskPolicyArn {policy_arn!r} is not a root task policy")
    if _management_of(target) != caller:
        raise StsAccessDenied(f"Account {caller} cannot assume root in {target!r}: not its organization's management account")
    if "RootSessions" not in (_root_features(caller, self.partition) or []):
        raise StsAccessDenied("Centralized root sessions (RootSessions) are not enabled for this organization")
    # The session's IAM calls reach the backend of their own partition: its sessions live there.
    backend = iam_backends[target][self.partition]
    key = backend.create_temp_access_key()
    with _lock:
        sessions = getattr(backend, "sandbox_root_sessions", None)
        if sessions is None:
            sessions = backend.sandbox_root_sessions = {}  # type: ignore[attr-defined]
        sessions[key.access_key_id] = policy_arn.rsplit("/", 1)[-1]
    expiration = _now() + timedelta(seconds=duration)
    token = "FwoGZXIvYXdzE" + "".join(random.choices(string.ascii_letters + string.digits, k=120))
    return ActionResult(
        {
            "Credentials": {
                "AccessKeyId": key.access_key_id,
                "SecretAccessKey": key.secret_access_key,
                "SessionToken": token,
                "Expiration": expiration,
            },
            "SourceIdentity": "",
        }
    )


def _root_only(action: str, handler: Any) -> Any:
    """Serve `action` for an AssumeRoot audit session from the root state; others go to moto."""
    original = getattr(IamResponse, xform_name(action))

    def method(self: IamResponse) -> ActionResult:
        policy = _root_session(self)
        if policy is None:
            return original(self)
        if policy != "IAMAuditRootUserCredentials" or action not in AUDIT_ACTIONS:
            raise IamAccessDenied(f"The task policy {policy} does not allow iam:{action}")
        return handler(self, root_state(self.current_account))

    method.__name__ = xform_name(action)
    return method


def _deny_in_root_session(action: str) -> Any:
    original = getattr(IamResponse, xform_name(action))

    def method(self: IamResponse) -> ActionResult:
        policy = _root_session(self)
        if policy is not None:
            raise IamAccessDenied(f"The task policy {policy} does not allow iam:{action}")
        return original(self)

    method.__name__ = xform_name(action)
    return method


def _get_user(self: IamResponse, root: RootState) -> ActionResult:
    user: dict[str, Any] = {"Path": "/", "UserId": root.account_id, "Arn": root.arn, "CreateDate": root.created}
    if root.password and root.password_last_used:
        user["PasswordLastUsed"] = root.password_last_used
    return ActionResult({"User": user})


def _get_login_profile(self: IamResponse, root: RootState) -> ActionResult:
    if not root.password:
        from moto.iam.exceptions import NotFoundException

        raise NotFoundException("Login Profile for the root user cannot be found.")
    return ActionResult({"LoginProfile": {"UserName": "root", "CreateDate": root.created, "PasswordResetRequired": False}})


def _list_access_keys(self: IamResponse, root: RootState) -> ActionResult:
    keys = [
        {"UserName": "root", "AccessKeyId": k.access_key_id, "Status": "Active" if k.active else "Inactive", "CreateDate": k.created}
        for k in root.access_keys
    ]
    return ActionResult({"AccessKeyMetadata": keys, "IsTruncated": False})


def _get_access_key_last_used(self: IamResponse, root: RootState) -> ActionResult:
    key_id = self._get_param("AccessKeyId")
    for key in root.access_keys:
        if key.access_key_id == key_id:
            used: dict[str, Any] = {"ServiceName": "N/A", "Region": "N/A"}
            if key.last_used:
                used = {"LastUsedDate": key.last_used, "ServiceName": key.last_used_service, "Region": key.last_used_region}
            return ActionResult({"UserName": "root", "AccessKeyLastUsed": used})
    raise IamAccessDenied(f"Access key {key_id} does not belong to the root user")


def _list_signing_certificates(self: IamResponse, root: RootState) -> ActionResult:
    certs = [
        {
            "UserName": "root",
            "CertificateId": c.certificate_id,
            "CertificateBody": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "Status": "Active" if c.active else "Inactive",
            "UploadDate": c.created,
        }
        for c in root.certificates
    ]
    return ActionResult({"Certificates": certs, "IsTruncated": False})


def _list_mfa_devices(self: IamResponse, root: RootState) -> ActionResult:
    devices = [{"UserName": "root", "SerialNumber": serial, "EnableDate": enabled} for _, serial, enabled in root.mfa_devices]
    return ActionResult({"MFADevices": devices, "IsTruncated": False})


def _get_account_summary_response(self: IamResponse) -> ActionResult:
    root = root_state(self.current_account)
    policy = _root_session(self)
    if policy is not None and policy != "IAMAuditRootUserCredentials":
        raise IamAccessDenied(f"The task policy {policy} does not allow iam:GetAccountSummary")
    summary = dict(self.backend.get_account_summary().summary_map)
    # moto 5.2.5 omits AccountPasswordPresent, a key of the model's summaryKeyType.
    if root.summary_password_key:
        summary["AccountPasswordPresent"] = int(root.password)
    return ActionResult({"SummaryMap": summary})


class IamServerError(IAMException):
    code = "ServiceFailure"  # the model's ServiceFailureException, HTTP 500


_FAULT_ERRORS = {
    "throttle": lambda op: IamThrottling("Rate exceeded"),
    "access_denied": lambda op: IamAccessDenied(f"User is not authorized to perform: iam:{op}"),
    "server_error": lambda op: IamServerError(f"Service failure on iam:{op}"),
}
_original_call_action = IamResponse.call_action


def _call_action(self: IamResponse) -> Any:
    """Fail IAM calls of one account (scenario `faults`) as AWS would answer them: every call
    of a throttled account (`throttle_iam`: IAM throttles per account, whatever the
    operation), or every call of one operation (an OperationFault)."""
    action = self._get_action()
    root = root_state(self.current_account)
    error = "throttle" if root.throttle_iam else root.iam_faults.get(action)
    if error is None:
        return _original_call_action(self)
    status, headers, body = self.serialized(ActionResult(_FAULT_ERRORS[error](action)))
    headers["status"] = status
    return status, headers, body


# -- CloudTrail LookupEvents -----------------------------------------------------------------

LOOKUP_RATE = 2  # requests per second per account and region, as AWS enforces
_LOOKUP_ATTRIBUTES = {
    "EventId": lambda r: r.get("eventID"),
    "EventName": lambda r: r.get("eventName"),
    "EventSource": lambda r: r.get("eventSource"),
    "ReadOnly": lambda r: str(r.get("readOnly", False)).lower(),
    "Username": lambda r: _lookup_username(r),
    "AccessKeyId": lambda r: (r.get("userIdentity") or {}).get("accessKeyId"),
}


def _lookup_username(record: dict[str, Any]) -> str:
    from exporter.sandbox.records import lookup_username

    return lookup_username(record)


class CloudTrailThrottling(JsonRESTError):
    def __init__(self) -> None:
        super().__init__("ThrottlingException", "Rate exceeded")


class CloudTrailInvalidToken(JsonRESTError):
    def __init__(self) -> None:
        super().__init__("InvalidNextTokenException", "Invalid NextToken")


def _trail_backend(account_id: str, region: str) -> Any:
    from moto.cloudtrail.models import cloudtrail_backends

    return cloudtrail_backends[account_id][region]


def add_cloudtrail_record(account_id: str, region: str, record: dict[str, Any], visible_at: datetime | None = None) -> None:
    """Make a record visible to LookupEvents in (account, region), from `visible_at` on."""
    backend = _trail_backend(account_id, region)
    with _lock:
        events = getattr(backend, "sandbox_events", None)
        if events is None:
            events = backend.sandbox_events = []  # type: ignore[attr-defined]
        events.append((visible_at or _now(), record))


def lookup_requests(account_id: str, region: str) -> list[float]:
    """Monotonic times of every LookupEvents request to (account, region), for rate tests."""
    return list(getattr(_trail_backend(account_id, region), "sandbox_lookup_times", []))


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), timezone.utc)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _lookup_events(self: Any) -> ActionResult:
    import json as _json
    import time as _time

    backend = _trail_backend(self.current_account, self.region)
    now_mono = _time.monotonic()
    with _lock:
        times = getattr(backend, "sandbox_lookup_times", None)
        if times is None:
            times = backend.sandbox_lookup_times = []  # type: ignore[attr-defined]
        times.append(now_mono)
        recent = [t for t in times if now_mono - t < 1.0]
        throttled = len(recent) > LOOKUP_RATE
        if throttled:
            backend.sandbox_lookup_throttled = getattr(backend, "sandbox_lookup_throttled", 0) + 1  # type: ignore[attr-defined]
    if throttled:
        raise CloudTrailThrottling()
    params = _json.loads(self.body or "{}")
    attributes = params.get("LookupAttributes") or []
    start = _parse_time(params.get("StartTime"))
    end = _parse_time(params.get("EndTime"))
    limit = min(int(params.get("MaxResults") or 50), 50)
    token = params.get("NextToken")
    now = _now()
    with _lock:
        events = list(getattr(backend, "sandbox_events", []))
    matches = []
    for visible_at, record in events:
        if visible_at > now:
            continue
        event_time = _parse_time(record.get("eventTime"))
        if event_time is None or (start and event_time < start) or (end and event_time > end):
            continue
        if any(_LOOKUP_ATTRIBUTES.get(a.get("AttributeKey"), lambda r: None)(record) != a.get("AttributeValue") for a in attributes):
            continue
        matches.append((event_time, record))
    matches.sort(key=lambda item: item[0], reverse=True)
    offset = 0
    if token:
        try:
            offset = int(token)
        except ValueError:
            raise CloudTrailInvalidToken() from None
    page = matches[offset : offset + limit]
    result: dict[str, Any] = {
        "Events": [
            {
                "EventId": r.get("eventID"),
                "EventName": r.get("eventName"),
                "ReadOnly": str(r.get("readOnly", False)).lower(),
                "AccessKeyId": (r.get("userIdentity") or {}).get("accessKeyId"),
                "EventTime": t,
                "EventSource": r.get("eventSource"),
                "Username": _lookup_username(r),
                "Resources": [],
                "CloudTrailEvent": _json.dumps(r),
            }
            for t, r in page
        ]
    }
    if offset + limit < len(matches):
        result["NextToken"] = str(offset + limit)
    return ActionResult(result)


# -- CloudTrail trails as AWS shows and applies them (issue 23) --------------------------------
#
# One model of which trails record an account's events in a region, used both to answer the
# CloudTrail API (the exporter's configuration checks read it through the member role) and to
# decide whether the sandbox delivers a record through EventBridge and the trail's S3 files.
# moto 5.2.5 shows an organization trail only in the account that owns it, finds a trail for
# GetTrailStatus/GetEventSelectors only by this region's name, and answers GetEventSelectors
# with no selector for a trail created without any. AWS, per the CloudTrail API Reference:
#
# - `DescribeTrails` with `includeShadowTrails` (the default) returns "the replication in a
#   Region of a trail that was created in a different Region, or in the case of an
#   organization trail, the replication of an organization trail in member accounts";
# - `GetTrailStatus` and `GetEventSelectors` take a trail's name (a trail of this account and
#   region) or its ARN, which "if the trail is an organization trail and you are a member
#   account" is required; members cannot change an organization trail (the other operations
#   stay moto's own, which look in the caller's account only);
# - a trail created without event selectors logs all read and write management events and
#   says so: `GetEventSelectors` answers `ReadWriteType: All, IncludeManagementEvents: true`.

ENABLED_WITH_READ_ONLY = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
DEFAULT_EVENT_SELECTORS = [{"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": [], "ExcludeManagementEventSources": []}]
_original_describe_trails = CloudTrailBackend.describe_trails
_original_trail_selectors = Trail.get_event_selectors


def _same_partition(region: str, other: str) -> bool:
    from moto.utilities.utils import get_partition

    return bool(get_partition(region) == get_partition(other))


def _covers(trail: Any, region: str) -> bool:
    """A multi-region trail covers every region of its partition; another only its home region."""
    return trail.region_name == region or (trail.is_multi_region and _same_partition(trail.region_name, region))


def organization_trails(account_id: str, region: str) -> list[Any]:
    """The organization trails covering `region` of the organization `account_id` is in (as a
    member or as its management account); an account that left has none."""
    from moto.cloudtrail.models import cloudtrail_backends

    management = _management_of(account_id) or account_id
    return [
        trail
        for backend in list(cloudtrail_backends[management].values())
        for trail in list(backend.trails.values())
        if trail.is_org_trail and _covers(trail, region)
    ]


def covering_trails(account_id: str, region: str) -> list[Any]:
    """Every trail that records (account, region), as `DescribeTrails(includeShadowTrails=True)`
    in that account and region lists them: its own trails and its organization's."""
    from moto.cloudtrail.models import cloudtrail_backends

    own = [
        trail
        for backend in list(cloudtrail_backends[account_id].values())
        for trail in list(backend.trails.values())
        if not trail.is_org_trail and _covers(trail, region)
    ]
    return own + organization_trails(account_id, region)


def _trail_selectors(self: Trail) -> Any:
    selectors, advanced = _original_trail_selectors(self)
    if not selectors and not advanced:
        selectors = copy.deepcopy(DEFAULT_EVENT_SELECTORS)
    return selectors, advanced


def _matches(condition: dict[str, Any], value: str) -> bool:
    """An AdvancedFieldSelector's operators on one value (all of them must hold)."""
    tests = {
        "Equals": lambda v: value in v,
        "StartsWith": lambda v: any(value.startswith(x) for x in v),
        "EndsWith": lambda v: any(value.endswith(x) for x in v),
        "NotEquals": lambda v: value not in v,
        "NotStartsWith": lambda v: not any(value.startswith(x) for x in v),
        "NotEndsWith": lambda v: not any(value.endswith(x) for x in v),
    }
    return all(test(condition[op]) for op, test in tests.items() if condition.get(op))


def records_management_event(trail: Any, read_only: bool, event_source: str) -> bool:
    """Whether the trail's selectors (AWS's default when it has none) record a management
    event from `event_source` that is read-only or not (CloudTrail API Reference,
    EventSelector and AdvancedFieldSelector)."""
    basic, advanced = trail.get_event_selectors()
    if advanced:
        for selector in advanced:
            fields = {f.get("Field"): f for f in selector.get("FieldSelectors", [])}
            values = {"eventCategory": "Management", "readOnly": str(read_only).lower(), "eventSource": event_source}
            if "eventCategory" in fields and all(_matches(fields[name], value) for name, value in values.items() if name in fields):
                return True
        return False
    wanted = {"All", "ReadOnly" if read_only else "WriteOnly"}
    return any(
        s.get("IncludeManagementEvents", True)
        and s.get("ReadWriteType", "All") in wanted
        and event_source not in (s.get("ExcludeManagementEventSources") or [])
        for s in basic
    )


def trail_delivers(account_id: str, region: str, read_only: bool, event_source: str) -> list[Any]:
    """The logging trails that record this management event of (account, region)."""
    return [
        t for t in covering_trails(account_id, region) if t.status.is_logging and records_management_event(t, read_only, event_source)
    ]


def _describe_trails(self: CloudTrailBackend, include_shadow_trails: bool) -> Any:
    if not include_shadow_trails:
        return _original_describe_trails(self, include_shadow_trails)
    return covering_trails(self.account_id, self.region_name)


def _visible_trail(self: CloudTrailBackend, name_or_arn: str) -> Any:
    """The trail an ARN names among those the caller sees, or a name among its own in this region."""
    from moto.cloudtrail.exceptions import TrailNameTooShort, TrailNotFoundException

    if len(name_or_arn) < 3:
        raise TrailNameTooShort(actual_length=len(name_or_arn))
    for trail in covering_trails(self.account_id, self.region_name):
        own = trail.account_id == self.account_id and trail.region_name == self.region_name
        if trail.arn == name_or_arn or (own and trail.trail_name == name_or_arn):
            return trail
    raise TrailNotFoundException(account_id=self.account_id, name=name_or_arn)


def _get_trail_status(self: CloudTrailBackend, name: str) -> Any:
    return _visible_trail(self, name).status


def _get_event_selectors(self: CloudTrailBackend, trail_name: str) -> Any:
    trail = _visible_trail(self, trail_name)
    return (trail.arn, *trail.get_event_selectors())


def _install_trail_views() -> None:
    CloudTrailBackend.describe_trails = _describe_trails  # type: ignore[method-assign]
    CloudTrailBackend.get_trail_status = _get_trail_status  # type: ignore[method-assign]
    CloudTrailBackend.get_event_selectors = _get_event_selectors  # type: ignore[method-assign]
    Trail.get_event_selectors = _trail_selectors  # type: ignore[method-assign]


# -- member roles that cannot be assumed ------------------------------------------------------

_original_assume_role = STSBackend.assume_role


def _assume_role(self: STSBackend, region_name: str, role_session_name: str, role_arn: str, policy: str, duration: int, external_id: str) -> Any:
    parts = (role_arn or "").split(":")
    target = parts[4] if len(parts) > 4 else ""
    if target and getattr(_backend(target), "sandbox_root", None) is not None and root_state(target).deny_assume_role:
        raise StsAccessDenied(f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}")
    return _original_assume_role(self, region_name, role_session_name, role_arn, policy, duration, external_id)


_installed = False


def install() -> None:
    """Add the extensions to moto (idempotent)."""
    global _installed
    if _installed:
        return
    # Our AccessDenied errors are real AWS codes that botocore's models do not list.
    warnings.filterwarnings("ignore", message=r".*does not match an error shape")
    IAMBackend.get_account_summary = _get_account_summary  # type: ignore[method-assign]
    IAMBackend.list_virtual_mfa_devices = _list_virtual_mfa_devices  # type: ignore[method-assign]
    IamResponse.generate_credential_report = _generate_credential_report  # type: ignore[method-assign]
    IamResponse.get_credential_report = _get_credential_report  # type: ignore[method-assign]
    IamResponse.list_organizations_features = _list_organizations_features  # type: ignore[attr-defined]
    IamResponse.get_account_summary = _get_account_summary_response  # type: ignore[method-assign]
    IamResponse.call_action = _call_action  # type: ignore[method-assign]
    for action, handler in (
        ("GetUser", _get_user),
        ("GetLoginProfile", _get_login_profile),
        ("ListAccessKeys", _list_access_keys),
        ("GetAccessKeyLastUsed", _get_access_key_last_used),
        ("ListSigningCertificates", _list_signing_certificates),
        ("ListMFADevices", _list_mfa_devices),
    ):
        setattr(IamResponse, xform_name(action), _root_only(action, handler))
    # The audit task policy does not allow the credential report or the virtual MFA list.
    for action in ("GetCredentialReport", "GenerateCredentialReport", "ListVirtualMFADevices"):
        setattr(IamResponse, xform_name(action), _deny_in_root_session(action))
    CloudTrailResponse.lookup_events = _lookup_events  # type: ignore[attr-defined]
    TokenResponse.assume_root = _assume_root  # type: ignore[attr-defined]
    AccountResponse.get_alternate_contact = _get_alternate_contact  # type: ignore[method-assign]
    STSBackend.assume_role = _assume_role  # type: ignore[method-assign]
    _install_trail_views()
    _install_proof_of_sight()
    _installed = True


def _install_proof_of_sight() -> None:
    Rule.send_to_targets = _send_to_targets  # type: ignore[method-assign]
    TokenResponse.get_caller_identity = _get_caller_identity  # type: ignore[method-assign]


# -- proof of sight: EventBridge rule states, the canary -------------------------------------
#
# moto 5.2.5 delivers every event to every rule whatever its state, forwards an event to another bus as a new event
# (new id, the forwarding account and region), and drops `account` from the event an SQS
# target receives. AWS does none of these: the functions below make moto do what AWS does.

_original_send_to_targets = Rule.send_to_targets
_original_get_caller_identity = TokenResponse.get_caller_identity
CLOUDTRAIL_DETAIL_TYPES = ("AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail")


def is_read_only_cloudtrail_event(event: dict[str, Any]) -> bool:
    """A read-only management event delivered through CloudTrail (EventBridge User Guide,
    "Receiving read-only management events from AWS services")."""
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    return (
        str(event.get("source", "")).startswith("aws.")
        and event.get("detail-type") in CLOUDTRAIL_DETAIL_TYPES
        and detail.get("readOnly") is True
    )


def rule_receives(rule: Any, event: dict[str, Any]) -> bool:
    """A DISABLED rule matches nothing; an ENABLED one everything but read-only CloudTrail
    management events; ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS everything."""
    if rule.state not in ("ENABLED", ENABLED_WITH_READ_ONLY):
        return False
    if rule.state == "ENABLED" and is_read_only_cloudtrail_event(event):
        return False
    return bool(rule.event_pattern.matches_event(event))


def _bus_admits(bus: Any, source_account: str) -> bool:
    """Whether a bus accepts PutEvents from `source_account`: its own account, or a policy
    statement allowing everyone (or the account) with, if any, an aws:PrincipalOrgID
    condition naming the organization the account is in now."""
    import json as _json

    if source_account == bus.account_id:
        return True
    policy = bus.policy
    document = _json.loads(policy) if isinstance(policy, str) else (policy or {})
    for statement in document.get("Statement", []):
        principal = statement.get("Principal")
        allowed = principal.get("AWS") if isinstance(principal, dict) else principal
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if statement.get("Effect") != "Allow" or not any(p == "*" or str(p).endswith("::*:root") or source_account in str(p) for p in allowed):
            continue
        org_id = ((statement.get("Condition") or {}).get("StringEquals") or {}).get("aws:PrincipalOrgID")
        if org_id is None or org_id == _organization_id(source_account):
            return True
    return False


def _organization_id(account_id: str) -> str | None:
    management = _management_of(account_id)
    if management is None:
        return None
    for backend in organizations_backends[management].values():
        if backend.org is not None:
            return str(backend.org.id)
    return None


def route_event(account_id: str, region: str, bus_name: str, event: dict[str, Any]) -> None:
    """Match `event` against the rules of a bus and deliver it to their targets as AWS does."""
    from moto.events.models import events_backends

    backend = events_backends[account_id][region]
    bus = backend.event_buses.get(bus_name)
    if bus is None:
        return
    for rule in list(bus.rules.values()):
        if rule_receives(rule, event):
            _deliver_to_targets(rule, event)


def _deliver_to_targets(rule: Any, event: dict[str, Any]) -> None:
    import json as _json

    from moto.events.models import events_backends
    from moto.sqs import sqs_backends
    from moto.utilities.arns import parse_arn

    for target in rule.targets:
        arn = parse_arn(target["Arn"])
        if arn.service == "events" and arn.resource_type == "event-bus":
            # The same event, with its id, account, region and time, reaches the other bus.
            target_bus = events_backends[arn.account][arn.region].event_buses.get(arn.resource_id)
            if target_bus is not None and _bus_admits(target_bus, rule.account_id):
                route_event(arn.account, arn.region, arn.resource_id, event)
        elif arn.service == "sqs" and not target.get("InputTransformer") and not target.get("Input") and not target.get("InputPath"):
            sqs_backends[arn.account][arn.region].send_message(queue_name=arn.resource_id, message_body=_json.dumps(event))
        else:
            single = copy.copy(rule)
            single.targets = [target]
            _original_send_to_targets(single, {**event, "ingestion-time": event.get("time")})


def _send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
    """Events moto itself puts (PutEvents over the API): rule state first, as AWS does."""
    event = {k: v for k, v in dict(original_event).items() if k != "ingestion-time"}
    if isinstance(event.get("time"), (int, float)):
        event["time"] = datetime.fromtimestamp(float(event["time"]), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if rule_receives(self, event):
        _deliver_to_targets(self, event)


# Called with (endpoint "host:port", record) for every GetCallerIdentity the sandbox answers.
caller_identity_hooks: dict[str, Any] = {}


def _credential_scope_region(headers: Any, default: str) -> str:
    """The region a SigV4 request is signed for (Credential=AKID/date/REGION/service/...)."""
    auth = str(headers.get("Authorization", ""))
    marker = "Credential="
    if marker in auth:
        parts = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(parts) >= 3 and parts[2]:
            return parts[2]
    return default


def _get_caller_identity(self: TokenResponse) -> Any:
    result = _original_get_caller_identity(self)
    hook = caller_identity_hooks.get(str(self.headers.get("Host", "")))
    if hook is not None:
        access_key = self.get_access_key()
        user_id, arn, account = self.backend.get_caller_identity(access_key, self.region)
        session = self.backend.get_assumed_role_from_access_key(access_key)
        try:
            hook(
                {
                    "user_id": user_id,
                    "arn": arn,
                    "account": account,
                    "access_key_id": access_key,
                    "region": _credential_scope_region(self.headers, self.region),
                    "user_agent": str(self.headers.get("User-Agent", "")),
                    "role_arn": session.role_arn if session is not None else None,
                }
            )
        except Exception:  # the call is answered whatever happens to its record
            logging.getLogger("exporter.sandbox").exception("the canary record of a GetCallerIdentity call failed")
    return result
