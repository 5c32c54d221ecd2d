"""Posture of every account of the default scenario, through the real HTTP path.

aiobotocore -> moto server (extended) -> sweep -> /metrics, compared with what the scenario
file says about each root user. Expectations are computed from the scenario, so a new
scenario account is checked without touching this file.
"""

from __future__ import annotations

from typing import Any

import pytest

from exporter.sandbox import Sandbox, Scenario
from exporter.sandbox.scenario import Account

from .conftest import running_exporter, sample, sandbox_settings


def expected(account: Account) -> dict[str, Any]:
    root = account.root
    kinds = [] if root.mfa == "none" else [root.mfa, *root.extra_mfa]
    mfa = bool(kinds)
    keys_active = sum(k.active for k in root.access_keys)
    keys_inactive = len(root.access_keys) - keys_active
    certs_active = sum(c.active for c in root.signing_certificates)
    certs_inactive = len(root.signing_certificates) - certs_active
    if root.password == "absent" or root.password_report == "false":
        password = "absent"
    elif root.password_report == "true":
        password = "present"
    else:
        password = "unknown"
    present = password != "absent" or bool(root.access_keys) or bool(root.signing_certificates)
    used = [k.last_used for k in root.access_keys if k.last_used]
    return {
        "mfa": mfa,
        "kinds": kinds,
        "hardware": mfa and "virtual" not in kinds,
        "keys": (keys_active, keys_inactive),
        "certs": (certs_active, certs_inactive),
        "password": password,
        "password_last_used": root.password_last_used.timestamp() if root.password_last_used and root.password == "present" else None,
        "key_last_used": max(used).timestamp() if used else None,
        "present": present,
        "controls": {
            "mfa_enabled": mfa or not present,
            "mfa_hardware": (mfa and "virtual" not in kinds) or not present,
            "no_access_keys": not root.access_keys,
            "no_signing_certificates": not root.signing_certificates,
        },
    }


def check_account(families: dict[str, Any], account: Account) -> None:
    want = expected(account)
    aid = account.id
    assert sample(families, "aws_root_mfa_enabled", account_id=aid) == float(want["mfa"]), aid
    assert sample(families, "aws_root_mfa_hardware", account_id=aid) == float(want["hardware"]), aid
    assert sample(families, "aws_root_access_keys", account_id=aid, status="active") == want["keys"][0], aid
    assert sample(families, "aws_root_access_keys", account_id=aid, status="inactive") == want["keys"][1], aid
    assert sample(families, "aws_root_signing_certificates", account_id=aid, status="active") == want["certs"][0], aid
    assert sample(families, "aws_root_signing_certificates", account_id=aid, status="inactive") == want["certs"][1], aid
    for state in ("present", "absent", "unknown"):
        assert sample(families, "aws_root_password_state", account_id=aid, state=state) == float(state == want["password"]), (aid, state)
    assert sample(families, "aws_root_access_key_last_used_timestamp_seconds", account_id=aid) == want["key_last_used"], aid
    assert sample(families, "aws_root_password_last_used_timestamp_seconds", account_id=aid) == want["password_last_used"], aid
    assert sample(families, "aws_root_credentials_present", account_id=aid) == float(want["present"]), aid
    for control, ok in want["controls"].items():
        assert sample(families, "aws_root_control_compliant", account_id=aid, control=control) == float(ok), (aid, control)
    assert sample(families, "aws_root_collector_success", account_id=aid, collector="posture") == 1.0


async def test_every_scenario_account_matches_the_scenario(sandbox: Sandbox, default_scenario: Scenario) -> None:
    settings = sandbox_settings(sandbox)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()

    collected = [a for a in default_scenario.all_accounts if a.status == "ACTIVE" and a.assume_role == "allowed"]
    assert len(collected) >= 12
    for account in collected:
        check_account(families, account)

    # Names and OUs come once, from the info metric.
    for account in default_scenario.all_accounts:
        name = sample(families, "aws_root_account_info", account_id=account.id, account_name=account.name)
        if account.status == "SUSPENDED":
            assert name is None, f"suspended account {account.id} must not be collected"
            continue
        assert name == 1.0, account.id
        ou_name = account.ou.split("/")[-1] if account.ou else "Root"
        assert sample(families, "aws_root_account_info", account_id=account.id, ou_name=ou_name) == 1.0
    assert sample(families, "aws_root_account_info", account_id="123456789012", management="true") == 1.0
    assert sample(families, "aws_root_accounts_skipped", reason="suspended") == 1.0
    assert sample(families, "aws_root_accounts_discovered") == len(default_scenario.all_accounts)

    # The account whose role cannot be assumed fails alone, with its reason, and shows no posture.
    denied = [a.id for a in default_scenario.all_accounts if a.assume_role == "denied"]
    assert denied
    for aid in denied:
        assert sample(families, "aws_root_collector_success", account_id=aid, collector="posture") == 0.0
        assert sample(families, "aws_root_collector_errors_total", account_id=aid, collector="posture", reason="assume_role_failed") == 1.0
        assert sample(families, "aws_root_collector_errors_total", account_id=aid, collector="posture", reason="timeout") == 0.0
        assert sample(families, "aws_root_mfa_enabled", account_id=aid) is None
        assert sample(families, "aws_root_collector_last_success_timestamp_seconds", account_id=aid, collector="posture") is None

    features = default_scenario.organization.root_access_features or []
    for feature in ("RootCredentialsManagement", "RootSessions"):
        assert sample(families, "aws_root_organization_feature_enabled", feature=feature) == float(feature in features)
    assert sample(families, "aws_root_sweeps_total", sweep="posture") == 1.0
    assert sample(families, "aws_root_api_requests_total", operation="iam:GetAccountSummary") == len(collected)


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
        assert sample(before, "aws_root_mfa_enabled", account_id="210000000001") == 1.0
        root = sandbox.root("210000000001")
        root.mfa_devices.clear()
        root.access_keys.append(RootKey("AKIA210000000001RK09"))
        sweeper_done = exporter.state.sweeps
        await exporter.exporter.sweeper.sweep()
        assert exporter.state.sweeps == sweeper_done + 1
        after = await exporter.metrics()
    assert sample(after, "aws_root_mfa_enabled", account_id="210000000001") == 0.0
    assert sample(after, "aws_root_control_compliant", account_id="210000000001", control="mfa_enabled") == 0.0
    assert sample(after, "aws_root_access_keys", account_id="210000000001", status="active") == 1.0
    assert sample(after, "aws_root_control_compliant", account_id="210000000001", control="no_access_keys") == 0.0


@pytest.mark.parametrize("account_id", ["210000000003", "210000000013"])
async def test_unknown_password_is_never_read_as_absent(sandbox: Sandbox, account_id: str) -> None:
    """`not_supported` in the report means unknown: the root counts as holding credentials."""
    settings = sandbox_settings(sandbox, include_account_ids=[account_id])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert sample(families, "aws_root_password_state", account_id=account_id, state="unknown") == 1.0
    assert sample(families, "aws_root_credentials_present", account_id=account_id) == 1.0
    assert sample(families, "aws_root_control_compliant", account_id=account_id, control="mfa_enabled") == 0.0
