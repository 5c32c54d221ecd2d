"""Transport faults: throttling storms, server errors, connection resets, requests that hang.

For each: /metrics keeps answering, healthy accounts stay fresh, the failing account shows
`aws_root_collector_success 0` with the right reason (so AwsRootCollectionFailing fires)
and none of its posture metrics (it must not look compliant).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from exporter.sandbox import Sandbox
from exporter.sandbox.faults import FaultInjector

from ..conftest import report_measurement, running_exporter, sample, sandbox_settings

VICTIM = "210000000003"  # dev-sandbox
HEALTHY = ("210000000001", "210000000002", "210000000006")
ACCOUNTS = [VICTIM, *HEALTHY]


def posture_success(families: dict, account: str) -> float | None:
    return sample(families, "aws_root_collector_success", account_id=account, collector="posture")


def errors(families: dict, account: str, reason: str) -> float | None:
    return sample(families, "aws_root_collector_errors_total", account_id=account, collector="posture", reason=reason)


def assert_failing_not_compliant(families: dict, account: str, reason: str, count: float = 1.0) -> None:
    assert posture_success(families, account) == 0.0
    assert errors(families, account, reason) == count
    others = [s for s in families["aws_root_collector_errors"].samples if s.labels["account_id"] == account and s.labels["reason"] != reason and s.labels["collector"] == "posture"]
    assert [s.value for s in others] == [0.0] * len(others)
    # Unknown is never shown as a value: no posture, no control verdict for the account.
    assert sample(families, "aws_root_mfa_enabled", account_id=account) is None
    assert not [s for s in families["aws_root_control_compliant"].samples if s.labels["account_id"] == account]


def assert_healthy_fresh(families: dict, since: float) -> None:
    for account in HEALTHY:
        assert posture_success(families, account) == 1.0, account
        last = sample(families, "aws_root_collector_last_success_timestamp_seconds", account_id=account, collector="posture")
        assert last is not None and last >= since, account
        assert sample(families, "aws_root_mfa_enabled", account_id=account) is not None, account


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("throttle", "throttled"), ("server_error", "error"), ("reset", "error")],
)
async def test_every_iam_request_of_one_account_fails(sandbox: Sandbox, faults: FaultInjector, kind: str, reason: str) -> None:
    faults.add(kind, service="iam", account=VICTIM)
    started = time.time()
    async with running_exporter(sandbox_settings(sandbox, include_account_ids=ACCOUNTS)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert_failing_not_compliant(families, VICTIM, reason)
    assert_healthy_fresh(families, started)
    # max_attempts=2 retries: the victim's first IAM call was sent 3 times, then the account gave up.
    assert faults.injected == {(kind, "iam", "GetAccountSummary"): 3}
    assert sample(families, "aws_root_api_errors_total", operation="iam:GetAccountSummary", reason=reason) == 1.0
