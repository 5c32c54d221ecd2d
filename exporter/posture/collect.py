"""Root credential posture of one account: what is collected, how, and which controls pass.

Two ways to read it:
- `credential_report` (default): with a role in the account (or the exporter's own
  credentials), `GetAccountSummary` (live flags), the IAM credential report (details, up to
  `credential_report_max_age_seconds` old) and `ListVirtualMFADevices` (CIS 1.6 rule).
- `assume_root`: `sts:AssumeRoot` with the `IAMAuditRootUserCredentials` task policy, which
  reads the root user directly: whether a password exists at all, each access key and
  certificate, and the exact MFA device kinds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from exporter.aws.client import Aws, AwsError, Credentials
from exporter.posture.credential_report import RootReportRow, parse_root_row
from exporter.posture.recovery import RECOVERY_CONTROLS, Recovery

# The root credential controls, always evaluated, then the recovery controls, evaluated
# only where their input is known (exporter/posture/recovery.py).
CREDENTIAL_CONTROLS = ("mfa_enabled", "mfa_hardware", "no_access_keys", "no_signing_certificates")
CONTROLS = CREDENTIAL_CONTROLS + RECOVERY_CONTROLS
MFA_KINDS = ("virtual", "u2f", "hardware")
# Why a control passes that failed as measured (RootPosture.waivers): the root is fenced by
# an SCP and the setting mfa_hardware_waived_when_fenced is on.
MFA_HARDWARE_WAIVER = "scp_fence"


@dataclass(frozen=True, slots=True)
class RootPosture:
    account_id: str
    source: str  # "credential_report" or "assume_root"
    mfa_enabled: bool
    mfa_hardware: bool
    access_keys_active: int
    access_keys_inactive: int
    certificates_active: int
    certificates_inactive: int
    password: str  # "present", "absent", "unknown"
    access_key_last_used: datetime | None = None
    password_last_used: datetime | None = None
    report_generated: datetime | None = None
    mfa_devices: dict[str, int] | None = None
    collected_at: float = field(default_factory=time.time)
    # Control -> reason: the control passes whatever was measured. Set by the sweep, which
    # knows the settings and the SCP fence; never by the collection.
    waivers: Mapping[str, str] = field(default_factory=dict)
    # Set by the sweep after the credentials were read (it knows the account and settings).
    recovery: Recovery | None = None
    # The account's AWS partition (aws, aws-us-gov, aws-cn): see `mfa_applies`.
    partition: str = "aws"

    @property
    def credentials_present(self) -> bool:
        # "unknown" counts as present: an unknown password must never look like a safe root.
        return (
            self.password != "absent"
            or self.access_keys_active + self.access_keys_inactive > 0
            or self.certificates_active + self.certificates_inactive > 0
        )

    @property
    def mfa_applies(self) -> bool:
        """Whether the MFA controls apply: MFA guards the console sign-in (AWS Config,
        root-account-mfa-enabled: "requires multi-factor authentication for console sign-in").
        A root without any credential cannot sign in. Nor can a GovCloud (US) root: "root user
        console access is not supported, programmatic access keys are supported" (AWS GovCloud
        (US) User Guide, "AWS GovCloud (US) account root user"), and AWS Config offers neither
        root MFA rule in the GovCloud regions. Its access key still fails `no_access_keys`."""
        return self.credentials_present and self.partition != "aws-us-gov"

    def controls(self) -> dict[str, bool]:
        """Pass/fail per evaluated control, in CONTROLS order. A root without any credential
        cannot sign in, so it passes MFA; a recovery control not evaluated is absent; a waived
        control passes (`waivers`)."""
        measured = {
            "mfa_enabled": self.mfa_enabled or not self.mfa_applies,
            "mfa_hardware": self.mfa_hardware or not self.mfa_applies,
            "no_access_keys": self.access_keys_active + self.access_keys_inactive == 0,
            "no_signing_certificates": self.certificates_active + self.certificates_inactive == 0,
            **(self.recovery.controls() if self.recovery is not None else {}),
        }
        return {control: ok or control in self.waivers for control, ok in measured.items()}

    def waived(self) -> dict[str, str]:
        """The controls that pass only by a waiver, with its reason."""
        measured = replace(self, waivers={}).controls()
        return {control: reason for control, reason in self.waivers.items() if not measured.get(control, True)}

    def findings(self) -> list[str]:
        return [control for control, ok in self.controls().items() if not ok]


def mfa_kind(serial: str) -> str:
    """Kind of a root MFA device from its serial: `...:mfa/...` virtual, `...:u2f/...` FIDO, else hardware TOTP."""
    if serial.startswith("arn:"):
        resource = serial.split(":", 5)[-1]
        if resource.startswith("mfa/") or resource == "mfa":
            return "virtual"
        if resource.startswith("u2f/"):
            return "u2f"
    return "hardware"


def summary_password(summary: dict[str, Any]) -> str | None:
    """`present` / `absent` from GetAccountSummary's AccountPasswordPresent; None when the key is missing.

    The key is in the IAM API reference and botocore's `summaryKeyType`; it is the only
    read-only source that tells a credential-less root (the normal state of a member created
    in the organization) from one whose report says `not_supported`.
    """
    if "AccountPasswordPresent" not in summary:
        return None
    return "present" if int(summary["AccountPasswordPresent"]) == 1 else "absent"


def partition_password(password: str, partition: str) -> str:
    """`unknown` reads `absent` for a GovCloud (US) root: it has no console password at all.

    AWS GovCloud (US) User Guide, "AWS GovCloud (US) account root user": "you cannot sign-in
    to the AWS Management Console for AWS GovCloud (US) using your account email address and
    password ... root user console access is not supported, programmatic access keys are
    supported" (also re:Post "manage-govcloud-root-key"). There the report's `not_supported`
    is not an unknown password, and an assumed one would fail every key-less GovCloud root's
    MFA controls. AWS's own answer (AccountPasswordPresent, GetLoginProfile) is kept as given."""
    return "absent" if partition == "aws-us-gov" and password == "unknown" else password


