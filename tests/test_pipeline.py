"""End to end with the real binaries: sandbox organization -> exporter -> Prometheus loading
`alerts/` -> Alertmanager loading `alerts/alertmanager.example.yml` -> a webhook receiver here.

Intervals are compressed (1 s scrape and evaluation, Alertmanager `group_wait: 0s`); the rules,
routes and receivers are the shipped ones. Each test gets a fresh sandbox, exporter, Prometheus
and Alertmanager (about 7 s of start-up: Prometheus scrapes a new target after ~5.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from exporter.sandbox import demo_stack
from exporter.sandbox.demo_stack import DemoStack, WebhookReceiver
from exporter.sandbox import Sandbox

from exporter.sandbox.records import make_record, management_call_record

from .conftest import ROOT, report_measurement, running_exporter, sandbox_settings
from .scenario_expect import expected_error

ARTIFACTS = ROOT / "test-artifacts"
PAGER, TICKETS = "pager", "security-tickets"
DASHBOARDS = ROOT / "dashboards"


def _load_queries():
    import importlib.util

    spec = importlib.util.spec_from_file_location("aws_root_dashboard_queries_e2e", DASHBOARDS / "queries.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dashboard_queries()


@pytest.fixture(autouse=True)
def _binaries() -> None:
    assert demo_stack.available(), "prometheus and prometheus-alertmanager are not installed (make system-packages)"


@dataclass
class Pipeline:
    sandbox: Sandbox
    exporter: Any  # conftest.RunningExporter
    stack: DemoStack
    hooks: WebhookReceiver

    async def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
        """Poll `check` (without blocking the exporter's loop) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; notifications: "
                    f"{[(n.receiver, [a['labels'] for a in n.alerts]) for n in self.hooks.received()]}\n"
                    f"prometheus alerts: {await asyncio.to_thread(self.stack.alerts)}"
                )
            await asyncio.sleep(interval)

    async def query(self, expr: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.stack.query, expr)

    async def wait_for_rules_evaluated(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rules = await asyncio.to_thread(self.stack.rules_status)
            if all(r["health"] != "unknown" for r in rules):
                return
            assert time.monotonic() < deadline, rules
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def pipeline(
    sandbox: Sandbox, for_overrides: dict[str, str] | None = None, config_file: Path | None = None, **settings: Any
) -> AsyncIterator[Pipeline]:
    # All three activity sources of the sandbox, polled as often as the settings allow.
    settings.setdefault("posture_interval_seconds", 600)
    settings.setdefault("eventbridge_queue_url", sandbox.events_queue_url)
    settings.setdefault("s3_trail_queue_url", sandbox.trail_queue_url)
    settings.setdefault("sqs_wait_seconds", 1)
    settings.setdefault("lookup_events_interval_seconds", 5)
    # An account whose member role cannot be assumed is blind, and AwsRootMonitoringBlind
    # pages for it as it must (tests/test_sandbox_proven.py); these tests follow root
    # activity's alerts, whose receivers must get nothing else.
    settings.setdefault("exclude_account_ids", [a.id for a in sandbox.scenario.all_accounts if expected_error(a) == "assume_role_failed"])
    # With a config file, a reload reads it again (the other settings stay as given here).
    load = (lambda: sandbox_settings(sandbox, config_file, **settings)) if config_file else None
    async with running_exporter(sandbox_settings(sandbox, config_file, **settings), load) as exporter:
        await exporter.wait_for_sweeps(1)
        with WebhookReceiver() as hooks:
            stack = DemoStack(
                exporter.url,
                webhook_url=hooks.url,
                scrape_interval="1s",
                evaluation_interval="1s",
                group_wait="0s",
                group_interval="1s",
                for_overrides=for_overrides,
            )
            await asyncio.to_thread(stack.start)
            try:
                await asyncio.to_thread(stack.wait_for_target_up)
                yield Pipeline(sandbox, exporter, stack, hooks)
            finally:
                await asyncio.to_thread(stack.stop)


def report(record_property: Callable[[str, Any], None], name: str, seconds: float) -> None:
    """Keep a measured time: in the run's "measurements" summary, the JUnit XML and
    test-artifacts/time-to-alert.txt."""
    line = f"time to alert, {name}: {seconds:.2f} s"
    report_measurement(line)
    record_property(name.replace(" ", "_"), round(seconds, 3))
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "time-to-alert.txt").open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")


