"""The audit of the default scenario, account by account, against the scenario file; and the
sandbox's own fidelity to AWS's model where the scenario depends on it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import boto3
import botocore.session
import pytest

from exporter.audit import audit_report, run_audit
from exporter.posture.credential_report import parse_root_row
from exporter.sandbox import Sandbox, Scenario

from .conftest import sandbox_settings
from .scenario_expect import collected, expected_error, expected_posture, ou_path, skip_reason


def _iso(value: float | None) -> str | None:
    return datetime.fromtimestamp(value, timezone.utc).isoformat() if value is not None else None


@pytest.mark.parametrize("assume_root", [False, True], ids=["role", "assume_root"])
async def test_audit_of_the_default_scenario_matches_the_scenario(sandbox: Sandbox, default_scenario: Scenario, assume_root: bool) -> None:
    report = audit_report(await run_audit(sandbox_settings(sandbox, assume_root_audit=assume_root)))
    by_id = {a["account_id"]: a for a in report["accounts"]}
    assert set(by_id) == {a.id for a in default_scenario.all_accounts if collected(a)}
    for account in default_scenario.all_accounts:
        if not collected(account):
            continue
        entry = by_id[account.id]
        assert (entry["account_name"], entry["ou_path"]) == (account.name, ou_path(account)), account.id
        error = expected_error(account, assume_root)
        if error is not None:
            assert (entry["status"], entry["error"]) == ("error", error), account.id
            assert entry["error_message"], account.id
            continue
        want = expected_posture(account, assume_root)
        p = entry["posture"]
        got = {
            "mfa": p["mfa_enabled"],
            "hardware": p["mfa_hardware"],
            "devices": p["mfa_devices"],
            "keys": (p["access_keys_active"], p["access_keys_inactive"]),
            "certs": (p["signing_certificates_active"], p["signing_certificates_inactive"]),
            "password": p["password"],
            "password_last_used": p["password_last_used"],
            "key_last_used": p["access_key_last_used"],
            "present": p["credentials_present"],
            "report_generated": p["credential_report_generated"] is not None,
        }
        expected = {**want, "password_last_used": _iso(want["password_last_used"]), "key_last_used": _iso(want["key_last_used"])}
        expected.pop("controls")
        assert got == expected, account.name
        findings = [control for control, ok in want["controls"].items() if not ok]
        assert [f["control"] for f in entry["findings"]] == findings, account.name
        assert {c["control"]: c["compliant"] for c in entry["controls"]} == want["controls"], account.name
        assert entry["status"] == ("findings" if findings else "ok"), account.name
    for reason in ("suspended", "pending_closure", "closed"):
        assert report["summary"]["skipped"][reason] == sum(1 for a in default_scenario.all_accounts if skip_reason(a) == reason)
    # Skipped accounts are named, not only counted.
    skipped = {(s["account_id"], s["account_name"], s["reason"]) for s in report["skipped_accounts"]}
    assert skipped == {(a.id, a.name, skip_reason(a)) for a in default_scenario.all_accounts if skip_reason(a)}
    # The scenario exercises both outcomes of every control and every password state.
    if not assume_root:
        states = {entry["posture"]["password"] for entry in report["accounts"] if "posture" in entry}
        assert states == {"present", "absent", "unknown"}


def _member_iam(sandbox: Sandbox, account_id: str) -> Any:
    credentials = sandbox.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/Probe", RoleSessionName="probe")["Credentials"]
    return boto3.client(
        "iam",
        endpoint_url=sandbox.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def test_account_summary_has_every_key_of_the_model(sandbox: Sandbox, default_scenario: Scenario) -> None:
    keys = set(botocore.session.get_session().get_service_model("iam").shape_for("summaryKeyType").enum)
    assert "AccountPasswordPresent" in keys
    assert set(_member_iam(sandbox, "210000000014").get_account_summary()["SummaryMap"]) == keys
    without = next(a for a in default_scenario.accounts if not a.root.summary_password_key)
    assert set(_member_iam(sandbox, without.id).get_account_summary()["SummaryMap"]) == keys - {"AccountPasswordPresent"}


def test_credential_report_shapes(sandbox: Sandbox, default_scenario: Scenario) -> None:
    for account in default_scenario.all_accounts:
        report = account.credential_report
        if not collected(account) or expected_error(account) or report.malformed or report.generation_seconds:
            continue
        iam = _member_iam(sandbox, account.id)
        iam.generate_credential_report()
        content = iam.get_credential_report()["Content"].decode()
        header, root_row = content.splitlines()[:2]
        assert len(header.split(",")) == len(root_row.split(",")) == account.credential_report.columns, account.name
        upper = account.credential_report.booleans == "upper"
        mfa_cell = root_row.split(",")[header.split(",").index("mfa_active")]
        assert mfa_cell == (mfa_cell.upper() if upper else mfa_cell.lower()), account.name
        assert parse_root_row(content).mfa_active == (account.root.mfa != "none"), account.name
    shapes = {a.credential_report.columns for a in default_scenario.all_accounts}
    assert shapes == {16, 18, 22}


def test_removing_a_virtual_device_from_root_unassigns_it(sandbox: Sandbox) -> None:
    account_id = "210000000002"  # prod-web: one virtual device on root
    iam = _member_iam(sandbox, account_id)
    root_arn = f"arn:aws:iam::{account_id}:root"
    assigned = iam.list_virtual_mfa_devices(AssignmentStatus="Assigned")["VirtualMFADevices"]
    serials = [d["SerialNumber"] for d in assigned if d.get("User", {}).get("Arn") == root_arn]
    assert len(serials) == 1
    sandbox.root(account_id).mfa_devices.clear()  # DeactivateMFADevice on the live root
    assigned = iam.list_virtual_mfa_devices(AssignmentStatus="Assigned")["VirtualMFADevices"]
    assert not [d for d in assigned if d.get("User", {}).get("Arn") == root_arn]
    unassigned = iam.list_virtual_mfa_devices(AssignmentStatus="Unassigned")["VirtualMFADevices"]
    assert [d["SerialNumber"] for d in unassigned] == serials and "User" not in unassigned[0]


def test_iam_users_and_unassigned_devices_are_not_root(sandbox: Sandbox, default_scenario: Scenario) -> None:
    account = default_scenario.account("legacy-reseller")
    assert [u.name for u in account.iam_users] == ["root"] and account.root.mfa == "hardware"
    devices = _member_iam(sandbox, account.id).list_virtual_mfa_devices()["VirtualMFADevices"]
    by_serial = {d["SerialNumber"].split(":mfa/")[1]: d.get("User", {}).get("Arn") for d in devices}
    assert by_serial == {"root": f"arn:aws:iam::{account.id}:user/root", "root-account-mfa-device": None}


def test_a_fault_fails_one_operation_of_one_account(sandbox: Sandbox, default_scenario: Scenario) -> None:
    account = default_scenario.account("media-encoding")
    fault = account.faults[0]
    assert not isinstance(fault, str) and fault.operation == "ListVirtualMFADevices"
    iam = _member_iam(sandbox, account.id)
    with pytest.raises(iam.exceptions.ClientError) as raised:
        iam.list_virtual_mfa_devices()
    assert raised.value.response["Error"]["Code"] == "AccessDenied"
    assert iam.get_account_summary()["SummaryMap"]["AccountMFAEnabled"] == 1
    # The same operation elsewhere answers.
    assert _member_iam(sandbox, "210000000001").list_virtual_mfa_devices()["VirtualMFADevices"] is not None


def test_a_throttled_account_throttles_every_iam_call(sandbox: Sandbox, default_scenario: Scenario) -> None:
    """`throttle_iam` is IAM throttling the whole account (IAM throttles per account), not one operation."""
    scenario = default_scenario.model_copy(deep=True)
    scenario.account("dev-sandbox").faults = ["throttle_iam"]
    sandbox.reset(scenario)
    iam = _member_iam(sandbox, "210000000003")
    operations = {
        "GetAccountSummary": iam.get_account_summary,
        "GenerateCredentialReport": iam.generate_credential_report,
        "GetCredentialReport": iam.get_credential_report,
        "ListVirtualMFADevices": iam.list_virtual_mfa_devices,
        "ListUsers": iam.list_users,
    }
    for name, call in operations.items():
        with pytest.raises(iam.exceptions.ClientError) as raised:
            call()
        assert raised.value.response["Error"]["Code"] == "Throttling", name
    # Another account of the same organization is not throttled.
    assert _member_iam(sandbox, "210000000001").list_users()["Users"] is not None


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        ('{id: "210000000001", name: a, faults: [{operation: ListVirtualMfaDevices}]}', "'ListVirtualMfaDevices' is not an IAM operation"),
        ('{id: "210000000001", name: a, unassigned_virtual_mfa: [x], iam_users: [{name: x, virtual_mfa: true}]}', "virtual MFA device names used twice: x"),
        ('{id: "210000000001", name: a, state: GONE}', "accounts.0.state"),
        ('{id: "210000000001", name: a, root: {access_keys: [{slot: 2}, {slot: 2}]}}', "two access keys in the same slot"),
        ('{id: "210000000001", name: a, credential_report: {columns: 20}}', "accounts.0.credential_report.columns"),
        # The union's member label ("operation") is not part of the location the user wrote.
        ('{id: "210000000001", name: a, faults: [{operation: GetUser, bogus: 1}]}', "accounts.0.faults.0.bogus: unknown key; keys here: error, operation"),
        ('{id: "210000000001", name: a, status: ACTIVE}', "accounts.0.status: unknown key; did you mean state?"),
    ],
)
def test_scenario_mistakes_are_named(tmp_path: Any, account: str, problem: str) -> None:
    from exporter.sandbox import ScenarioError, load_scenario

    path = tmp_path / "scenario.yaml"
    path.write_text(f'management: {{id: "123456789012", name: m}}\naccounts: [{account}]\n')
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert problem in str(raised.value)
