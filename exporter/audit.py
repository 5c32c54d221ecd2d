"""`aws-root-exporter audit`: one posture pass, a table or JSON, and an exit status for CI and cron.

Exit status: 0 when every account passes every control, 1 when any account has a finding
or could not be collected (an account that cannot be read is not known to be safe).
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from exporter.scp.check import SCP, fence_report
from exporter.config.settings import Settings
from exporter.engine.state import ExporterState, Snapshot
from exporter.engine.sweep import ORG_FEATURES, POSTURE, PostureSweeper
from exporter.posture.controls import control_results
from exporter.posture.controls import findings as control_findings
from exporter.posture.collect import RootPosture
from exporter.posture.organization_features import TRUSTED_ACCESS_DISABLED


async def run_audit(settings: Settings) -> Snapshot:
    from exporter.app import make_aws

    state = ExporterState(settings.posture_interval_seconds)
    async with make_aws(settings, state) as aws:
        return await PostureSweeper(aws, settings, state).sweep()


def audit_report(snapshot: Snapshot) -> dict[str, Any]:
    accounts = []
    for account in snapshot.accounts:
        status = snapshot.status.get((account.account_id, POSTURE))
        posture = snapshot.posture.get(account.account_id)
        entry: dict[str, Any] = {
            "account_id": account.account_id,
            "account_name": account.name,
            "ou_name": account.ou_name,
            # OU names from below the organization root down to the account ("Root" at the top).
            "ou_path": "/".join(account.ou_names) if account.ou_names else account.ou_name,
            "management": account.management,
            # The SCP root fence is shown, not graded: it does not change status or exit status.
            "scp_fence": fence_report(snapshot.scp, account.account_id),
        }
        if status is None or not status.success or posture is None:
            entry.update(
                status="error",
                error=status.reason if status else "not_collected",
                # AWS's error code and message, as logged (no credential ever appears in it).
                error_message=status.message if status else None,
                findings=[],
            )
        else:
            findings = control_findings(posture)
            entry.update(
                status="findings" if findings else "ok",
                # Each failed control with its Security Hub, Config and CIS ids.
                findings=findings,
                controls=control_results(posture),
                posture={
                    "source": posture.source,
                    "mfa_enabled": posture.mfa_enabled,
                    "mfa_hardware": posture.mfa_hardware,
                    "mfa_devices": posture.mfa_devices,
                    "password": posture.password,
                    "password_last_used": posture.password_last_used.isoformat() if posture.password_last_used else None,
                    "access_keys_active": posture.access_keys_active,
                    "access_keys_inactive": posture.access_keys_inactive,
                    "access_key_last_used": posture.access_key_last_used.isoformat() if posture.access_key_last_used else None,
                    "signing_certificates_active": posture.certificates_active,
                    "signing_certificates_inactive": posture.certificates_inactive,
                    "credentials_present": posture.credentials_present,
                    "credential_report_generated": posture.report_generated.isoformat() if posture.report_generated else None,
                },
                recovery=_recovery(posture),
            )
        accounts.append(entry)
    features = snapshot.organization_features
    return {
        "discovery_error": snapshot.discovery_error,
        "accounts": accounts,
        "skipped_accounts": [
            {"account_id": s.account_id, "account_name": s.name, "reason": s.reason} for s in snapshot.skipped_accounts
        ],
        "organization_features": dict(features.enabled) if features is not None and features.enabled is not None else None,
        # Why IAM did not report the features although it answered (`trusted_access_disabled`).
        "organization_features_unknown_reason": features.unknown_reason if features is not None else None,
        "organization_features_unknown_message": features.message if features is not None else None,
        "organization_features_error": _features_error(snapshot),
        "scp": _scp_summary(snapshot),
        "summary": {
            "accounts": len(accounts),
            "ok": sum(1 for a in accounts if a["status"] == "ok"),
            "with_findings": sum(1 for a in accounts if a["status"] == "findings"),
            "errors": sum(1 for a in accounts if a["status"] == "error"),
            "skipped": dict(snapshot.skipped),
        },
    }


def _recovery(posture: RootPosture) -> dict[str, Any]:
    """Who can recover the root: the root email's domain (never the address) and the security contact."""
    recovery = posture.recovery
    contact = recovery.security_contact if recovery is not None else None
    return {
        "root_email_domain": recovery.email_domain if recovery is not None else None,
        # null: not evaluated (no allowed_root_email_domains, or not in organization mode).
        "root_email_domain_allowed": recovery.email_domain_allowed if recovery is not None else None,
        # null: not read (security_contact_check off, roles mode) or unknown (see the reason).
        "security_contact": contact.present if contact is not None else None,
        "security_contact_unknown_reason": contact.reason if contact is not None else None,
        "security_contact_unknown_message": contact.message if contact is not None else None,
    }


