"""Centralized root access as a state: the setting central_root_access_required reaches
Prometheus as aws_root_organization_feature_required (two organization-level series, beside
the features read), so AwsRootCentralRootAccessDisabled can compare the two; a bad value is
one line and exit status 2. The alert itself is tested with promtool
(alerts/tests/central_root_access.yml)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from exporter.sandbox import Sandbox, Scenario

from .conftest import ROOT, running_exporter, sample, sandbox_settings

FEATURES = ("RootCredentialsManagement", "RootSessions")
MANAGEMENT = "123456789012"


async def _organization_series(sandbox: Sandbox, **overrides: object) -> dict[str, dict[str, float | None]]:
    async with running_exporter(sandbox_settings(sandbox, include_account_ids=[MANAGEMENT], **overrides)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    return {
        name: {feature: sample(families, name, feature=feature) for feature in FEATURES}
        for name in ("aws_root_organization_feature_required", "aws_root_organization_feature_enabled")
    } | {"trusted": {"": sample(families, "aws_root_organization_iam_trusted_access_enabled")}}


async def test_both_features_are_required_by_default(sandbox: Sandbox) -> None:
    series = await _organization_series(sandbox)
    assert series["aws_root_organization_feature_required"] == {"RootCredentialsManagement": 1.0, "RootSessions": 1.0}


async def test_an_organization_opts_out_of_a_feature_in_the_settings(sandbox: Sandbox) -> None:
    one = await _organization_series(sandbox, central_root_access_required=["RootCredentialsManagement"])
    assert one["aws_root_organization_feature_required"] == {"RootCredentialsManagement": 1.0, "RootSessions": 0.0}
    none = await _organization_series(sandbox, central_root_access_required=[])
    assert none["aws_root_organization_feature_required"] == {"RootCredentialsManagement": 0.0, "RootSessions": 0.0}


async def test_required_features_are_published_while_trusted_access_is_off(sandbox: Sandbox, default_scenario: Scenario) -> None:
    # No feature series then (unknown): the required ones must be there, or the alert that
    # treats unknown as not enabled would have nothing to fire on.
    scenario = default_scenario.model_copy(deep=True)
    scenario.organization.root_access_features = None
    sandbox.reset(scenario)
    series = await _organization_series(sandbox)
    assert series["trusted"] == {"": 0.0}
    assert series["aws_root_organization_feature_enabled"] == {"RootCredentialsManagement": None, "RootSessions": None}
    assert series["aws_root_organization_feature_required"] == {"RootCredentialsManagement": 1.0, "RootSessions": 1.0}


async def test_no_required_series_outside_the_organization_mode(sandbox: Sandbox) -> None:
    series = await _organization_series(sandbox, account_mode="single")
    assert series["aws_root_organization_feature_required"] == {"RootCredentialsManagement": None, "RootSessions": None}


PREFIX = "aws-root-exporter: configuration error: central_root_access_required"
ENV = "(from AWS_ROOT_EXPORTER_CENTRAL_ROOT_ACCESS_REQUIRED)"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ('["RootSession"]', f"{PREFIX} {ENV}: must list RootCredentialsManagement and/or RootSessions (or be [] to opt out), got 'RootSession'"),
        ("[1]", f"{PREFIX}.0 {ENV}: Input should be a valid string, got 1"),
    ],
)
def test_a_bad_feature_name_is_one_line_and_exit_2(value: str, line: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_ROOT_EXPORTER_CENTRAL_ROOT_ACCESS_REQUIRED"] = value
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "audit", "--sandbox"], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == line + "\n"
