"""Posture of every account of the default scenario, through the real HTTP path.

aiobotocore -> moto server (extended) -> sweep -> /metrics, compared with what the scenario
file says about each root user. Expectations are computed from the scenario, so a new
scenario account is checked without touching this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.posture.collect import CONTROLS
from exporter.sandbox import Sandbox, Scenario
from exporter.sandbox.scenario import Account

from .conftest import running_exporter, sample, sandbox_settings
from .faults.promtool_replay import replay

from .scenario_expect import collected, expected_error, expected_posture, skip_reason


def check_account(families: dict[str, Any], account: Account, assume_root: bool = False) -> None:
    want = expected_posture(account, assume_root)
    aid = account.id
    # MFA itself shows through the controls below (compliant = MFA or no credential at all)
    # and, for a root read through sts:AssumeRoot, through its devices by kind.
    for kind in ("virtual", "u2f", "hardware"):
        devices = None if want["devices"] is None else float(want["devices"][kind])
        assert sample(families, "aws_root_mfa_devices", account_id=aid, device_kind=kind) == devices, (aid, kind)
    assert sample(families, "aws_root_access_keys", account_id=aid, status="active") == want["keys"][0], aid
    assert sample(families, "aws_root_access_keys", account_id=aid, status="inactive") == want["keys"][1], aid
    assert sample(families, "aws_root_signing_certificates", account_id=aid, status="active") == want["certs"][0], aid
    assert sample(families, "aws_root_signing_certificates", account_id=aid, status="inactive") == want["certs"][1], aid
    # Only the current state has a series (series budget).
    for state in ("present", "absent", "unknown"):
        assert sample(families, "aws_root_password_state", account_id=aid, state=state) == (1.0 if state == want["password"] else None), (aid, state)
    assert sample(families, "aws_root_access_key_last_used_timestamp_seconds", account_id=aid) == want["key_last_used"], aid
    assert sample(families, "aws_root_password_last_used_timestamp_seconds", account_id=aid) == want["password_last_used"], aid
    assert sample(families, "aws_root_credentials_present", account_id=aid) == float(want["present"]), aid
    for control in CONTROLS:
        ok = want["controls"].get(control)
        assert sample(families, "aws_root_control_compliant", account_id=aid, control=control) == (None if ok is None else float(ok)), (aid, control)
    assert sample(families, "aws_root_exporter_collector_success", account_id=aid, collector="posture") == 1.0


async def test_every_scenario_account_matches_the_scenario(sandbox: Sandbox, default_scenario: Scenario) -> None:
    settings = sandbox_settings(sandbox)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()

    healthy = [a for a in default_scenario.all_accounts if collected(a) and expected_error(a) is None]
    assert len(healthy) >= 16
    for account in healthy:
        check_account(families, account)

    # Names, OUs and how each account joined come once, from the info metric.
    for account in default_scenario.all_accounts:
        name = sample(families, "aws_root_account_info", account_id=account.id, account_name=account.name)
        if not collected(account):
            assert name is None, f"{account.state} account {account.id} must not be collected"
            assert sample(families, "aws_root_control_compliant", account_id=account.id, control="mfa_enabled") is None
            continue
        assert name == 1.0, account.id
        ou_name = account.ou.split("/")[-1] if account.ou else "Root"
        assert sample(families, "aws_root_account_info", account_id=account.id, ou_name=ou_name, joined_method=account.joined_method) == 1.0
    assert sample(families, "aws_root_account_info", account_id="123456789012", management="true") == 1.0
    for reason in ("suspended", "pending_closure", "closed"):
        want = sum(1 for a in default_scenario.all_accounts if skip_reason(a) == reason)
        assert want >= 1, reason
        assert sample(families, "aws_root_accounts_skipped", reason=reason) == want, reason
    assert sample(families, "aws_root_accounts_discovered") == len(default_scenario.all_accounts)

    # Accounts that cannot be read (role denied, one IAM operation throttled) fail alone, with
    # their reason, and show no posture.
    failing = {a.id: expected_error(a) for a in default_scenario.all_accounts if collected(a) and expected_error(a)}
    assert set(failing.values()) >= {"assume_role_failed", "access_denied"}
    for aid, reason in failing.items():
        assert sample(families, "aws_root_exporter_collector_success", account_id=aid, collector="posture") == 0.0
        assert sample(families, "aws_root_exporter_collector_errors_total", account_id=aid, collector="posture", reason=reason) == 1.0
        # An error series appears with its first error: none for a reason that never happened.
        assert sample(families, "aws_root_exporter_collector_errors_total", account_id=aid, collector="posture", reason="timeout") is None
        for control in ("mfa_enabled", "mfa_hardware", "no_access_keys", "no_signing_certificates"):
            assert sample(families, "aws_root_control_compliant", account_id=aid, control=control) is None, (aid, control)
        assert sample(families, "aws_root_credentials_present", account_id=aid) is None
        assert sample(families, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=aid, collector="posture") is None

    features = default_scenario.organization.root_access_features or []
    for feature in ("RootCredentialsManagement", "RootSessions"):
        assert sample(families, "aws_root_organization_feature_enabled", feature=feature) == float(feature in features)
    assert sample(families, "aws_root_exporter_sweeps_total") == 1.0
    reached = [a for a in default_scenario.all_accounts if collected(a) and expected_error(a) != "assume_role_failed"]
    assert sample(families, "aws_root_exporter_aws_requests_total", operation="iam:GetAccountSummary") == len(reached)


async def test_a_changed_root_shows_after_the_next_sweep(sandbox: Sandbox) -> None:
    """Posture follows the account: MFA turned off and a key created show up on the next sweep.

    The account summary is live while the credential report is cached for hours; a key the
    cached report does not know yet still counts (as active), never as "no key".
    """
    from exporter.sandbox.moto_ext import RootKey

    settings = sandbox_settings(sandbox, posture_interval_seconds=10)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        before = await exporter.metrics()
        # The root holds a password: the control passes through its MFA device alone.
        assert sample(before, "aws_root_credentials_present", account_id="210000000001") == 1.0
        assert sample(before, "aws_root_control_compliant", account_id="210000000001", control="mfa_enabled") == 1.0
        root = sandbox.root("210000000001")
        root.mfa_devices.clear()
        root.access_keys.append(RootKey("AKIA210000000001RK09"))
        sweeper_done = exporter.state.sweeps
        await exporter.exporter.sweeper.sweep()
        assert exporter.state.sweeps == sweeper_done + 1
        after = await exporter.metrics()
    assert sample(after, "aws_root_credentials_present", account_id="210000000001") == 1.0
    assert sample(after, "aws_root_control_compliant", account_id="210000000001", control="mfa_enabled") == 0.0
    assert sample(after, "aws_root_control_compliant", account_id="210000000001", control="mfa_hardware") == 0.0
    assert sample(after, "aws_root_access_keys", account_id="210000000001", status="active") == 1.0
    assert sample(after, "aws_root_control_compliant", account_id="210000000001", control="no_access_keys") == 0.0


async def test_unknown_password_is_never_read_as_absent(sandbox: Sandbox) -> None:
    """Without AccountPasswordPresent the report decides, and `not_supported` means unknown:
    the root counts as holding credentials, exactly as before the summary key was read."""
    account_id = "210000000003"  # a password, no MFA, report not_supported
    sandbox.root(account_id).summary_password_key = False
    settings = sandbox_settings(sandbox, include_account_ids=[account_id])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert sample(families, "aws_root_password_state", account_id=account_id, state="unknown") == 1.0
    assert sample(families, "aws_root_credentials_present", account_id=account_id) == 1.0
    assert sample(families, "aws_root_control_compliant", account_id=account_id, control="mfa_enabled") == 0.0


@pytest.mark.parametrize("assume_root", [False, True], ids=["role", "assume_root"])
async def test_credential_less_root_passes_mfa_controls(sandbox: Sandbox, assume_root: bool, tmp_path: Path) -> None:
    """A member root created without credentials (report not_supported, AccountPasswordPresent 0)
    passes both MFA controls, as AWS Config's NOT_APPLICABLE; a password without MFA still fails."""
    bare, with_password = "210000000014", "210000000003"
    assert sandbox.root(bare).password is False and sandbox.root(bare).password_report == "not_supported"
    settings = sandbox_settings(sandbox, include_account_ids=[bare, with_password], assume_root_audit=assume_root)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert exporter.state.api.requests["iam:GetLoginProfile"] == 0
    assert sample(families, "aws_root_password_state", account_id=bare, state="absent") == 1.0
    assert sample(families, "aws_root_credentials_present", account_id=bare) == 0.0
    for control in ("mfa_enabled", "mfa_hardware"):
        assert sample(families, "aws_root_control_compliant", account_id=bare, control=control) == 1.0, control
        assert sample(families, "aws_root_control_compliant", account_id=with_password, control=control) == 0.0, control
    assert sample(families, "aws_root_password_state", account_id=with_password, state="present") == 1.0
    # The shipped rules on this exposition: MFA alerts for the root with a password only.
    replay(families, [
        {"eval_time": "20m", "alertname": "AwsRootMfaDisabled", "exp_alerts": [{
            "exp_labels": {"severity": "warning", "account_id": with_password, "account_name": "dev-sandbox", "ou_name": "Dev"},
            "exp_annotations": {
                "summary": "The root user has no MFA device.",
                "description": f"The root user of account {with_password} (dev-sandbox) holds credentials but has no MFA device.",
                "runbook_url": "https://github.com/aws-root-exporter/aws-root-exporter/blob/main/alerts/runbook.md#awsrootmfadisabled",
            },
        }]},
        {"eval_time": "20m", "alertname": "AwsRootMfaNotHardware", "exp_alerts": []},
    ], tmp_path)