def combine(account_id: str, summary: dict[str, Any], row: RootReportRow, generated: datetime | None, root_virtual_mfa: bool, partition: str = "aws") -> RootPosture:
    """Merge the live account summary with the (possibly hours old) credential report.

    The summary is current; the report may predate a change. When they disagree about keys,
    certificates or the password existing, the summary wins, and a key the report does not
    know yet is counted as active: unknown never reads as safe. Without AccountPasswordPresent
    the report's password_enabled decides (`not_supported` is unknown).
    """
    keys_present = int(summary.get("AccountAccessKeysPresent", 0)) == 1
    certs_present = int(summary.get("AccountSigningCertificatesPresent", 0)) == 1
    mfa_enabled = int(summary.get("AccountMFAEnabled", 0)) == 1
    keys_active, keys_inactive = row.access_keys_active, row.access_keys_inactive
    if not keys_present:
        keys_active = keys_inactive = 0
    elif keys_active + keys_inactive == 0:
        keys_active = 1
    certs_active, certs_inactive = row.certificates_active, row.certificates_inactive
    if not certs_present:
        certs_active = certs_inactive = 0
    elif certs_active + certs_inactive == 0:
        certs_active = 1
    return RootPosture(
        account_id=account_id,
        source="credential_report",
        mfa_enabled=mfa_enabled,
        mfa_hardware=mfa_enabled and not root_virtual_mfa,
        access_keys_active=keys_active,
        access_keys_inactive=keys_inactive,
        certificates_active=certs_active,
        certificates_inactive=certs_inactive,
        password=partition_password(summary_password(summary) or row.password, partition),
        access_key_last_used=row.access_key_last_used if keys_present else None,
        password_last_used=row.password_last_used,
        report_generated=generated,
        partition=partition,
    )


