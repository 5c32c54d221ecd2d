"""Credential report faults: in progress for a long time, not present, expired, malformed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from exporter.sandbox import Sandbox

from ..conftest import running_exporter, sample, sandbox_settings
from .test_transport import assert_failing_not_compliant, posture_success

VICTIM = "210000000003"
HEALTHY = "210000000001"


def _iam(account: str):
    from moto.iam import iam_backends

    return iam_backends[account]["aws"]


async def test_report_in_progress_for_a_long_time(sandbox: Sandbox) -> None:
    sandbox.root(VICTIM).report_generation_seconds = 3600
    settings = sandbox_settings(sandbox, include_account_ids=[VICTIM, HEALTHY], credential_report_wait_seconds=1.0)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert_failing_not_compliant(families, VICTIM, "timeout")
    assert posture_success(families, HEALTHY) == 1.0


async def test_report_not_present_then_expired_is_regenerated(sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox, include_account_ids=[VICTIM, HEALTHY])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)  # no report existed: ReportNotPresent, generated
        first = sample(await exporter.metrics(), "aws_root_credential_report_generated_timestamp_seconds", account_id=VICTIM)
        backend = _iam(VICTIM)
        content, _ = backend.sandbox_report
        old = datetime.now(timezone.utc) - timedelta(hours=5)
        backend.sandbox_report = (content, old)  # AWS answers ReportExpired
        await exporter.exporter.sweeper.sweep()
        families = await exporter.metrics()
    assert first is not None
    assert posture_success(families, VICTIM) == 1.0
    regenerated = sample(families, "aws_root_credential_report_generated_timestamp_seconds", account_id=VICTIM)
    assert regenerated is not None and regenerated > old.timestamp() + 4 * 3600
    # Never a collection failure: no collector error series for the account at all.
    assert sample(families, "aws_root_exporter_collector_errors_total", account_id=VICTIM, collector="posture", reason="error") is None
    assert not [s for s in families["aws_root_exporter_collector_errors"].samples if s.labels["account_id"] == VICTIM]
    # ReportNotPresent (first sweep, 2 accounts) and ReportExpired (second) are expected answers,
    # counted as API errors but never as a collection failure.
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="iam:GetCredentialReport", reason="error") == 3.0


async def test_malformed_report(sandbox: Sandbox) -> None:
    sandbox.root(VICTIM).report_malformed = True
    settings = sandbox_settings(sandbox, include_account_ids=[VICTIM, HEALTHY])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert_failing_not_compliant(families, VICTIM, "invalid_response")
    assert posture_success(families, HEALTHY) == 1.0