# -- posture ---------------------------------------------------------------------------------


async def test_posture_warning_reaches_only_the_tickets_receiver(sandbox, record_property) -> None:
    # AwsRootMfaDisabled waits 15 m in the shipped rules; here it fires at once.
    async with pipeline(sandbox, for_overrides={"AwsRootMfaDisabled": "0s"}) as p:
        # dev-sandbox's root has a password and no MFA in the scenario.
        _, alert = (await p.wait_for(
            "AwsRootMfaDisabled for 210000000003 at security-tickets",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootMfaDisabled", account_id="210000000003"),
        ))[0]
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["account_name"] == "dev-sandbox"
        assert alert["labels"]["ou_name"] == "Dev"
        assert alert["annotations"]["description"] == (
            "The root user of account 210000000003 (dev-sandbox) holds credentials but has no MFA device."
        )
        assert alert["annotations"]["runbook_url"].endswith("/alerts/runbook.md#awsrootmfadisabled")

        # A change while running: prod-payments loses its MFA device; the next sweep opens a ticket.
        assert not p.hooks.alerts(alertname="AwsRootMfaDisabled", account_id="210000000001")
        p.sandbox.root("210000000001").mfa_devices.clear()
        started = time.monotonic()
        await p.exporter.exporter.sweeper.sweep()
        note, alert = (await p.wait_for(
            "AwsRootMfaDisabled for 210000000001",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootMfaDisabled", account_id="210000000001"),
        ))[0]
        assert alert["labels"]["account_name"] == "prod-payments"
        report(record_property, "posture change (sweep) to ticket", note.received_monotonic - started)

        # Nothing of this pages: the pager got no notification at all.
        await asyncio.sleep(2)
        assert p.hooks.received(PAGER) == []
        expected = {"210000000001", "210000000003", "210000000004", "210000000013"}
        assert {a["labels"]["account_id"] for _, a in p.hooks.alerts(alertname="AwsRootMfaDisabled")} == expected
        # Every rule of alerts/ evaluates without error against the real exporter.
        bad = [(r["name"], r.get("lastError")) for r in await asyncio.to_thread(p.stack.rules_status) if r["health"] != "ok"]
        assert bad == []


# -- root activity ---------------------------------------------------------------------------


def queue_drained(sandbox: Sandbox) -> Callable[[], bool]:
    """True once the exporter has received and deleted every message of both queues."""
    sqs = sandbox.client("sqs")

    def check() -> bool:
        for url in (sandbox.events_queue_url, sandbox.trail_queue_url):
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            if any(int(v) for v in attributes.values()):
                return False
        return True

    return check


async def test_root_console_login_pages_with_account_and_event_details(sandbox, record_property) -> None:
    async with pipeline(sandbox) as p:
        await p.wait_for_rules_evaluated()
        record = make_record("console-login", "210000000003", mfa=False, source_ip="198.51.100.23")
        injected = time.monotonic()
        sandbox.inject(record)
        note, alert = (await p.wait_for(
            "AwsRootConsoleLogin for 210000000003 at the pager",
            lambda: p.hooks.alerts(PAGER, alertname="AwsRootConsoleLogin", account_id="210000000003"),
            interval=0.01,
        ))[0]
        report(record_property, "root console login, injection to pager webhook", note.received_monotonic - injected)
        (ARTIFACTS / "root-login-pager-notification.json").write_text(json.dumps(note.payload, indent=2))

        assert alert["labels"] == {
            "alertname": "AwsRootConsoleLogin",
            "account_id": "210000000003",
            "account_name": "dev-sandbox",
            "ou_name": "Dev",
            "severity": "critical",
        }
        description = alert["annotations"]["description"]
        assert description.startswith(
            "The root user of account 210000000003 (dev-sandbox) signed in to the AWS console in the last 10m."
        ), description
        assert "Latest root record: ConsoleLogin (signin.amazonaws.com, outcome success)" in description
        assert "from source IP 198.51.100.23, MFA used: false." in description
        assert alert["annotations"]["summary"] == "The root user signed in to the AWS console."
        assert note.payload["receiver"] == PAGER and note.payload["status"] == "firing"
        assert note.payload["groupLabels"] == {"account_id": "210000000003", "alertname": "AwsRootConsoleLogin"}

        # It pages and only pages: no ticket for it, and no other alert for the account.
        await asyncio.sleep(2)
        assert p.hooks.alerts(TICKETS, alertname="AwsRootConsoleLogin") == []
        assert [a["labels"]["alertname"] for _, a in p.hooks.alerts(PAGER)] == ["AwsRootConsoleLogin"]