def _features_error(snapshot: Snapshot) -> str | None:
    """Why the centralized root access features could not be read; None when read or not applicable."""
    status = next((s for key, s in snapshot.status.items() if key[1] == ORG_FEATURES), None)
    if status is None or status.success:
        return None
    return f"{status.reason}: {status.message}" if status.message else status.reason


def _scp_summary(snapshot: Snapshot) -> dict[str, Any] | None:
    """The organization-level SCP check: None when it did not run (setting or account mode)."""
    status = next((s for key, s in snapshot.status.items() if key[1] == SCP), None)
    if status is None and snapshot.scp is None:
        return None
    result = snapshot.scp
    return {
        "status": "ok" if status is not None and status.success else "error",
        "error": status.reason if status is not None and not status.success else None,
        "policy_type_enabled": result.scp_enabled if result is not None else None,
        "policies": dict(result.policy_names) if result is not None else {},
        "unreadable_policies": dict(result.unreadable) if result is not None else {},
    }


def exit_status(report: dict[str, Any]) -> int:
    if report["discovery_error"] or not report["accounts"]:
        return 1
    # A control that could not be read is not known to pass.
    if _contact_unknown(report):
        return 1
    return 0 if all(a["status"] == "ok" for a in report["accounts"]) else 1


def _contact_unknown(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in report["accounts"] if (a.get("recovery") or {}).get("security_contact_unknown_reason")]


