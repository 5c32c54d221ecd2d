"""Account-level faults: a role that cannot be assumed, credentials that expire in the middle
of a sweep, member accounts removed from or added to the organization between sweeps."""

from __future__ import annotations

from exporter.sandbox import Sandbox, Scenario
from exporter.sandbox.faults import FaultInjector

from ..conftest import running_exporter, sample, sandbox_settings
from ..scenario_expect import collected
from .test_transport import assert_failing_not_compliant, posture_series, posture_success

VICTIM = "210000000003"
HEALTHY = "210000000001"
DENIED = "210000000009"  # network: its role cannot be assumed


async def test_role_that_cannot_be_assumed(sandbox: Sandbox) -> None:
    # The two sweeps' AssumeRole calls are counted; the canary tries the role too, on its own
    # schedule (tests/test_canary.py counts that failure).
    settings = sandbox_settings(sandbox, include_account_ids=[DENIED, HEALTHY], canary_enabled=False)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        await exporter.exporter.sweeper.sweep()
        families = await exporter.metrics()
    assert_failing_not_compliant(families, DENIED, "assume_role_failed", count=2.0)
    assert posture_success(families, HEALTHY) == 1.0
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="sts:AssumeRole", reason="access_denied") == 2.0


async def test_credentials_expiring_in_the_middle_of_a_sweep(sandbox: Sandbox, faults: FaultInjector) -> None:
    """The cached member credentials are refused as expired (AWS and the local clock
    disagree): the account is re-assumed and collected in the same sweep; the refusal
    shows in aws_root_exporter_aws_request_errors_total."""
    # Without the canary, which uses the same cached credentials on its own schedule and
    # could be the one refused.
    settings = sandbox_settings(sandbox, include_account_ids=[VICTIM, HEALTHY], canary_enabled=False)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        aws = exporter.exporter.sweeper.aws
        old_key = next(c.access_key_id for k, c in aws._credentials.items() if k[1].split(":")[4] == VICTIM)
        # From now on AWS refuses this key, as it would once it expired.
        faults.add("expired_token", access_key=old_key)
        await exporter.exporter.sweeper.sweep()
        families = await exporter.metrics()
        new_key = next(c.access_key_id for k, c in aws._credentials.items() if k[1].split(":")[4] == VICTIM)
    assert new_key != old_key
    assert faults.count("expired_token") == 1, "one refused call, then fresh credentials"
    assert posture_success(families, VICTIM) == 1.0
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="iam:GetAccountSummary", reason="access_denied") == 1.0
    # Re-assumed within the sweep: no collector error, so no error series for the account.
    assert sample(families, "aws_root_exporter_collector_errors_total", account_id=VICTIM, collector="posture", reason="access_denied") is None
    assert not [s for s in families["aws_root_exporter_collector_errors"].samples if s.labels["account_id"] == VICTIM]
    assert sample(families, "aws_root_exporter_sweeps_total") == 2.0


async def test_member_removed_then_added_between_sweeps(sandbox: Sandbox, default_scenario: Scenario) -> None:
    from moto.organizations.models import organizations_backends

    org = organizations_backends["123456789012"]["aws"]
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        first = await exporter.metrics()
        org.remove_account_from_organization(AccountId=VICTIM)
        await exporter.exporter.sweeper.sweep()
        removed = await exporter.metrics()
        new_id = org.create_account(AccountName="newcomer", Email="aws+newcomer@example.com")["CreateAccountStatus"]["AccountId"]
        sandbox.root(new_id)  # a root user for the new member (no MFA: the sandbox default)
        await exporter.exporter.sweeper.sweep()
        added = await exporter.metrics()
    ids = lambda fam: {s.labels["account_id"] for s in fam["aws_root_account_info"].samples}  # noqa: E731
    active = len([a for a in default_scenario.all_accounts if collected(a)])
    assert VICTIM in ids(first) and len(ids(first)) == active
    # Gone from the organization: no series left that would look current (stale != compliant).
    assert VICTIM not in ids(removed) and len(ids(removed)) == active - 1
    assert sample(removed, "aws_root_exporter_collector_success", account_id=VICTIM, collector="posture") is None
    assert posture_series(first, VICTIM) != []
    assert posture_series(removed, VICTIM) == []
    assert new_id in ids(added) and len(ids(added)) == active
    assert posture_success(added, new_id) == 1.0
    # Every account of the scenario, skipped ones included.
    assert sample(added, "aws_root_accounts_discovered") == len(default_scenario.all_accounts)


async def test_discovery_throttled_keeps_accounts_fresh_and_alerts(sandbox: Sandbox, faults: FaultInjector, default_scenario: Scenario) -> None:
    """Organizations answers only TooManyRequestsException: the last account list is kept
    and collected, and the failing discovery shows as a failing collector (so
    AwsRootCollectionFailing fires: new members would otherwise go unmonitored silently)."""
    import time

    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        first = await exporter.metrics()
        faults.add("throttle", service="organizations")
        started = time.time()
        await exporter.exporter.sweeper.sweep()
        failing = await exporter.metrics()
        faults.clear()
        await exporter.exporter.sweeper.sweep()
        recovered = await exporter.metrics()
    management = "123456789012"
    assert sample(first, "aws_root_exporter_collector_success", account_id=management, collector="discovery") == 1.0
    assert sample(failing, "aws_root_exporter_collector_errors_total", account_id=management, collector="discovery", reason="throttled") == 1.0
    assert sample(failing, "aws_root_exporter_collector_success", account_id=management, collector="discovery") == 0.0
    assert len(failing["aws_root_account_info"].samples) == len([a for a in default_scenario.all_accounts if collected(a)])
    assert posture_success(failing, HEALTHY) == 1.0
    last = sample(failing, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=HEALTHY, collector="posture")
    assert last is not None and last >= started
    assert sample(recovered, "aws_root_exporter_collector_success", account_id=management, collector="discovery") == 1.0
    assert sample(recovered, "aws_root_exporter_collector_errors_total", account_id=management, collector="discovery", reason="throttled") == 1.0


async def test_assume_role_throttled_is_throttled_not_denied(sandbox: Sandbox, faults: FaultInjector) -> None:
    """STS throttles AssumeRole (all 3 attempts): the reason is `throttled`, not
    `assume_role_failed` (which would send the operator to fix a role that is fine); the
    next sweep recovers."""
    faults.add("throttle", service="sts", operation="AssumeRole", limit=3)
    async with running_exporter(sandbox_settings(sandbox, include_account_ids=[VICTIM])) as exporter:
        await exporter.wait_for_sweeps(1)
        failing = await exporter.metrics()
        await exporter.exporter.sweeper.sweep()
        recovered = await exporter.metrics()
    assert faults.count("throttle", "sts", "AssumeRole") == 3
    assert_failing_not_compliant(failing, VICTIM, "throttled")
    assert posture_success(recovered, VICTIM) == 1.0
    assert sample(recovered, "aws_root_exporter_collector_errors_total", account_id=VICTIM, collector="posture", reason="throttled") == 1.0