async def test_non_root_logins_produce_nothing(sandbox, record_property) -> None:
    async with pipeline(sandbox) as p:
        await p.wait_for_rules_evaluated()
        sandbox.inject(make_record("iam-user-login", "210000000003"))
        sandbox.inject(make_record("iam-user-named-root-login", "210000000003", source_ip="198.51.100.66"))
        await p.wait_for("both queues drained by the exporter", queue_drained(sandbox), timeout=30, interval=0.2)
        await asyncio.sleep(3)  # three more scrapes and evaluations
        families = await p.exporter.metrics()
        logins = [s for s in families["aws_root_console_logins"].samples
                  if s.name.endswith("_total") and s.labels["account_id"] == "210000000003"]
        assert logins == [], "no root login counted: its counter has no series before its first event"
        assert families["aws_root_console_logins_90d"].samples, "the account is known (its login count is there)"
        assert "aws_root_last_event_info" not in {s.name for f in families.values() for s in f.samples
                                                  if s.labels.get("account_id") == "210000000003"}
        assert p.hooks.received(PAGER) == []
        activity = {"AwsRootConsoleLogin", "AwsRootApiActivity", "AwsRootPasswordActivity", "AwsRootBreakGlassActivity",
                    "AwsRootBreakGlassLogin"}
        assert [a for _, a in p.hooks.alerts() if a["labels"]["alertname"] in activity] == []

        # The pipeline was live all along: a root login after them pages, and is the only page.
        injected = time.monotonic()
        sandbox.inject(make_record("console-login", "210000000001"))
        note, _ = (await p.wait_for(
            "the sentinel root login at the pager",
            lambda: p.hooks.alerts(PAGER, alertname="AwsRootConsoleLogin", account_id="210000000001"),
            interval=0.01,
        ))[0]
        report(record_property, "root console login after non-root logins", note.received_monotonic - injected)
        assert [a["labels"]["account_id"] for _, a in p.hooks.alerts(PAGER)] == ["210000000001"]


async def test_password_recovery_pages_and_repeated_failed_logins_open_a_ticket(sandbox) -> None:
    """aws_root_signin_events_total and aws_root_assume_root_calls_total are created by their
    first event (not at 0): the alerts must still see that first event."""
    async with pipeline(sandbox) as p:
        await p.wait_for_rules_evaluated()
        sandbox.inject(make_record("password-recovery", "210000000006"))
        _, alert = (await p.wait_for(
            "AwsRootPasswordActivity for 210000000006 at the pager",
            lambda: p.hooks.alerts(PAGER, alertname="AwsRootPasswordActivity", account_id="210000000006"),
        ))[0]
        assert alert["labels"]["event_name"] == "PasswordRecoveryRequested"
        assert alert["labels"]["account_name"] == "security-tooling"

        # sts:AssumeRoot from the management account into prod-web with a privileged task
        # policy: a ticket (warning), no page.
        call = _fixture_record("assume_root_call.json", eventTime=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                               eventID=str(uuid.uuid4()), recipientAccountId="123456789012", awsRegion="us-east-1")
        call["requestParameters"]["targetPrincipal"] = "210000000002"
        call["userIdentity"]["accountId"] = "123456789012"
        sandbox.inject(call)
        _, alert = (await p.wait_for(
            "AwsRootAssumeRootUsed for 210000000002 at security-tickets",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootAssumeRootUsed", account_id="210000000002"),
        ))[0]
        assert alert["labels"]["task_policy"] == "S3UnlockBucketPolicy"

        # Two failed root sign-ins stay under the threshold (3 in 1 h); the third opens a ticket.
        for _ in range(2):
            sandbox.inject(make_record("console-login-failure", "210000000002", source_ip="192.0.2.9"))
        await p.wait_for("both queues drained by the exporter", queue_drained(sandbox), timeout=30, interval=0.2)
        await asyncio.sleep(3)
        assert p.hooks.alerts(alertname="AwsRootConsoleLoginFailures") == []
        sandbox.inject(make_record("console-login-failure", "210000000002", source_ip="192.0.2.9"))
        _, alert = (await p.wait_for(
            "AwsRootConsoleLoginFailures for 210000000002 at security-tickets",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootConsoleLoginFailures", account_id="210000000002"),
        ))[0]
        assert alert["annotations"]["description"].startswith("3 failed root console sign-ins for account 210000000002 (prod-web)")
        assert "from source IP 192.0.2.9" in alert["annotations"]["description"]
        # A failed sign-in is not a login: nothing pages for prod-web.
        await asyncio.sleep(2)
        assert [a["labels"]["alertname"] for _, a in p.hooks.alerts(PAGER)] == ["AwsRootPasswordActivity"]


