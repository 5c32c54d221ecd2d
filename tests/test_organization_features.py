"""Centralized root access features when IAM will not report them: trusted access for IAM off
in AWS Organizations is a setting with its own reason, never "disabled", and a throttled
management account makes them unreadable, never "disabled" either."""

from __future__ import annotations

import json
import logging
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


async def test_a_consolidated_billing_organization_is_its_own_reason_with_the_fix(sandbox: Sandbox, default_scenario: Scenario, caplog) -> None:
    """An organization without all features: IAM refuses ListOrganizationsFeatures with
    OrganizationNotInAllFeaturesModeException. Reason not_all_features, one warning naming
    the problem and the fix."""
    from moto.organizations.models import organizations_backends

    management = "123456789012"
    organizations_backends[management][sandbox.partition].org.feature_set = "CONSOLIDATED_BILLING"
    try:
        with caplog.at_level(logging.DEBUG, logger="exporter.engine.runner"):
            async with running_exporter(sandbox_settings(sandbox, include_account_ids=[management])) as exporter:
                await exporter.wait_for_sweeps(1)
                await exporter.exporter.sweeper.sweep()  # the same failure again: no second warning
                families = await exporter.metrics()
    finally:
        sandbox.reset(default_scenario)
    labels = {"account_id": management, "collector": "organization_features"}
    assert sample(families, "aws_root_exporter_collector_errors_total", reason="not_all_features", **labels) == 2.0
    assert sample(families, "aws_root_exporter_collector_success", **labels) == 0.0
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="iam:ListOrganizationsFeatures", reason="not_all_features") == 2.0
    # The posture itself is read: only the organization's features are not.
    assert sample(families, "aws_root_exporter_collector_success", account_id=management, collector="posture") == 1.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "reading centralized root access features failed: the organization has only the consolidated billing features"
        " (OrganizationNotInAllFeaturesModeException); enable all features in AWS Organizations"
        " (`aws organizations enable-all-features`, approved by every invited member account), or set account_mode: roles"
    ]
