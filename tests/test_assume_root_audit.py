"""Auditing member roots through sts:AssumeRoot instead of a role in each account."""

from __future__ import annotations

import pytest

from exporter.app import make_aws
from exporter.aws.client import AwsError
from exporter.posture.collect import mfa_kind
from exporter.sandbox import MANAGEMENT_ACCOUNT_ID, Sandbox, Scenario

from .conftest import running_exporter, sample, sandbox_settings
from .scenario_expect import collected, expected_error, expected_posture
from .test_sandbox_posture import check_account


def test_mfa_kind_from_serial() -> None:
    assert mfa_kind("arn:aws:iam::210000000002:mfa/root-account-mfa-device") == "virtual"
    assert mfa_kind("arn:aws:iam::210000000002:mfa/") == "virtual"
    assert mfa_kind("arn:aws:iam::210000000006:u2f/root/key-abc") == "u2f"
    assert mfa_kind("GAHT12345678") == "hardware"


async def test_assume_root_reads_every_root_directly(sandbox: Sandbox, default_scenario: Scenario) -> None:
    # Without the canary: it is made through the member role (a root's call would be root
    # activity), and what is counted here is the posture audit's.
    settings = sandbox_settings(sandbox, assume_root_audit=True, canary_enabled=False)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    api = exporter.state.api.requests
    members = [a for a in default_scenario.accounts if collected(a)]
    assert api["sts:AssumeRoot"] == len(members)
    # Members are never reached through a role, and the audit policy has no credential report.
    assert api["sts:AssumeRole"] == 0
    # The audit task policy does not allow the credential report: the sweep never asks for it
    # in a root session (the sandbox answers AccessDenied there, as AWS does).
    assert not [key for key in exporter.state.api.errors if key[1] == "access_denied"]
    # GetLoginProfile only where the summary lacks AccountPasswordPresent.
    assert api["iam:GetLoginProfile"] == sum(1 for a in members if not a.root.summary_password_key) > 0

    for account in members:
        aid = account.id
        # Collection works even where the member role is missing: no role is needed.
        assert expected_error(account, assume_root=True) is None, aid
        # check_account compares the devices by kind too: every member has them here.
        check_account(families, account, assume_root=True)
        assert expected_posture(account, assume_root=True)["devices"] is not None, aid

    # Root credentials deleted centrally: nothing to sign in with, compliant.
    assert sample(families, "aws_root_credentials_present", account_id="210000000007") == 0.0
    assert sample(families, "aws_root_control_compliant", account_id="210000000007", control="mfa_enabled") == 1.0
    # A virtual device next to a hardware one: not hardware-only (and the root holds a password).
    assert sample(families, "aws_root_mfa_devices", account_id="210000000010", device_kind="virtual") == 1.0
    assert sample(families, "aws_root_mfa_devices", account_id="210000000010", device_kind="hardware") == 1.0
    assert sample(families, "aws_root_credentials_present", account_id="210000000010") == 1.0
    assert sample(families, "aws_root_control_compliant", account_id="210000000010", control="mfa_enabled") == 1.0
    assert sample(families, "aws_root_control_compliant", account_id="210000000010", control="mfa_hardware") == 0.0
    # The management account cannot be a target of AssumeRoot: read with the report.
    assert sample(families, "aws_root_mfa_devices", account_id=MANAGEMENT_ACCOUNT_ID, device_kind="hardware") is None
    assert sample(families, "aws_root_credentials_present", account_id=MANAGEMENT_ACCOUNT_ID) == 1.0
    assert sample(families, "aws_root_control_compliant", account_id=MANAGEMENT_ACCOUNT_ID, control="mfa_hardware") == 1.0


async def test_assume_root_needs_root_sessions_enabled(sandbox: Sandbox, default_scenario: Scenario) -> None:
    scenario = default_scenario.model_copy(deep=True)
    scenario.organization.root_access_features = ["RootCredentialsManagement"]
    sandbox.reset(scenario)
    settings = sandbox_settings(sandbox, assume_root_audit=True, include_account_ids=["210000000001"])
    state_settings = settings
    from exporter.engine.state import ExporterState

    async with make_aws(state_settings, ExporterState(10)) as aws:
        with pytest.raises(AwsError) as raised:
            await aws.assume_root("210000000001", "aws")
    assert raised.value.reason == "assume_role_failed"
    assert "RootSessions" in str(raised.value)