async def test_approved_break_glass_reaches_only_the_tickets_receiver(sandbox, record_property) -> None:
    now = datetime.now(timezone.utc)
    window = {"account_id": "210000000001", "start": now - timedelta(hours=1), "end": now + timedelta(hours=1), "ticket": "CHG-1"}
    async with pipeline(sandbox, break_glass_windows=[window]) as p:
        await p.wait_for_rules_evaluated()
        injected = time.monotonic()
        sandbox.inject(make_record("break-glass", "210000000001", source_ip="198.51.100.44"))
        note, alert = (await p.wait_for(
            "AwsRootBreakGlassActivity at security-tickets",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootBreakGlassActivity", account_id="210000000001"),
            interval=0.01,
        ))[0]
        report(record_property, "approved break-glass, injection to ticket webhook", note.received_monotonic - injected)
        assert alert["labels"]["severity"] == "info"
        assert alert["labels"]["category"] == "break_glass"
        assert alert["labels"]["account_name"] == "prod-payments"
        assert "inside an approved break-glass window" in alert["annotations"]["description"]
        # The ticket of the window, from the exporter's aws_root_break_glass_window_* series.
        assert "Approved by: ticket CHG-1 (window until " in alert["annotations"]["description"], alert["annotations"]["description"]
        assert "DeleteAccessKey (iam.amazonaws.com, outcome success)" in alert["annotations"]["description"]
        assert "source IP 198.51.100.44" in alert["annotations"]["description"]
        # Several evaluations later, still nothing at the pager (a page would follow the same
        # evaluation within a second: the critical route has group_wait 0s).
        await asyncio.sleep(3)
        assert p.hooks.received(PAGER) == []
        assert p.hooks.alerts(alertname="AwsRootApiActivity") == []

        # The same root-only call in an account without a window pages as root API activity.
        sandbox.inject(make_record("break-glass", "210000000003"))
        _, alert = (await p.wait_for(
            "AwsRootApiActivity for 210000000003 at the pager",
            lambda: p.hooks.alerts(PAGER, alertname="AwsRootApiActivity", account_id="210000000003"),
        ))[0]
        assert alert["labels"]["category"] == "break_glass"
        assert [a["labels"]["account_id"] for _, a in p.hooks.alerts(PAGER)] == ["210000000003"]


