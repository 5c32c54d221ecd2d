"""One broken account never takes the others down; each failure shows with its reason."""

from __future__ import annotations

from exporter.sandbox import Sandbox, Scenario

from .conftest import running_exporter, sample, sandbox_settings
from .scenario_expect import collected, expected_error

HEALTHY = "210000000001"


def _broken(default_scenario: Scenario) -> Scenario:
    scenario = default_scenario.model_copy(deep=True)
    scenario.account("dev-sandbox").faults = ["throttle_iam"]
    scenario.account("staging").credential_report.generation_seconds = 3600
    scenario.account("ml-research").credential_report.malformed = True
    return scenario


async def test_failing_accounts_next_to_healthy_ones(sandbox: Sandbox, default_scenario: Scenario) -> None:
    sandbox.reset(_broken(default_scenario))
    settings = sandbox_settings(sandbox, credential_report_wait_seconds=1.5)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()

    expected_reason = {
        "210000000003": "throttled",  # dev-sandbox
        "210000000012": "timeout",  # staging: report never ready in time
        "210000000013": "invalid_response",  # ml-research: malformed report
        "210000000009": "assume_role_failed",  # network
    }
    for aid, reason in expected_reason.items():
        assert sample(families, "aws_root_exporter_collector_success", account_id=aid, collector="posture") == 0.0, aid
        assert sample(families, "aws_root_exporter_collector_errors_total", account_id=aid, collector="posture", reason=reason) == 1.0, aid
        others = [s for s in families["aws_root_exporter_collector_errors"].samples if s.labels["account_id"] == aid and s.labels["reason"] != reason]
        # An error series appears with its first error: none for the reasons that never happened.
        assert others == [], aid
        for control in ("mfa_enabled", "mfa_hardware"):
            assert sample(families, "aws_root_control_compliant", account_id=aid, control=control) is None, "unknown must not be shown as a value"
        assert sample(families, "aws_root_credentials_present", account_id=aid) is None, aid
    expected_reason.update({a.id: expected_error(a) for a in default_scenario.all_accounts if expected_error(a) and a.id not in expected_reason})
    healthy = [a.id for a in default_scenario.all_accounts if collected(a) and a.id not in expected_reason]
    for aid in healthy:
        assert sample(families, "aws_root_exporter_collector_success", account_id=aid, collector="posture") == 1.0, aid
    assert sample(families, "aws_root_control_compliant", account_id=HEALTHY, control="mfa_hardware") == 1.0
    assert sample(families, "aws_root_credentials_present", account_id=HEALTHY) == 1.0
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="iam:GetAccountSummary", reason="throttled") == 1.0


async def test_account_time_limit(sandbox: Sandbox, default_scenario: Scenario) -> None:
    scenario = default_scenario.model_copy(deep=True)
    scenario.account("staging").credential_report.generation_seconds = 3600
    sandbox.reset(scenario)
    settings = sandbox_settings(sandbox, account_timeout_seconds=3.0, credential_report_wait_seconds=60, include_account_ids=["210000000012", HEALTHY])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
        duration = exporter.state.snapshot.sweep_duration
    assert sample(families, "aws_root_exporter_collector_errors_total", account_id="210000000012", collector="posture", reason="timeout") == 1.0
    assert sample(families, "aws_root_exporter_collector_success", account_id=HEALTHY, collector="posture") == 1.0
    assert duration < 10, "the sweep must not wait for the slow account beyond its time limit"


async def test_last_known_posture_is_kept_when_an_account_starts_failing(sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox, include_account_ids=[HEALTHY])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        first = await exporter.metrics()
        sandbox.root(HEALTHY).throttle_iam = True
        await exporter.exporter.sweeper.sweep()
        second = await exporter.metrics()
    assert sample(second, "aws_root_exporter_collector_success", account_id=HEALTHY, collector="posture") == 0.0
    assert sample(second, "aws_root_exporter_collector_errors_total", account_id=HEALTHY, collector="posture", reason="throttled") == 1.0
    # What was collected before stays, and its age is visible.
    assert sample(second, "aws_root_control_compliant", account_id=HEALTHY, control="mfa_hardware") == 1.0
    assert sample(second, "aws_root_credentials_present", account_id=HEALTHY) == 1.0
    assert sample(second, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=HEALTHY, collector="posture") == sample(
        first, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=HEALTHY, collector="posture"
    )
