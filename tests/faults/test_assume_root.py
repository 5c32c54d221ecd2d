"""The sts:AssumeRoot audit path (`assume_root_audit`) under faults: AssumeRoot throttled,
denied, failing with HTTP 500 or a reset connection; the IAM calls of the audit session
throttled or denied. The failing account shows the right reason and either its last known
posture (success 0, old last-success time) or none at all, never a compliant default; the
other accounts stay fresh."""

from __future__ import annotations

import time

import pytest

from exporter.sandbox import Sandbox
from exporter.sandbox.faults import FaultInjector

from ..conftest import report_measurement, running_exporter, sample, sandbox_settings
from .test_transport import assert_failing_not_compliant, posture_success

# With concurrency 1 the accounts are collected in id order: the first AssumeRoot is VICTIM's.
VICTIM = "210000000001"
HEALTHY = ("210000000002", "210000000003", "210000000006")


def audit_settings(sandbox: Sandbox, **overrides):
    return sandbox_settings(sandbox, assume_root_audit=True, concurrency=1, include_account_ids=[VICTIM, *HEALTHY], **overrides)


def assert_others_fresh(families: dict, since: float) -> None:
    for account in HEALTHY:
        assert posture_success(families, account) == 1.0, account
        last = sample(families, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=account, collector="posture")
        assert last is not None and last >= since, account
        # Audited through AssumeRoot: per-kind MFA device counts exist only on that path.
        assert sample(families, "aws_root_mfa_devices", account_id=account, device_kind="virtual") is not None, account


@pytest.mark.parametrize(
    ("kind", "limit", "reason"),
    [
        ("throttle", 3, "throttled"),  # all 3 attempts
        ("access_denied", 1, "assume_role_failed"),  # not retried
        ("server_error", 3, "error"),  # STS failing is not a role problem
        ("reset", 3, "error"),
    ],
)
async def test_assume_root_fails(sandbox: Sandbox, faults: FaultInjector, kind: str, limit: int, reason: str) -> None:
    faults.add(kind, service="sts", operation="AssumeRoot", limit=limit)
    started = time.time()
    async with running_exporter(audit_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        failing = await exporter.metrics()
        await exporter.exporter.sweeper.sweep()
        recovered = await exporter.metrics()
    report_measurement(
        f"AssumeRoot {kind}: {faults.count(kind, 'sts', 'AssumeRoot')} injected; reason "
        + ",".join(s.labels["reason"] for s in failing["aws_root_exporter_collector_errors"].samples if s.labels["account_id"] == VICTIM and s.value)
        + f"; api errors {[(s.labels['reason'], s.value) for s in failing['aws_root_exporter_aws_request_errors'].samples if s.labels['operation'] == 'sts:AssumeRoot' and s.name.endswith('_total')]}"
    )
    assert faults.count(kind, "sts", "AssumeRoot") == limit
    assert_failing_not_compliant(failing, VICTIM, reason)
    assert not [s for s in failing["aws_root_mfa_devices"].samples if s.labels["account_id"] == VICTIM]
    assert_others_fresh(failing, started)
    assert posture_success(recovered, VICTIM) == 1.0
    assert sample(recovered, "aws_root_mfa_devices", account_id=VICTIM, device_kind="virtual") is not None


@pytest.mark.parametrize(
    ("kind", "operation", "reason"),
    [
        ("throttle", None, "throttled"),  # every IAM call of the audit session
        ("access_denied", "GetLoginProfile", "access_denied"),  # must not read as "no password"
        ("access_denied", "ListMFADevices", "access_denied"),  # must not read as "no MFA"
        ("server_error", "ListAccessKeys", "error"),  # must not read as "no keys"
    ],
)
async def test_audit_session_calls_fail_after_a_good_sweep(sandbox: Sandbox, faults: FaultInjector, kind: str, operation: str | None, reason: str) -> None:
    if operation == "GetLoginProfile":
        # GetLoginProfile is read only when the summary lacks AccountPasswordPresent.
        sandbox.root(VICTIM).summary_password_key = False
    async with running_exporter(audit_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        first = await exporter.metrics()
        faults.add(kind, service="iam", account=VICTIM, operation=operation)
        started = time.time()
        await exporter.exporter.sweeper.sweep()
        failing = await exporter.metrics()
    report_measurement(f"AssumeRoot session iam:{operation or '*'} {kind}: {faults.count(kind, 'iam')} injected, reason {reason}")
    assert posture_success(first, VICTIM) == 1.0
    assert_failing_not_compliant(failing, VICTIM, reason, known_before=True)
    # The last known posture stays as it was, with its old last-success time.
    for name, labels in (
        ("aws_root_mfa_devices", {"device_kind": "hardware"}),
        ("aws_root_control_compliant", {"control": "mfa_enabled"}),
        ("aws_root_password_state", {"state": "present"}),
        ("aws_root_access_keys", {"status": "active"}),
    ):
        kept = sample(failing, name, account_id=VICTIM, **labels)
        assert kept is not None and kept == sample(first, name, account_id=VICTIM, **labels), name
    last = sample(failing, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=VICTIM, collector="posture")
    assert last == sample(first, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=VICTIM, collector="posture")
    assert last < started
    assert_others_fresh(failing, started)