async def test_root_session_token_evasion_pages_and_assume_root_sessions_do_not(sandbox, record_property) -> None:
    """Issue 12. A root GetSessionToken session (an ASIA key minted from a root access key)
    changing a bucket policy looks exactly like an sts:AssumeRoot S3UnlockBucketPolicy
    session: only the AssumeRoot record that issued the key tells them apart. The evasion
    pages AwsRootApiActivity once its evidence wait ends; an unlock session whose AssumeRoot
    record arrives after the session's record, and an audit session, page nobody."""
    evader, unlocked, audited = "210000000003", "210000000001", "210000000002"
    async with pipeline(sandbox, assume_root_evidence_wait_seconds=3) as p:
        await p.wait_for_rules_evaluated()
        unlock_key, audit_key = "ASIA" + "U" * 16, "ASIA" + "A" * 16
        # The unlock session's record first, its AssumeRoot record after it.
        sandbox.inject(make_record("root-temporary-key-call", unlocked, access_key_id=unlock_key, event_name="DeleteBucketPolicy"))
        sandbox.inject(make_record("assume-root", "123456789012", target_account_id=audited, access_key_id=audit_key,
                                   task_policy="IAMAuditRootUserCredentials"))
        sandbox.inject(make_record("root-temporary-key-call", audited, access_key_id=audit_key, event_name="ListMFADevices"))
        injected = time.monotonic()
        sandbox.inject(make_record("root-temporary-key-call", evader, source_ip="198.51.100.99"))
        sandbox.inject(make_record("assume-root", "123456789012", target_account_id=unlocked, access_key_id=unlock_key))
        note, alert = (await p.wait_for(
            "AwsRootApiActivity for the session-token evasion at the pager",
            lambda: p.hooks.alerts(PAGER, alertname="AwsRootApiActivity", account_id=evader),
            interval=0.01,
        ))[0]
        report(record_property, "root session-token evasion, injection to pager webhook (3 s evidence wait)",
               note.received_monotonic - injected)
        assert alert["labels"]["category"] == "break_glass"
        assert "PutBucketPolicy (s3.amazonaws.com, outcome success)" in alert["annotations"]["description"]
        assert "source IP 198.51.100.99" in alert["annotations"]["description"]

        await p.wait_for("both queues drained by the exporter", queue_drained(sandbox), timeout=30, interval=0.2)
        await p.exporter.exporter.activity.poll_lookup_events()
        assert p.exporter.exporter.activity.store.pending_count() == 0
        await asyncio.sleep(3)  # three more scrapes and evaluations
        families = await p.exporter.metrics()
        for account in (unlocked, audited):
            calls = [s for s in families["aws_root_api_calls"].samples if s.name.endswith("_total") and s.labels["account_id"] == account]
            assert calls == [], account  # not one root API call counted: no series at all
            assert sample_value(families, "aws_root_assumed_root_calls_total", account_id=account, outcome="success") == 1.0
        assert [a["labels"]["account_id"] for _, a in p.hooks.alerts(PAGER)] == [evader]
        # The unlock session is announced as what it is, a privileged task, on the ticket route.
        (_, opened), = await p.wait_for(
            "AwsRootAssumeRootUsed for the unlock session",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootAssumeRootUsed", account_id=unlocked),
        )
        assert opened["labels"]["task_policy"] == "S3UnlockBucketPolicy"
        assert p.hooks.alerts(alertname="AwsRootAssumeRootUsed", account_id=audited) == []


async def test_member_primary_email_change_raises_recovery_path_alert(sandbox, record_property) -> None:
    async with pipeline(sandbox) as p:
        await p.wait_for_rules_evaluated()
        injected = time.monotonic()
        sandbox.inject(make_record("primary-email-update", "123456789012", target_account_id="210000000003"))
        note, alert = (await p.wait_for(
            "AwsRootRecoveryPathChanged for 210000000003",
            lambda: p.hooks.alerts(alertname="AwsRootRecoveryPathChanged", account_id="210000000003"),
            interval=0.01,
        ))[0]
        report(record_property, "member primary email change, injection to ticket webhook", note.received_monotonic - injected)
        assert note.payload["receiver"] == TICKETS
        assert alert["labels"]["signal"] == "primary_email_updated" and alert["labels"]["outcome"] == "success"
        assert alert["labels"]["account_name"] == "dev-sandbox"
        # Not root activity: nothing pages, no root record is shown for the account.
        await asyncio.sleep(2)
        assert p.hooks.received(PAGER) == []
        families = await p.exporter.metrics()
        assert [s for s in families["aws_root_last_event_info"].samples if s.labels.get("account_id") == "210000000003"] == []


def sample_value(families: dict, name: str, **labels: str) -> float | None:
    base = name[: -len("_total")] if name.endswith("_total") else name
    for s in families[base].samples:
        if s.name == name and s.labels == labels:
            return s.value
    return None


