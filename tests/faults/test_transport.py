"""Transport faults: throttling storms, server errors, connection resets, requests that hang.

For each: /metrics keeps answering, healthy accounts stay fresh, the failing account shows
`aws_root_exporter_collector_success 0` with the right reason (so AwsRootCollectionFailing fires)
and none of its posture metrics (it must not look compliant).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from exporter.sandbox import Sandbox, Scenario
from exporter.sandbox.faults import FaultInjector

from ..conftest import report_measurement, running_exporter, sample, sandbox_settings
from ..scenario_expect import collected, expected_error

VICTIM = "210000000003"  # dev-sandbox
HEALTHY = ("210000000001", "210000000002", "210000000006")
ACCOUNTS = [VICTIM, *HEALTHY]


def posture_success(families: dict, account: str) -> float | None:
    return sample(families, "aws_root_exporter_collector_success", account_id=account, collector="posture")


# Families that always carry a series for an account whose posture is known.
POSTURE_FAMILIES = ("aws_root_access_keys", "aws_root_signing_certificates", "aws_root_password_state", "aws_root_credentials_present", "aws_root_control_compliant")
# Their series for one collected account: keys and certificates by status (2 + 2), the
# password's current state (1), credentials_present (1), one per control (4 credential
# controls and security_contact_present; root_email_domain_allowed is not configured).
POSTURE_SERIES = 2 + 2 + 1 + 1 + 5


def posture_series(families: dict, account: str) -> list:
    """Every posture series of the account (none when its posture is unknown)."""
    return [s for name in POSTURE_FAMILIES if name in families for s in families[name].samples if s.labels["account_id"] == account]


def errors(families: dict, account: str, reason: str) -> float | None:
    return sample(families, "aws_root_exporter_collector_errors_total", account_id=account, collector="posture", reason=reason)


def assert_failing_not_compliant(families: dict, account: str, reason: str, count: float = 1.0, known_before: bool = False) -> None:
    assert posture_success(families, account) == 0.0
    assert errors(families, account, reason) == count
    others = [s for s in families["aws_root_exporter_collector_errors"].samples if s.labels["account_id"] == account and s.labels["reason"] != reason and s.labels["collector"] == "posture"]
    # An error series appears with its first error: none for a reason that never happened.
    assert others == [], others
    if known_before:
        # The last known posture stays, with success 0 and its old last-success time.
        assert sample(families, "aws_root_control_compliant", account_id=account, control="mfa_enabled") is not None
        return
    # Unknown is never shown as a value: no posture, no control verdict for the account.
    assert posture_series(families, account) == []


def assert_healthy_fresh(families: dict, since: float) -> None:
    for account in HEALTHY:
        assert posture_success(families, account) == 1.0, account
        last = sample(families, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=account, collector="posture")
        assert last is not None and last >= since, account
        assert len(posture_series(families, account)) == POSTURE_SERIES, account


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
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="iam:GetAccountSummary", reason=reason) == 1.0


async def test_throttling_storm_on_half_of_all_iam_requests(sandbox: Sandbox, faults: FaultInjector, default_scenario: Scenario) -> None:
    """Half of every IAM request of every account is throttled: each account ends either
    fresh or failing with reason `throttled`, never half-collected, never another reason."""
    faults.add("throttle", service="iam", share=0.5)
    async with running_exporter(sandbox_settings(sandbox, max_attempts=2)) as exporter:
        await exporter.wait_for_sweeps(1)
        started = time.monotonic()
        families = await exporter.metrics()
        scrape = time.monotonic() - started
    accounts = [s.labels["account_id"] for s in families["aws_root_account_info"].samples]
    assert set(accounts) == {a.id for a in default_scenario.all_accounts if collected(a)}
    # Accounts the scenario breaks on purpose (a denied role, a missing permission).
    broken = {a.id for a in default_scenario.all_accounts if expected_error(a)}
    fresh = failed = 0
    for account in accounts:
        if account in broken:
            continue
        if posture_success(families, account) == 1.0:
            fresh += 1
            assert len(posture_series(families, account)) == POSTURE_SERIES, account
        else:
            failed += 1
            assert_failing_not_compliant(families, account, "throttled")
    throttled = faults.count("throttle", "iam")
    report_measurement(
        f"throttling storm (50% of IAM requests, 2 retries): {throttled} throttled answers, "
        f"{fresh} accounts fresh, {failed} failing with reason throttled, scrape {scrape * 1000:.0f} ms"
    )
    assert throttled >= 10
    assert fresh + failed == len(accounts) - len(broken)
    assert fresh >= 1, "retries must get most calls through a 50% storm"
    assert scrape < 1.0


async def test_request_hanging_past_the_account_time_limit(sandbox: Sandbox, faults: FaultInjector) -> None:
    """One account's IAM call hangs 8 s with a 3 s account limit: the sweep ends at the
    limit, /metrics answers throughout from the previous snapshot, the account shows timeout.

    The limit must leave room for a normal collection on a loaded 2-core machine (with 1.5 s
    the victim's first, fault-free sweep itself timed out under load)."""
    settings = sandbox_settings(sandbox, include_account_ids=ACCOUNTS, account_timeout_seconds=3.0)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        before = await exporter.metrics()
        assert posture_success(before, VICTIM) == 1.0, "precondition: the fault-free sweep collected the victim"
        faults.add("hang", service="iam", operation="GetAccountSummary", account=VICTIM, seconds=8)
        started = time.time()
        sweep = asyncio.create_task(exporter.exporter.sweeper.sweep())
        # A scrape runs in a thread while the sweep runs on the loop: one sent while the task was
        # not done can be answered after the sweep published its snapshot (state.publish), so the
        # task's state says nothing about what a scrape shows; the publication does. Each scrape is
        # bracketed by the published sweep count (read on the loop, where publish runs), and the
        # scrapes go on until the publication.
        latencies, scrapes = [], []
        while exporter.state.sweeps < 2 and not sweep.done():
            published_before = exporter.state.sweeps
            t0 = time.monotonic()
            families = await exporter.metrics()
            latencies.append(time.monotonic() - t0)
            shown = (sample(families, "aws_root_exporter_sweeps_total"), posture_success(families, VICTIM))
            scrapes.append((published_before, exporter.state.sweeps, shown))
            await asyncio.sleep(0.05)
        snapshot = await sweep
        families = await exporter.metrics()
    report_measurement(
        f"hang 8 s, account limit 3 s: sweep {snapshot.sweep_duration:.2f} s; {len(latencies)} scrapes during it, "
        f"slowest {max(latencies) * 1000:.0f} ms"
    )
    assert 2.9 < snapshot.sweep_duration < 6.0
    assert len(latencies) >= 5 and max(latencies) < 0.5
    previous, new = (1.0, 1.0), (2.0, 0.0)  # (sweeps_total, the victim's success): one whole snapshot each
    # Before the publication: the previous complete snapshot. A scrape the publication fell
    # inside may show either whole snapshot, never a mix.
    ended_before = [shown for published_before, published_after, shown in scrapes if published_after == 1]
    straddling = [shown for published_before, published_after, shown in scrapes if published_before == 1 < published_after]
    assert ended_before and set(ended_before) == {previous}, scrapes
    assert set(straddling) <= {previous, new}, scrapes
    assert_failing_not_compliant(families, VICTIM, "timeout", known_before=True)
    assert (sample(families, "aws_root_exporter_sweeps_total"), posture_success(families, VICTIM)) == new
    last = sample(families, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=VICTIM, collector="posture")
    assert last is not None and last < started, "the failing account is not reported as fresh"
    assert_healthy_fresh(families, started)
    assert faults.count("hang") == 1
    # The request cut off by the time limit counts, as a timeout of its operation.
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="iam:GetAccountSummary", reason="timeout") == 1.0
