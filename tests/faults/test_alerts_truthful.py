"""Alerts stay truthful under faults: the /metrics of an exporter with failing accounts,
replayed into `promtool test rules` against the shipped rules, raises
AwsRootCollectionFailing for exactly the failing accounts with the right reason, and the
failing accounts have no posture series that a compliance alert could read as compliant."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.sandbox import Sandbox
from exporter.sandbox.faults import FaultInjector

from ..conftest import running_exporter, sample, sandbox_settings
from .promtool_replay import replay
from .test_transport import POSTURE_SERIES, posture_series

THROTTLED = "210000000003"  # dev-sandbox: its root has no MFA, so "compliant" would be a lie
DENIED = "210000000009"  # network: role cannot be assumed
HEALTHY = "210000000001"


def _expected(families: dict, account: str, reason: str) -> dict:
    info = next(s.labels for s in families["aws_root_account_info"].samples if s.labels["account_id"] == account)
    return {
        "exp_labels": {"severity": "warning", "account_id": account, "account_name": info["account_name"], "ou_name": info["ou_name"], "collector": "posture"},
        "exp_annotations": {
            "summary": "The exporter cannot collect an account.",
            "description": f"Collector posture has failed for account {account} ({info['account_name']}) for more than 20m. "
            f"Its root posture and activity are unknown (not compliant). Most frequent error reason in the last hour: {reason}.",
            "runbook_url": "https://github.com/aws-root-exporter/aws-root-exporter/blob/main/alerts/runbook.md#awsrootcollectionfailing",
        },
    }


async def test_failing_accounts_raise_the_collection_alert(sandbox: Sandbox, faults: FaultInjector, tmp_path: Path) -> None:
    faults.add("throttle", service="iam", account=THROTTLED)
    settings = sandbox_settings(sandbox, include_account_ids=[THROTTLED, DENIED, HEALTHY])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    for account in (THROTTLED, DENIED):
        assert posture_series(families, account) == []
    assert len(posture_series(families, HEALTHY)) == POSTURE_SERIES
    assert sample(families, "aws_root_control_compliant", account_id=HEALTHY, control="mfa_enabled") == 1.0

    alerts = [_expected(families, THROTTLED, "throttled"), _expected(families, DENIED, "assume_role_failed")]
    replay(families, [
        {"eval_time": "15m", "alertname": "AwsRootCollectionFailing", "exp_alerts": []},
        {"eval_time": "25m", "alertname": "AwsRootCollectionFailing", "exp_alerts": alerts},
        # A failing account is not reported as having no MFA, nor as having it.
        {"eval_time": "25m", "alertname": "AwsRootMfaDisabled", "exp_alerts": []},
    ], tmp_path)


@pytest.mark.parametrize("assume_root_audit", [False, True], ids=["credential_report", "assume_root"])
async def test_a_root_sign_in_no_cloudtrail_source_saw_pages_once(sandbox: Sandbox, tmp_path: Path, assume_root_audit: bool) -> None:
    """AwsRootPasswordUsed through the real path: the sandbox's root shows a password
    sign-in in two accounts (credential report, or iam:GetUser in the AssumeRoot mode);
    CloudTrail (LookupEvents) has the ConsoleLogin record of only one. Replayed into
    promtool, the alert fires after its 15 minutes for the account no CloudTrail source saw,
    and never for the other (AwsRootConsoleLogin's)."""
    from datetime import datetime, timedelta, timezone

    from exporter.sandbox import moto_ext
    from exporter.sandbox.records import make_record

    unseen, seen = HEALTHY, "210000000004"
    signed_in = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    for account in (unseen, seen):
        sandbox.root(account).password_last_used = signed_in
    moto_ext.add_cloudtrail_record(seen, "us-east-1", make_record("console-login", seen, when=signed_in))
    settings = sandbox_settings(sandbox, include_account_ids=[unseen, seen], lookup_events_enabled=True, assume_root_audit=assume_root_audit)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        await exporter.exporter.activity.poll_lookup_events()
        families = await exporter.metrics()
    for account in (unseen, seen):
        assert sample(families, "aws_root_password_last_used_timestamp_seconds", account_id=account) == signed_in.timestamp()
    assert sample(families, "aws_root_last_activity_timestamp_seconds", account_id=seen) == signed_in.timestamp()
    assert sample(families, "aws_root_last_activity_timestamp_seconds", account_id=unseen) is None
    # The AssumeRoot mode reads no credential report: the posture read is the reference time.
    report = sample(families, "aws_root_credential_report_generated_timestamp_seconds", account_id=unseen)
    assert (report is None) == assume_root_audit

    info = next(s.labels for s in families["aws_root_account_info"].samples if s.labels["account_id"] == unseen)
    fired = {
        "exp_labels": {"severity": "critical", "account_id": unseen, "account_name": info["account_name"], "ou_name": info["ou_name"]},
        "exp_annotations": {
            "summary": "The root password was used to sign in, and no CloudTrail source reported it.",
            "description": f"The root user of account {unseen} ({info['account_name']}) signed in with its password at "
            f"{signed_in:%Y-%m-%d %H:%M:%S} +0000 UTC (IAM credential report or GetUser), and the exporter has no CloudTrail record "
            "of root activity since: find out who signed in, and configure a CloudTrail source for this account (README, Root activity).",
            "runbook_url": "https://github.com/aws-root-exporter/aws-root-exporter/blob/main/alerts/runbook.md#awsrootpasswordused",
        },
    }
    replay(families, [
        {"eval_time": "14m", "alertname": "AwsRootPasswordUsed", "exp_alerts": []},
        {"eval_time": "16m", "alertname": "AwsRootPasswordUsed", "exp_alerts": [fired]},
    ], tmp_path)