async def test_approved_break_glass_console_login_reaches_only_the_tickets_receiver(sandbox, record_property) -> None:
    """The first step of a break-glass procedure, a root console login inside the approved
    window, opens a ticket and pages nobody; a login just after a window's end pages."""
    now = datetime.now(timezone.utc)
    windows = [
        {"account_id": "210000000001", "start": now - timedelta(hours=1), "end": now + timedelta(hours=1), "ticket": "CHG-1"},
        # Ended a minute ago: the login below comes just too late.
        {"account_id": "210000000002", "start": now - timedelta(hours=1), "end": now - timedelta(minutes=1), "ticket": "CHG-2"},
    ]
    async with pipeline(sandbox, break_glass_windows=windows) as p:
        await p.wait_for_rules_evaluated()
        injected = time.monotonic()
        sandbox.inject(make_record("console-login", "210000000001", source_ip="198.51.100.45"))
        note, alert = (await p.wait_for(
            "AwsRootBreakGlassLogin at security-tickets",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootBreakGlassLogin", account_id="210000000001"),
            interval=0.01,
        ))[0]
        report(record_property, "approved break-glass console login, injection to ticket webhook", note.received_monotonic - injected)
        assert alert["labels"]["severity"] == "info"
        assert alert["labels"]["account_name"] == "prod-payments"
        assert note.payload["receiver"] == TICKETS and note.payload["status"] == "firing"
        description = alert["annotations"]["description"]
        assert "signed in to the AWS console inside an approved break-glass window" in description, description
        assert "Latest root record: ConsoleLogin (signin.amazonaws.com, outcome success)" in description
        assert "source IP 198.51.100.45" in description
        # Only the account's own window is named (CHG-2 is 210000000002's).
        assert "Approved by: ticket CHG-1 (window until " in description, description
        assert "CHG-2" not in description
        families = await p.exporter.metrics()
        approved = [s.value for s in families["aws_root_console_logins"].samples
                    if s.name.endswith("_total") and s.labels["account_id"] == "210000000001" and s.labels["outcome"] == "success"
                    and s.labels["approved"] == "true"]
        assert sum(approved) == 1
        # Several evaluations later, still nothing at the pager (a page would follow the same
        # evaluation within a second: the critical route has group_wait 0s).
        await asyncio.sleep(3)
        assert p.hooks.received(PAGER) == []
        assert p.hooks.alerts(alertname="AwsRootConsoleLogin") == []

        # A root login in an account whose window ended a minute ago pages.
        sandbox.inject(make_record("console-login", "210000000002"))
        _, alert = (await p.wait_for(
            "AwsRootConsoleLogin for 210000000002 at the pager",
            lambda: p.hooks.alerts(PAGER, alertname="AwsRootConsoleLogin", account_id="210000000002"),
        ))[0]
        assert alert["labels"]["severity"] == "critical"
        assert [a["labels"]["account_id"] for _, a in p.hooks.alerts(PAGER)] == ["210000000002"]
        assert {a["labels"]["account_id"] for _, a in p.hooks.alerts(alertname="AwsRootBreakGlassLogin")} == {"210000000001"}


# -- dashboards ------------------------------------------------------------------------------

QUERIES = _load_queries()


