"""What the exporter must report for a scenario account, derived from the scenario file alone.

Tests compare the exporter's output with these expectations account by account, so a new
scenario account is checked without touching the tests, and no expected output is copied
by hand. The rules restate AWS's behaviour (aws-root-facts.md), not the exporter's code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID, Account, Root

# Organizations states whose accounts are skipped, with the skip reason shown.
SKIPPED = {"SUSPENDED": "suspended", "PENDING_CLOSURE": "pending_closure", "CLOSED": "closed"}
# IAM operations each collection mode calls (GetLoginProfile only without AccountPasswordPresent).
REPORT_OPERATIONS = {"GetAccountSummary", "GetCredentialReport", "GenerateCredentialReport", "ListVirtualMFADevices"}
ASSUME_ROOT_OPERATIONS = {"GetAccountSummary", "GetUser", "ListAccessKeys", "GetAccessKeyLastUsed", "ListSigningCertificates", "ListMFADevices"}
FAULT_REASON = {"throttle": "throttled", "access_denied": "access_denied", "server_error": "error"}


def skip_reason(account: Account) -> str | None:
    return SKIPPED.get(account.state)


def collected(account: Account) -> bool:
    return skip_reason(account) is None


def uses_assume_root(account: Account, assume_root: bool) -> bool:
    # The management account cannot be an AssumeRoot target: it is always read with the report.
    return assume_root and account.id != "123456789012"


def expected_error(account: Account, assume_root: bool = False) -> str | None:
    """The collector error reason the account must show, or None when it must be collected."""
    if not collected(account):
        return None
    direct = uses_assume_root(account, assume_root)
    if not direct and account.assume_role == "denied" and account.id != "123456789012":
        return "assume_role_failed"
    if "throttle_iam" in account.faults:
        return "throttled"
    operations = set(ASSUME_ROOT_OPERATIONS if direct else REPORT_OPERATIONS)
    if direct and not account.root.summary_password_key:
        operations.add("GetLoginProfile")
    if direct and not account.root.access_keys:
        operations.discard("GetAccessKeyLastUsed")
    for fault in account.faults:
        if not isinstance(fault, str) and fault.operation in operations:
            return FAULT_REASON[fault.error]
    if not direct and account.credential_report.malformed:
        return "invalid_response"
    return None


def _report_password(root: Root, partition: str = "aws") -> str:
    seen = {"true": "present", "false": "absent"}.get(root.password_report, "unknown")
    # A GovCloud (US) root has no console password: `not_supported` is no unknown there.
    return "absent" if seen == "unknown" and partition == "aws-us-gov" else seen


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def _counts(items: list[Any]) -> tuple[int, int]:
    active = sum(1 for i in items if i.active)
    return active, len(items) - active


def expected_posture(
    account: Account,
    assume_root: bool = False,
    partition: str = "aws",
    *,
    allowed_domains: tuple[str, ...] = (),
    account_trusted_access: bool = True,
) -> dict[str, Any]:
    """Posture of a collected account as the exporter must show it (organization mode, default
    settings but for `allowed_root_email_domains`; `account_trusted_access` as the scenario's
    organization has it). A control that is not evaluated or unknown is not in `controls`."""
    root = account.root
    kinds = [] if root.mfa == "none" else [root.mfa, *root.extra_mfa]
    mfa = bool(kinds)
    if uses_assume_root(account, assume_root):
        # The root user itself is read: every value is live.
        password = root.password
        keys, certs = _counts(root.access_keys), _counts(root.signing_certificates)
        used = [k.last_used for k in root.access_keys if k.last_used]
        password_last_used = _ts(root.password_last_used) if root.password == "present" else None
        key_last_used = _ts(max(used)) if used else None
        devices: dict[str, int] | None = {kind: kinds.count(kind) for kind in ("virtual", "u2f", "hardware")}
        report_generated = False
    else:
        # The live summary says what exists; the (possibly older) report gives the details.
        seen = account.credential_report.stale_root or root
        password = root.password if root.summary_password_key else _report_password(seen, partition)
        keys = _counts(seen.access_keys) if root.access_keys else (0, 0)
        if root.access_keys and keys == (0, 0):
            keys = (1, 0)
        certs = _counts(seen.signing_certificates) if root.signing_certificates else (0, 0)
        if root.signing_certificates and certs == (0, 0):
            certs = (1, 0)
        password_last_used = None if seen.password_last_used_report else _ts(seen.password_last_used)
        # A 16-column report predates the access-key last-use columns.
        used = [k.last_used for k in seen.access_keys if k.last_used] if account.credential_report.columns > 16 else []
        key_last_used = _ts(max(used)) if used and root.access_keys else None
        devices = None
        report_generated = True
    present = password != "absent" or keys != (0, 0) or certs != (0, 0)
    hardware = mfa and "virtual" not in kinds
    return {
        "mfa": mfa,
        "hardware": hardware,
        "devices": devices,
        "keys": keys,
        "certs": certs,
        "password": password,
        "password_last_used": password_last_used,
        "key_last_used": key_last_used,
        "present": present,
        "report_generated": report_generated,
        "controls": {
            # GovCloud (US) roots cannot sign in to a console: MFA does not apply there.
            "mfa_enabled": mfa or not present or partition == "aws-us-gov",
            "mfa_hardware": hardware or not present or partition == "aws-us-gov",
            "no_access_keys": keys == (0, 0),
            "no_signing_certificates": certs == (0, 0),
            **expected_recovery(account, allowed_domains, account_trusted_access),
        },
    }


def expected_recovery(account: Account, allowed_domains: tuple[str, ...], account_trusted_access: bool) -> dict[str, bool]:
    """The recovery controls: the root email's domain among the allowed ones (exact, any case),
    when some are configured; a security alternate contact, readable for a member only while
    trusted access for AWS Account Management is on (the management account reads its own)."""
    controls: dict[str, bool] = {}
    if allowed_domains:
        domain = account.root_email.rpartition("@")[2].lower()
        controls["root_email_domain_allowed"] = domain in {d.lower() for d in allowed_domains}
    if account_trusted_access or account.id == MANAGEMENT_ACCOUNT_ID:
        controls["security_contact_present"] = account.security_contact
    return controls


def ou_path(account: Account) -> str:
    return account.ou or "Root"