async def credential_report(aws: Aws, iam: Any, max_age: float, wait: float) -> tuple[bytes, datetime]:
    """A credential report no older than max_age: reuse the cached one, else generate and wait.

    AWS regenerates a report at most every 4 hours and answers `ReportInProgress` while it
    works; waiting backs off from 0.5 s to 8 s within `wait` seconds.
    """
    try:
        response = await aws.call(iam, "GetCredentialReport")
        generated = _aware(response["GeneratedTime"])
        if time.time() - generated.timestamp() <= max_age:
            return response["Content"], generated
    except AwsError as exc:
        if exc.code not in ("ReportNotPresent", "ReportExpired", "ReportInProgress"):
            raise
    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        state = (await aws.call(iam, "GenerateCredentialReport")).get("State")
        if state == "COMPLETE":
            try:
                response = await aws.call(iam, "GetCredentialReport")
                return response["Content"], _aware(response["GeneratedTime"])
            except AwsError as exc:
                if exc.code != "ReportInProgress":
                    raise
        if time.monotonic() + delay > deadline:
            raise AwsError("timeout", "iam:GenerateCredentialReport", "ReportInProgress", f"report not ready after {wait:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 8.0)


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


async def _all(*coroutines: Any) -> list[Any]:
    """Run concurrently; on the first failure cancel the others and raise that failure itself."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def collect_with_report(
    aws: Aws, account_id: str, credentials: Credentials | None, max_age: float, wait: float, partition: str = "aws"
) -> RootPosture:
    async with aws.member_client("iam", credentials) as iam:
        # GetAccountSummary first: it tests the credentials, so an account that cannot be read
        # (denied, throttled, expired credentials) costs one failing call, not three. The two
        # other reads are independent and sent together: two round trips instead of three.
        summary = (await aws.call(iam, "GetAccountSummary"))["SummaryMap"]
        (content, generated), devices = await _all(
            credential_report(aws, iam, max_age, wait),
            aws.paginate(iam, "ListVirtualMFADevices", "VirtualMFADevices", AssignmentStatus="Assigned"),
        )
        row = parse_root_row(content)
    # CIS 1.6: match the assigned user's ARN, not the serial (virtual device names vary).
    root_virtual = any(str(d.get("User", {}).get("Arn", "")).endswith(":root") for d in devices)
    return combine(account_id, summary, row, generated, root_virtual, partition)


async def _login_profile(aws: Aws, iam: Any) -> str:
    """Whether root has a password, from GetLoginProfile (only NoSuchEntity means none)."""
    try:
        await aws.call(iam, "GetLoginProfile")
    except AwsError as exc:
        if exc.code != "NoSuchEntity":
            raise
        return "absent"
    return "present"


async def collect_with_assume_root(aws: Aws, account_id: str, partition: str) -> RootPosture:
    credentials = await aws.assume_root(account_id, partition)
    async with aws.member_client("iam", credentials) as iam:
        summary = (await aws.call(iam, "GetAccountSummary"))["SummaryMap"]
        password = summary_password(summary) or await _login_profile(aws, iam)
        user = (await aws.call(iam, "GetUser")).get("User", {})
        keys = await aws.paginate(iam, "ListAccessKeys", "AccessKeyMetadata")
        last_used: list[datetime] = []
        for key in keys:
            used = (await aws.call(iam, "GetAccessKeyLastUsed", AccessKeyId=key["AccessKeyId"])).get("AccessKeyLastUsed", {})
            if used.get("LastUsedDate"):
                last_used.append(_aware(used["LastUsedDate"]))
        certificates = await aws.paginate(iam, "ListSigningCertificates", "Certificates")
        devices = await aws.paginate(iam, "ListMFADevices", "MFADevices")
    kinds = {kind: 0 for kind in MFA_KINDS}
    for device in devices:
        kinds[mfa_kind(str(device.get("SerialNumber", "")))] += 1
    mfa_enabled = bool(devices) or int(summary.get("AccountMFAEnabled", 0)) == 1
    return RootPosture(
        account_id=account_id,
        source="assume_root",
        mfa_enabled=mfa_enabled,
        # CIS 1.6 counts only non-virtual devices; with several devices, one virtual one
        # is enough for an attacker to use, so hardware means "no virtual device at all".
        mfa_hardware=mfa_enabled and kinds["virtual"] == 0,
        access_keys_active=sum(1 for k in keys if k.get("Status") == "Active"),
        access_keys_inactive=sum(1 for k in keys if k.get("Status") != "Active"),
        certificates_active=sum(1 for c in certificates if c.get("Status") == "Active"),
        certificates_inactive=sum(1 for c in certificates if c.get("Status") != "Active"),
        password=password,
        access_key_last_used=max(last_used) if last_used else None,
        password_last_used=_aware(user["PasswordLastUsed"]) if user.get("PasswordLastUsed") else None,
        mfa_devices=kinds,
        partition=partition,
    )