def print_table(report: dict[str, Any], out: TextIO) -> None:
    rows = [("ACCOUNT", "NAME", "OU", "MFA", "KEYS", "CERTS", "PASSWORD", "FENCE", "STATUS")]
    for a in report["accounts"]:
        p = a.get("posture")
        fence = _fence_cell(a.get("scp_fence"))
        if p is None:
            rows.append((a["account_id"], a["account_name"], a["ou_path"], "?", "?", "?", "?", fence, f"ERROR ({a['error']})"))
            continue
        mfa = "hardware" if p["mfa_hardware"] else ("virtual" if p["mfa_enabled"] else "off")
        keys = f"{p['access_keys_active']}/{p['access_keys_inactive']}"
        certs = f"{p['signing_certificates_active']}/{p['signing_certificates_inactive']}"
        status = "ok" if not a["findings"] else "FAIL: " + ", ".join(_finding_cell(f) for f in a["findings"])
        waived = [f"{c['control']} ({c['waived']})" for c in a.get("controls", []) if c.get("waived")]
        if waived:
            status += "; waived: " + ", ".join(waived)
        rows.append((a["account_id"], a["account_name"], a["ou_path"], mfa, keys, certs, p["password"], fence, status))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        out.write("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[-1]) + "\n")
    s = report["summary"]
    out.write(
        f"\n{s['accounts']} accounts: {s['ok']} ok, {s['with_findings']} with findings, {s['errors']} not collected"
        f" (keys and certificates shown as active/inactive)\n"
    )
    for a in report["accounts"]:
        if a["status"] == "error" and a.get("error_message"):
            out.write(f"  {a['account_id']} {a['account_name']}: {a['error_message']}\n")
    unknown = _contact_unknown(report)
    if unknown:
        reasons = sorted({a["recovery"]["security_contact_unknown_reason"] for a in unknown})
        out.write(f"Security alternate contact unknown ({', '.join(reasons)}) in {len(unknown)} accounts: security_contact_present not evaluated there")
        if "trusted_access_disabled" in reasons:
            out.write("; trusted access for AWS Account Management is off in AWS Organizations (aws organizations enable-aws-service-access --service-principal account.amazonaws.com)")
        out.write("\n")
    skipped = [f"{count} {reason.replace('_', ' ')}" for reason, count in s["skipped"].items() if count]
    if skipped:
        out.write(f"Skipped: {', '.join(skipped)}\n")
        # Named, except the other shards' accounts: those are collected by another replica,
        # and a sharded organization has many.
        for skipped_account in report["skipped_accounts"]:
            if skipped_account["reason"] != "other_shard":
                out.write(f"  {skipped_account['account_id']} {skipped_account['account_name']}: {skipped_account['reason'].replace('_', ' ')}\n")
    if report["discovery_error"]:
        out.write(f"Account discovery FAILED ({report['discovery_error']}): the list above may be incomplete\n")
    elif not report["accounts"]:
        out.write("No account was collected: check the account mode and filters\n")
    features = report["organization_features"]
    if report.get("organization_features_error"):
        # Not "none": unreadable features say nothing about whether they are enabled.
        out.write(f"Centralized root access features: could not be read ({report['organization_features_error']})\n")
    elif report.get("organization_features_unknown_reason") == TRUSTED_ACCESS_DISABLED:
        out.write(
            f"Centralized root access features: unknown ({TRUSTED_ACCESS_DISABLED}): trusted access for IAM is not enabled"
            " in AWS Organizations, so IAM does not report them; enabling root access management in the IAM console turns it on\n"
        )
    elif features is not None:
        enabled = [f for f, on in features.items() if on]
        if enabled:
            out.write(f"Centralized root access features enabled: {', '.join(enabled)}\n")
        else:
            out.write(f"Centralized root access features enabled: none ({' and '.join(features)} are disabled)\n")
    _print_scp_summary(report, out)


def _finding_cell(finding: dict[str, Any]) -> str:
    """A failed control with its Security Hub control id, when it has one: `mfa_hardware (IAM.6)`."""
    security_hub = finding["ids"]["security_hub"]
    return f"{finding['control']} ({security_hub})" if security_hub else finding["control"]


# FENCE column: fenced ("fenced-except" with NotAction exceptions, "fenced-ar" when
# sts:AssumeRoot sessions are exempt), NOT-FENCED, n/a (management account), unknown, "-".
def _fence_cell(fence: dict[str, Any] | None) -> str:
    if fence is None:
        return "-"
    state = fence["state"]
    if state == "fenced":
        cell = "fenced-except" if fence["exceptions"] else "fenced"
        return cell + ("-ar" if fence["assumed_root_exempt"] else "")
    return {"not_fenced": "NOT-FENCED", "not_applicable": "n/a", "unknown": "unknown"}.get(state, state)


def _print_scp_summary(report: dict[str, Any], out: TextIO) -> None:
    scp = report.get("scp")
    if scp is None:
        return
    fences = [a["scp_fence"] for a in report["accounts"] if a.get("scp_fence") and a["scp_fence"]["state"] != "not_applicable"]
    counts = {state: sum(1 for f in fences if f["state"] == state) for state in ("fenced", "not_fenced", "unknown")}
    if scp["status"] != "ok":
        out.write(f"SCP root-fence check FAILED ({scp['error']})" + (": showing the last result\n" if scp["policy_type_enabled"] is not None else "\n"))
    if scp["policy_type_enabled"] is None:
        return
    enabled = "enabled" if scp["policy_type_enabled"] else "NOT enabled (no SCP is enforced)"
    out.write(
        f"SCP root fence: {counts['fenced']} fenced, {counts['not_fenced']} not fenced, {counts['unknown']} unknown"
        f" member accounts; SCP policy type {enabled}\n"
    )
    if any(f["state"] == "fenced" and (f["exceptions"] or f["assumed_root_exempt"]) for f in fences):
        out.write("  (FENCE fenced-except: root keeps the NotAction exceptions; -ar: sts:AssumeRoot sessions exempt)\n")
    if scp["unreadable_policies"]:
        out.write("SCPs that could not be read: " + ", ".join(f"{pid} ({err})" for pid, err in scp["unreadable_policies"].items()) + "\n")


def print_json(report: dict[str, Any], out: TextIO) -> None:
    json.dump(report, out, indent=2, sort_keys=False)
    out.write("\n")
