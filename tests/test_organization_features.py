"""Centralized root access features when IAM will not report them: trusted access for IAM off
in AWS Organizations is a setting with its own reason, never "disabled", and a throttled
management account makes them unreadable, never "disabled" either."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from exporter.sandbox import Sandbox, Scenario

from .conftest import ROOT, running_exporter, sample, sandbox_settings

SCENARIO = """
management: {id: "123456789012", name: management, root: {mfa: hardware}}
accounts:
  - {id: "310000000001", name: only-member, ou: Teams/Blue, root: {mfa: hardware}}
"""
TRUSTED_ACCESS_OFF = "organization: {root_access_features: null}\n" + SCENARIO


def _audit(scenario: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", "audit", "--sandbox", "--scenario", str(scenario), *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )


def test_audit_names_trusted_access_off_as_the_reason(tmp_path: Path) -> None:
    scenario = tmp_path / "trusted-access-off.yaml"
    scenario.write_text(TRUSTED_ACCESS_OFF)
    table = _audit(scenario)
    assert table.returncode == 0, table.stdout + table.stderr
    assert (
        "Centralized root access features: unknown (trusted_access_disabled): trusted access for IAM is not enabled"
        " in AWS Organizations, so IAM does not report them" in table.stdout
    ), table.stdout
    assert "are disabled" not in table.stdout and "enabled: none" not in table.stdout
    report = json.loads(_audit(scenario, "--format", "json").stdout)
    assert report["organization_features"] is None
    assert report["organization_features_unknown_reason"] == "trusted_access_disabled"
    assert "Trusted access" in report["organization_features_unknown_message"]
    # A setting of the organization, not a failure of the exporter.
    assert report["organization_features_error"] is None


def test_audit_with_features_read_has_no_unknown_reason(tmp_path: Path) -> None:
    scenario = tmp_path / "enabled.yaml"
    scenario.write_text("organization: {root_access_features: [RootSessions]}\n" + SCENARIO)
    report = json.loads(_audit(scenario, "--format", "json").stdout)
    assert report["organization_features"] == {"RootCredentialsManagement": False, "RootSessions": True}
    assert report["organization_features_unknown_reason"] is None and report["organization_features_error"] is None


def test_throttled_management_account_leaves_the_features_unreadable(tmp_path: Path) -> None:
    # throttle_iam throttles every IAM call of the account, ListOrganizationsFeatures included.
    scenario = tmp_path / "throttled.yaml"
    scenario.write_text(SCENARIO.replace("root: {mfa: hardware}}", "root: {mfa: hardware}, faults: [throttle_iam]}", 1))
    result = _audit(scenario)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Centralized root access features: could not be read (throttled: iam:ListOrganizationsFeatures: Throttling" in result.stdout, result.stdout
    report = json.loads(_audit(scenario, "--format", "json").stdout)
    assert report["organization_features"] is None and report["organization_features_error"].startswith("throttled")
    assert report["organization_features_unknown_reason"] is None


async def test_metrics_show_trusted_access_off_and_no_feature_value(sandbox: Sandbox, default_scenario: Scenario) -> None:
    scenario = default_scenario.model_copy(deep=True)
    scenario.organization.root_access_features = None
    sandbox.reset(scenario)
    async with running_exporter(sandbox_settings(sandbox, include_account_ids=["123456789012"])) as exporter:
        await exporter.wait_for_sweeps(1)
        off = await exporter.metrics()
    assert sample(off, "aws_root_organization_iam_trusted_access_enabled") == 0.0
    assert off["aws_root_organization_feature_enabled"].samples == []
    # IAM answered: the collector succeeded.
    assert sample(off, "aws_root_exporter_collector_success", account_id="123456789012", collector="organization_features") == 1.0

    sandbox.reset(default_scenario)
    async with running_exporter(sandbox_settings(sandbox, include_account_ids=["123456789012"])) as exporter:
        await exporter.wait_for_sweeps(1)
        on = await exporter.metrics()
    assert sample(on, "aws_root_organization_iam_trusted_access_enabled") == 1.0
    for feature in ("RootCredentialsManagement", "RootSessions"):
        want = float(feature in (default_scenario.organization.root_access_features or []))
        assert sample(on, "aws_root_organization_feature_enabled", feature=feature) == want