async def wait_for_scrapes(p: Pipeline, count: int = 3, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    expr = f'count_over_time(up{{job="{demo_stack.JOB}"}}[1m]) >= {count}'
    while not (await p.query(expr))["data"]["result"]:
        assert time.monotonic() < deadline, f"fewer than {count} scrapes after {timeout}s"
        await asyncio.sleep(0.2)


def _fixture_record(name: str, **changes: Any) -> dict[str, Any]:
    record = json.loads((ROOT / "tests" / "fixtures" / "cloudtrail" / name).read_text())
    record.update(changes)
    return record


def every_kind_of_root_activity(sandbox: Sandbox) -> None:
    """At least one record for every activity series the dashboards show."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for kind, account in (
        ("console-login", "210000000003"),
        ("console-login-failure", "210000000003"),
        ("password-recovery", "210000000003"),
        ("api-call", "210000000013"),
        ("console-login", "210000000001"),  # inside the approved window
        ("break-glass", "210000000001"),  # inside the approved window
        ("break-glass", "210000000013"),  # outside any window
    ):
        sandbox.inject(make_record(kind, account))  # three sources: duplicates are counted too
    # Centralized root access: an sts:AssumeRoot call from the management account into
    # prod-web, then an action in that privileged session.
    call = _fixture_record("assume_root_call.json", eventTime=now, eventID=str(uuid.uuid4()), recipientAccountId="123456789012", awsRegion="us-east-1")
    call["requestParameters"]["targetPrincipal"] = "210000000002"
    call["userIdentity"]["accountId"] = "123456789012"
    sandbox.inject(call)
    session = _fixture_record("assumed_root_session_marker.json", eventTime=now, eventID=str(uuid.uuid4()), recipientAccountId="210000000002", awsRegion="us-east-1")
    session["userIdentity"].update(accountId="210000000002", principalId="210000000002", arn="arn:aws:iam::210000000002:root")
    sandbox.inject(session)
    # An administrator moves a member root's recovery email.
    sandbox.inject(make_record("primary-email-update", "123456789012", target_account_id="210000000003"))
    # A message no source can use: counted as rejected.
    sandbox.client("sqs").send_message(QueueUrl=sandbox.events_queue_url, MessageBody="not an EventBridge event")
    # Someone stops the organization trail (only its record: the trail keeps logging).
    sandbox.inject(management_call_record("123456789012", "cloudtrail.amazonaws.com", "StopLogging", {"name": "organization-trail"}))


async def test_every_dashboard_query_runs_on_prometheus_scraping_the_exporter(sandbox) -> None:
    now = datetime.now(timezone.utc)
    window = {"account_id": "210000000001", "start": now - timedelta(hours=1), "end": now + timedelta(hours=1), "ticket": "CHG-1"}
    # assume_root_audit: per-device MFA series come from sts:AssumeRoot audits.
    # The account whose member role cannot be assumed is kept: the Coverage row's blind list.
    async with pipeline(sandbox, assume_root_audit=True, break_glass_windows=[window], exclude_account_ids=[]) as p:
        await wait_for_scrapes(p)  # counters have a first sample in Prometheus
        # Something for every counter to increase by: root activity of every kind, and
        # another sweep in which IAM throttles prod-web (collector and API errors).
        every_kind_of_root_activity(sandbox)
        p.sandbox.root("210000000002").throttle_iam = True
        await p.exporter.exporter.sweeper.sweep()
        # An API error series is born at its first failure (no increase yet): once Prometheus
        # has it, a second throttled sweep makes it increase.
        scraped = 'aws_root_exporter_aws_request_errors_total{operation="iam:GetAccountSummary",reason="throttled"}'
        deadline = time.monotonic() + 30
        while not (await p.query(scraped))["data"]["result"]:
            assert time.monotonic() < deadline, f"{scraped} not scraped within 30 s"
            await asyncio.sleep(0.2)
        await p.exporter.exporter.sweeper.sweep()
        await p.wait_for("both queues drained by the exporter", queue_drained(sandbox), timeout=30, interval=0.2)
        families = await p.exporter.metrics()
        assert sum(s.value for s in families["aws_root_exporter_events_rejected"].samples if s.name.endswith("_total")) >= 1
        await asyncio.sleep(2.5)  # scraped and evaluated at 1 s
        await p.wait_for_rules_evaluated()
        errors, empty = [], []
        for uid, title, expr in QUERIES:
            result = await p.query(expr)
            if result.get("status") != "success":
                errors.append((uid, title, result.get("error")))
            elif not result["data"]["result"]:
                empty.append((uid, title, expr))
        assert errors == []
        assert empty == [], "\n".join(map(str, empty))
        assert len(QUERIES) >= 40
        # The seed KPIs on Prometheus agree with what the exporter exposes, recomputed here
        # from the posture series (member roots with no password, key or certificate).
        families = await p.exporter.metrics()

        def rows(name: str) -> list[Any]:
            return [s for s in families[name].samples if s.name == name]

        queries = {title: expr for _, title, expr in QUERIES}

        async def panel(title: str) -> float:
            (result,) = (await p.query(queries[title]))["data"]["result"]
            return float(result["value"][1])

        this_quarter = sum(s.value for s in rows("aws_root_console_logins_quarter") if s.labels["quarter"] == "current")
        assert this_quarter >= 1  # the console login injected above
        assert await panel("Root console logins, this quarter") == this_quarter
        members = {s.labels["account_id"] for s in rows("aws_root_account_info") if s.labels["management"] == "false"}
        absent = {s.labels["account_id"] for s in rows("aws_root_password_state") if s.labels["state"] == "absent" and s.value == 1}
        holding = {s.labels["account_id"] for s in rows("aws_root_access_keys") + rows("aws_root_signing_certificates") if s.value > 0}
        read = {s.labels["account_id"] for s in rows("aws_root_exporter_collector_success") if s.labels["collector"] == "posture" and s.value == 1}
        removed = (members & absent & read) - holding
        assert await panel("Member roots without credentials") == pytest.approx(len(removed) / len(members))
        assert await panel("Member roots still holding credentials") == len(members - removed)
        report_measurement(f"sandbox burn-down: {len(removed)} of {len(members)} member roots without credentials; "
                           f"{this_quarter:.0f} root console logins this quarter")
