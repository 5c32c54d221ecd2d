"""The series budget (README.md, Metrics: Series budget), counted on the real `/metrics` of
the sandbox organization with the default settings and every control evaluated: at most 25 series per member account
in steady state (healthy or failing, no root activity), at most 40 for a member with root activity of every
kind. The management account and the organization-level series are reported, not capped.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import datetime, timedelta, timezone

from exporter.sandbox import Sandbox
from exporter.sandbox.records import make_record
from exporter.sandbox.scenario import Scenario

from .conftest import report_measurement, running_exporter, sample, sandbox_settings
from .scenario_expect import collected, expected_error

STEADY_BUDGET = 25
ACTIVE_BUDGET = 40
MANAGEMENT = "123456789012"
ACTIVE = "210000000003"
_ACCOUNT_ID = re.compile(r'[{,]account_id="(\d{12})"')


def series_per_account(text: str) -> tuple[Counter[str], int, Counter[tuple[str, str]]]:
    """Series by account_id, series without one, and series by (account, metric name)."""
    per_account: Counter[str] = Counter()
    by_name: Counter[tuple[str, str]] = Counter()
    other = 0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _ACCOUNT_ID.search(line)
        if found is None:
            other += 1
            continue
        per_account[found.group(1)] += 1
        by_name[(found.group(1), line.split("{", 1)[0])] += 1
    return per_account, other, by_name


def _breakdown(by_name: Counter[tuple[str, str]], account: str) -> str:
    return ", ".join(f"{name} {n}" for (aid, name), n in sorted(by_name.items()) if aid == account)


async def test_series_per_member_account_within_budget(sandbox: Sandbox, default_scenario: Scenario) -> None:
    now = datetime.now(timezone.utc)
    settings = sandbox_settings(
        sandbox,
        # The defaults but for how often LookupEvents polls (a test cannot wait 60 s), and
        # with every optional control evaluated (root_email_domain_allowed needs the setting).
        lookup_events_enabled=True,
        lookup_events_interval_seconds=5,
        allowed_root_email_domains=["example.com"],
        break_glass_windows=[{"account_id": ACTIVE, "start": now - timedelta(hours=1), "end": now - timedelta(minutes=3), "ticket": "CHG-1"}],
    )
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        # Steady state: every healthy member read by LookupEvents too.
        async with asyncio.timeout(60):
            while True:
                families = await exporter.metrics()
                if all(sample(families, "aws_root_exporter_collector_success", account_id=a.id, collector="lookup_events") == 1.0
                       for a in default_scenario.all_accounts if collected(a) and expected_error(a) is None):
                    break
                await asyncio.sleep(0.5)
        steady, steady_other, steady_names = series_per_account(await exporter.metrics_text())
        # The window is configuration, not collection: 3 series per configured window.
        steady[ACTIVE] -= 3

        # Every kind of root activity in one member: inside the window (approved) and after it.
        inside = now - timedelta(minutes=10)
        for kind in ("console-login", "console-login-failure", "api-call", "break-glass"):
            sandbox.inject(make_record(kind, ACTIVE, when=inside), eventbridge=False, s3=False)
        after = now - timedelta(minutes=1)
        for kind in ("console-login", "console-login-failure", "password-recovery", "api-call", "break-glass", "root-temporary-key-call"):
            sandbox.inject(make_record(kind, ACTIVE, when=after, mfa=False), eventbridge=False, s3=False)
        async with asyncio.timeout(60):
            while True:
                families = await exporter.metrics()
                if sample(families, "aws_root_signin_events_total", account_id=ACTIVE, event_name="PasswordRecoveryRequested", outcome="success"):
                    break
                await asyncio.sleep(0.5)
        active, active_other, active_names = series_per_account(await exporter.metrics_text())
        active[ACTIVE] -= 3

    members = [a for a in default_scenario.all_accounts if collected(a) and a.id != MANAGEMENT]
    failing = [a.id for a in members if expected_error(a) is not None]
    assert failing, "the scenario must hold failing members for the budget to cover them"
    assert len(members) >= 15
    # A member whose root password or access key was used (the credential report says so)
    # has had root activity: its last-use series count against the activity budget.
    used = {aid for (aid, name) in steady_names if name.endswith("_last_used_timestamp_seconds")}
    assert used and len(used) < len(members), "the scenario must hold members with and without root use"
    over = {a.id: steady[a.id] for a in members if steady[a.id] > (ACTIVE_BUDGET if a.id in used else STEADY_BUDGET)}
    assert not over, "over the steady budget: " + "; ".join(f"{a} {n} ({_breakdown(steady_names, a)})" for a, n in over.items())
    assert all(steady[a.id] > 0 for a in members), "every collected member shows series"
    # Every control evaluated in every healthy member: the four credential controls and the
    # two recovery controls count against the budget.
    assert {steady_names[(a.id, "aws_root_control_compliant")] for a in members if a.id not in failing} == {6}
    assert active[ACTIVE] > steady[ACTIVE], "the activity must show"
    assert active[ACTIVE] <= ACTIVE_BUDGET, f"{active[ACTIVE]} series after activity: {_breakdown(active_names, ACTIVE)}"
    # Activity in one account adds no series to another.
    assert {a.id: active[a.id] for a in members if a.id != ACTIVE} == {a.id: steady[a.id] for a in members if a.id != ACTIVE}

    healthy = [steady[a.id] for a in members if a.id not in failing and a.id not in used]
    report_measurement(
        f"series budget: members in steady state {min(healthy)}-{max(healthy)} series (budget {STEADY_BUDGET}), "
        f"failing members {sorted(steady[a] for a in failing)}, members with a used root password or key "
        f"{sorted(steady[a] for a in used)}, management {steady[MANAGEMENT]}, "
        f"{steady_other} without account_id; the member with every kind of root activity {active[ACTIVE]} (budget {ACTIVE_BUDGET})"
    )


# /metrics at 10,000 accounts at most 20 MB plain (README, Series budget; docs/performance.md
# measures it with the benchmark), with every optional control evaluated.
BYTES_BUDGET_ACCOUNTS = 10_000
BYTES_BUDGET = 20_000_000


def test_metrics_bytes_at_10000_accounts_within_budget() -> None:
    """The benchmark's organization (fixed-width ids, names and OUs, so an account's lines
    are as long at 100 accounts as at 10,000) with `allowed_root_email_domains` set: the
    exposition's bytes without an account, plus the management account's, plus the longest
    member's times the other 9,999, is at most 20 MB."""
    import urllib.request

    from benchmarks.run import ExporterProcess, FakeAwsProcess

    fake = FakeAwsProcess(100, 0.0)
    exporter = None
    try:
        exporter = ExporterProcess(fake.url, allowed_root_email_domains='["example.com"]')
        swept = exporter.sweep()
        with urllib.request.urlopen(exporter.metrics_url, timeout=60) as response:
            text = response.read().decode()
    finally:
        if exporter is not None:
            exporter.stop()
        fake.stop()
    assert swept["collected"] == 100 and swept["failed"] == 0, swept
    management = swept["account_ids"][0]
    per_account: Counter[str] = Counter()
    other = 0
    for line in text.splitlines(keepends=True):
        found = None if line.startswith("#") else _ACCOUNT_ID.search(line)
        if found is None:
            other += len(line.encode())
        else:
            per_account[found.group(1)] += len(line.encode())
    assert text.count('control="root_email_domain_allowed"') == 100, "the configuration under test evaluates the email control"
    member = max(n for aid, n in per_account.items() if aid != management)
    estimate = other + per_account[management] + (BYTES_BUDGET_ACCOUNTS - 1) * member
    report_measurement(
        f"/metrics at {BYTES_BUDGET_ACCOUNTS:,} accounts with allowed_root_email_domains: {estimate / 1e6:.2f} MB estimated "
        f"({member} bytes per member account; budget {BYTES_BUDGET / 1e6:.0f} MB)"
    )
    assert estimate <= BYTES_BUDGET, f"{estimate:,} bytes, {member} per member account"
