"""Proof of sight end to end (issue 23, acceptance), with the real binaries: the sandbox
organization making a CloudTrail record of every canary and delivering it through its trails
and EventBridge rules -> the exporter -> Prometheus loading `alerts/` -> Alertmanager loading
`alerts/alertmanager.example.yml` -> a webhook receiver here (tests/test_pipeline.py's
`pipeline()`: 1 s scrape and evaluation, Alertmanager `group_wait: 0s`).

Compressed: canaries every 10 s (the setting's minimum), bounds of seconds instead of
minutes, the sandbox delivering each path after a second or two, configuration checks every
5 s. A canary path pages at most `bound + 2 x canary_interval_seconds` after its last canary
(README, Proof of sight), plus the pipeline's own latency (SLACK); a check pages at most one
check interval after the change. Each time to page is measured and reported.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from exporter.sandbox import MANAGEMENT_ACCOUNT_ID, Sandbox, Scenario
from exporter.sandbox import demo_stack
from exporter.sandbox.records import make_record

from .conftest import ROOT, report_measurement
from .test_pipeline import PAGER, Pipeline, pipeline, queue_drained, report

REGIONS = ["us-east-1", "eu-west-1"]
SOURCES = ("eventbridge_sqs", "s3_trail", "lookup_events")
# Seconds after the call each path delivers its record (the scenario's `monitoring.delays`).
DELAYS = {"eventbridge_sqs": 1.0, "s3_trail": 2.0, "lookup_events": 2.0}
INTERVAL = 10.0
# Each bound leaves room for its path's delay, the exporter's polling (SQS long poll 1 s,
# LookupEvents every 5 s) and a loaded machine, so that a quiet path never flaps.
BOUNDS = {"eventbridge_sqs": 8.0, "s3_trail": 10.0, "lookup_events": 15.0}
CHECKS_INTERVAL = 5.0
POSTURE_INTERVAL = 15.0
# Scrape (1 s) + evaluation (1 s) + Alertmanager (group_wait 0 s, group_interval 1 s) + load.
SLACK = 5.0
BLIND, TAMPERED, REJECTED = "AwsRootMonitoringBlind", "AwsRootMonitoringTampered", "AwsRootActivityRecordRejected"
ROOT_ACTIVITY = {"AwsRootConsoleLogin", "AwsRootApiActivity", "AwsRootPasswordActivity", "AwsRootBreakGlassActivity",
                 "AwsRootBreakGlassLogin", "AwsRootAssumeRootUsed", "AwsRootRecoveryPathChanged"}
TAMPER_FIXTURES = ROOT / "tests" / "fixtures" / "tamper"


@pytest.fixture(autouse=True)
def _binaries() -> None:
    assert demo_stack.available(), "prometheus and prometheus-alertmanager are not installed (make system-packages)"


def monitored(default_scenario: Scenario, **monitoring: Any) -> Scenario:
    """The default scenario monitored in REGIONS, with every account's member role in place
    (the default breaks network's on purpose: a broken role is blind, which is right, but
    not quiet)."""
    data = default_scenario.model_dump(mode="json")
    for account in data["accounts"]:
        account["assume_role"] = "allowed"
    data["monitoring"] = {**data["monitoring"], "regions": REGIONS, "delays": DELAYS, **monitoring}
    return Scenario.model_validate(data)


def proof_settings(**extra: Any) -> dict[str, Any]:
    return {
        "monitored_regions": REGIONS,
        "lookup_events_enabled": True,
        "lookup_events_regions": REGIONS,
        "canary_interval_seconds": INTERVAL,
        "canary_bounds_seconds": BOUNDS,
        "monitoring_checks_interval_seconds": CHECKS_INTERVAL,
        **extra,
    }


def now_z() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_record(name: str, account_id: str, region: str = "us-east-1") -> dict[str, Any]:
    """A public tamper fixture, moved into a sandbox account and region and made new."""
    record = json.loads((TAMPER_FIXTURES / name).read_text())
    foreign = record["recipientAccountId"]
    record = json.loads(json.dumps(record).replace(foreign, account_id))
    record.update(eventTime=now_z(), eventID=str(uuid.uuid4()), awsRegion=region)
    return record


async def vector(p: Pipeline, expr: str) -> list[dict[str, Any]]:
    result = await p.query(expr)
    assert result.get("status") == "success", (expr, result)
    return result["data"]["result"]


def collected(p: Pipeline) -> set[str]:
    return {a.account_id for a in p.exporter.state.snapshot.accounts}


def blind_pages(p: Pipeline, account_id: str, status: str = "firing") -> dict[tuple[str, str, str], float]:
    """(source, region, reason) of every AwsRootMonitoringBlind notification for the account
    at the pager, with when the first one of each arrived (monotonic)."""
    found: dict[tuple[str, str, str], float] = {}
    for note, alert in p.hooks.alerts(PAGER, status=status, alertname=BLIND, account_id=account_id):
        labels = alert["labels"]  # Prometheus drops an empty label: left_organization has no region
        key = (labels["source"], labels.get("region", ""), labels["reason"])
        found[key] = min(found.get(key, note.received_monotonic), note.received_monotonic)
    return found


# -- a quiet sandbox -------------------------------------------------------------------------


async def test_a_quiet_sandbox_is_proven_on_every_source_and_canaries_never_page(sandbox: Sandbox, default_scenario: Scenario, record_property) -> None:
    sandbox.reset(monitored(default_scenario))
    started = time.monotonic()
    async with pipeline(sandbox, **proof_settings()) as p:
        accounts = collected(p)
        assert MANAGEMENT_ACCOUNT_ID in accounts and len(accounts) >= 10

        # Every configured source and monitored region: proven = collected accounts.
        async def all_proven() -> bool:
            rows = await vector(p, 'aws_root_monitoring_accounts{state="proven"}')
            proven = {(r["metric"]["source"], r["metric"]["region"]): float(r["value"][1]) for r in rows}
            return proven == {(s, r): float(len(accounts)) for s in SOURCES for r in REGIONS}

        deadline = time.monotonic() + max(BOUNDS.values()) + 2 * INTERVAL + 20
        while not await all_proven():
            if time.monotonic() > deadline:
                states = await vector(p, "aws_root_monitoring_accounts > 0")
                blind = await vector(p, "aws_root_monitoring_blind_since_timestamp_seconds")
                raise AssertionError(f"not every path proven: {[(r['metric'], r['value'][1]) for r in states]}; "
                                     f"blind: {[r['metric'] for r in blind]}")
            await asyncio.sleep(0.5)
        report(record_property, "quiet sandbox, exporter start (and Prometheus, Alertmanager) to every account proven on every source and region", time.monotonic() - started)
        # Collected accounts per source and region are the sum of the states: nobody pending or blind.
        totals = await vector(p, "sum by (source, region) (aws_root_monitoring_accounts)")
        assert {(r["metric"]["source"], r["metric"]["region"]): float(r["value"][1]) for r in totals} == {
            (s, r): float(len(accounts)) for s in SOURCES for r in REGIONS}
        # The measured time to detect, per source.
        counts = await vector(p, "aws_root_monitoring_canary_delay_seconds_count")
        observed = {r["metric"]["source"]: float(r["value"][1]) for r in counts}
        assert set(observed) == set(SOURCES) and all(n >= len(accounts) * len(REGIONS) for n in observed.values()), observed
        # Nothing was ever blind, and nothing paged: not a canary as root use, not a flap.
        assert await vector(p, "count_over_time(aws_root_monitoring_blind_since_timestamp_seconds[10m])") == []
        assert await vector(p, f'count_over_time(ALERTS{{alertname="{BLIND}"}}[10m])') == []
        assert p.hooks.received() == []
        families = await p.exporter.metrics()
        root_series = [s for name in ("aws_root_api_calls", "aws_root_console_logins", "aws_root_last_event_info")
                       for s in families[name].samples if s.name != name + "_created" and s.labels.get("account_id") in accounts
                       and (s.name.endswith("_total") or name == "aws_root_last_event_info")]
        assert root_series == []
        rejected = [s for s in families["aws_root_exporter_events_rejected"].samples if s.name.endswith("_total") and s.value]
        assert rejected == []
        assert "aws_root_monitoring_tamper_events" not in families or not [
            s for s in families["aws_root_monitoring_tamper_events"].samples if s.name.endswith("_total")]
        report_delays(await p.exporter.metrics())


def report_delays(families: dict[str, Any]) -> None:
    for source in SOURCES:
        rows = [s for s in families["aws_root_monitoring_canary_delay_seconds"].samples if s.labels.get("source") == source]
        total = next(s.value for s in rows if s.name.endswith("_sum"))
        count = next(s.value for s in rows if s.name.endswith("_count"))
        report_measurement(f"canary delay, {source}: mean {total / count:.2f} s over {count:.0f} canaries (sandbox delay {DELAYS[source]:.0f} s)")


# -- tamper records and rejected records ----------------------------------------------------


async def test_stop_logging_pages_tampered_and_a_rejected_root_record_pages(sandbox: Sandbox, default_scenario: Scenario, record_property) -> None:
    sandbox.reset(monitored(default_scenario))
    member = "210000000003"
    async with pipeline(sandbox, include_account_ids=[member], **proof_settings()) as p:
        await p.wait_for_rules_evaluated()
        # The look-alike first, on every path: taken and classified, and nothing pages.
        started = public_record("awsdocs-cloudtrail-ug__start_logging.json", member)
        sandbox.inject(started)
        # Unusable records whose principal nobody can know: an SQS message that is no
        # EventBridge event, a trail file entry that is no record.
        sqs = sandbox.client("sqs")
        sqs.send_message(QueueUrl=sandbox.events_queue_url, MessageBody="not an EventBridge event")
        sandbox.write_trail_file(["not a CloudTrail record"], member)  # type: ignore[list-item]
        await p.wait_for("both queues drained by the exporter", queue_drained(sandbox), timeout=30, interval=0.2)
        deadline = time.monotonic() + 30
        while len(await vector(p, 'aws_root_exporter_events_rejected_total{reason=~"malformed_message|malformed_record"} > 0')) < 2:
            assert time.monotonic() < deadline, await vector(p, "aws_root_exporter_events_rejected_total")
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # three more evaluations and notifications
        assert p.hooks.alerts(alertname=TAMPERED) == []
        assert p.hooks.alerts(alertname=REJECTED) == []
        assert await vector(p, f'ALERTS{{alertname=~"{TAMPERED}|{REJECTED}"}}') == []

        # StopLogging by an IAM user (Stratus Red Team's detonation record), on the EventBridge
        # path only, after the sandbox's EventBridge delay.
        stop = public_record("stratus__cloudtrail_stop.json", member)
        injected = time.monotonic()
        sandbox.monitoring.deliver(stop, lookup=False, s3=False, delays=DELAYS)
        note, alert = (await p.wait_for(
            "AwsRootMonitoringTampered at the pager", lambda: p.hooks.alerts(PAGER, alertname=TAMPERED, account_id=member),
            interval=0.01,
        ))[0]
        waited = note.received_monotonic - injected
        report(record_property, "StopLogging by an IAM user, EventBridge path (1 s sandbox delay) to pager webhook", waited)
        assert waited < 10
        assert alert["labels"]["event_name"] == "StopLogging" and alert["labels"]["outcome"] == "success"
        assert alert["labels"]["account_name"] == "dev-sandbox"
        assert alert["labels"]["severity"] == "critical"
        assert [a["labels"]["event_name"] for _, a in p.hooks.alerts(alertname=TAMPERED)] == ["StopLogging"]

        # A Root record the classifier cannot use (no eventTime): rejected, and it pages.
        login = make_record("console-login", member)
        del login["eventTime"]
        injected = time.monotonic()
        sandbox.inject(login, lookup=False, s3=False)
        note, alert = (await p.wait_for(
            "AwsRootActivityRecordRejected at the pager", lambda: p.hooks.alerts(PAGER, alertname=REJECTED), interval=0.01,
        ))[0]
        report(record_property, "rejected root record (no eventTime), EventBridge path to pager webhook", note.received_monotonic - injected)
        assert alert["labels"]["reason"] == "malformed_root_record" and alert["labels"]["source"] == "eventbridge_sqs"
        await asyncio.sleep(2)
        assert {(a["labels"]["source"], a["labels"]["reason"]) for _, a in p.hooks.alerts(alertname=REJECTED)} == {
            ("eventbridge_sqs", "malformed_root_record")}
        # Neither is root activity itself.
        assert [a for _, a in p.hooks.alerts() if a["labels"]["alertname"] in ROOT_ACTIVITY] == []


# -- blinding and coming back ----------------------------------------------------------------

# One blinding per account, all at once (Alertmanager groups by account, so none hides another).
STOPPED, DISABLED, READ_ONLY_OFF, REMOVED, BYSTANDER = "210000000003", "210000000001", "210000000002", "210000000013", "210000000005"
CANARY_LIMIT = {source: BOUNDS[source] + 2 * INTERVAL + SLACK for source in SOURCES}
CHECK_LIMIT = CHECKS_INTERVAL + SLACK
SWEEP_LIMIT = POSTURE_INTERVAL + SLACK
# What each blinding pages, (source, region, reason) -> how long it may take.
EXPECTED = {
    # A stopped trail silences EventBridge and the trail files there; LookupEvents still has the record.
    STOPPED: {
        ("eventbridge_sqs", "eu-west-1", "canary_missing"): CANARY_LIMIT["eventbridge_sqs"],
        ("s3_trail", "eu-west-1", "canary_missing"): CANARY_LIMIT["s3_trail"],
        ("eventbridge_sqs", "eu-west-1", "no_logging_trail"): CHECK_LIMIT,
        ("s3_trail", "eu-west-1", "no_logging_trail"): CHECK_LIMIT,
    },
    DISABLED: {
        ("eventbridge_sqs", "us-east-1", "canary_missing"): CANARY_LIMIT["eventbridge_sqs"],
        ("eventbridge_sqs", "us-east-1", "rule_disabled"): CHECK_LIMIT,
    },
    # State ENABLED: the rule still forwards write events, but no read-only one, so no canary.
    READ_ONLY_OFF: {
        ("eventbridge_sqs", "eu-west-1", "canary_missing"): CANARY_LIMIT["eventbridge_sqs"],
        ("eventbridge_sqs", "eu-west-1", "rule_read_only_events_off"): CHECK_LIMIT,
    },
    REMOVED: {("all", "", "left_organization"): SWEEP_LIMIT},
}
BLINDINGS = {STOPPED: ("stop-trail", "eu-west-1"), DISABLED: ("disable-rule", "us-east-1"),
             READ_ONLY_OFF: ("rule-read-only-off", "eu-west-1"), REMOVED: ("remove-account", None)}
RESTORES = {STOPPED: ("start-trail", "eu-west-1"), DISABLED: ("enable-rule", "us-east-1"),
            READ_ONLY_OFF: ("enable-rule", "eu-west-1"), REMOVED: ("restore-account", None)}


async def all_proven(p: Pipeline, accounts: int) -> bool:
    rows = await vector(p, 'aws_root_monitoring_accounts{state="proven"}')
    proven = {(r["metric"]["source"], r["metric"]["region"]): float(r["value"][1]) for r in rows}
    return proven == {(s, r): float(accounts) for s in SOURCES for r in REGIONS}


async def wait_proven(p: Pipeline, accounts: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await all_proven(p, accounts):
        if time.monotonic() > deadline:
            blind = await vector(p, "aws_root_monitoring_blind_since_timestamp_seconds")
            raise AssertionError(f"not every path proven within {timeout:.0f} s; blind: {[r['metric'] for r in blind]}")
        await asyncio.sleep(0.5)


async def test_each_blinding_pages_blind_within_its_bound_and_resolves_when_the_path_comes_back(
    sandbox: Sandbox, default_scenario: Scenario, record_property
) -> None:
    # A trail per account and region, so that one account and region can be blinded alone.
    sandbox.reset(monitored(default_scenario, trail="per_account"))
    members = [STOPPED, DISABLED, READ_ONLY_OFF, REMOVED, BYSTANDER]
    async with pipeline(sandbox, include_account_ids=members, posture_interval_seconds=POSTURE_INTERVAL, **proof_settings()) as p:
        await wait_proven(p, len(members), max(BOUNDS.values()) + 2 * INTERVAL + 20)
        assert p.hooks.received() == []

        acted: dict[str, float] = {}
        for account, (action, region) in BLINDINGS.items():
            acted[account] = time.monotonic()
            sandbox.monitoring.act(action, account, region)

        def everything_paged() -> bool:
            return all(set(blind_pages(p, a)) >= set(expected) for a, expected in EXPECTED.items())

        await p.wait_for("every blinding paged", everything_paged, timeout=max(max(e.values()) for e in EXPECTED.values()) + 10, interval=0.05)
        for account, expected in EXPECTED.items():
            action, region = BLINDINGS[account]
            for key, paged_at in blind_pages(p, account).items():
                waited = paged_at - acted[account]
                report(record_property, f"{action} {region or ''} -> AwsRootMonitoringBlind {'/'.join(k for k in key if k)}", waited)
                assert waited <= expected[key], (account, key, waited)
        # Exactly these paths, each named by account, source and region.
        await asyncio.sleep(2)
        for account, expected in EXPECTED.items():
            assert set(blind_pages(p, account)) == set(expected), account
        assert blind_pages(p, BYSTANDER) == {}
        (_, alert), *_ = p.hooks.alerts(PAGER, alertname=BLIND, account_id=STOPPED, source="eventbridge_sqs", reason="canary_missing")
        assert alert["labels"]["account_name"] == "dev-sandbox" and alert["labels"]["region"] == "eu-west-1"
        description = alert["annotations"]["description"]
        assert "210000000003" in description and "dev-sandbox" in description, description
        assert "source eventbridge_sqs in region eu-west-1 is blind, reason canary_missing" in description, description
        # LookupEvents never lost the stopped trail's account: its history does not need the trail.
        assert await vector(p, f'count_over_time(aws_root_monitoring_blind_since_timestamp_seconds{{account_id="{STOPPED}",source="lookup_events"}}[10m])') == []
        # The calls that blinded them are tamper records, by whoever made them.
        for account, event in ((STOPPED, "StopLogging"), (DISABLED, "DisableRule")):
            await p.wait_for(f"{event} in {account} pages Tampered",
                             lambda: p.hooks.alerts(PAGER, alertname=TAMPERED, account_id=account, event_name=event))

        # Every path comes back: each page resolves.
        restored: dict[str, float] = {}
        for account, (action, region) in RESTORES.items():
            restored[account] = time.monotonic()
            sandbox.monitoring.act(action, account, region)

        def everything_resolved() -> bool:
            return all(set(blind_pages(p, a, "resolved")) >= set(expected) for a, expected in EXPECTED.items())

        await p.wait_for("every blinding resolved", everything_resolved, timeout=max(max(e.values()) for e in EXPECTED.values()) + 10)
        for account, expected in EXPECTED.items():
            action, region = RESTORES[account]
            for key, resolved_at in blind_pages(p, account, "resolved").items():
                waited = resolved_at - restored[account]
                report(record_property, f"{action} {region or ''} -> resolved {'/'.join(k for k in key if k)}", waited)
                assert waited <= expected[key], (account, key, waited)
        # Back for good: nothing pages again once the paths are restored (a returning account
        # starts pending, as a new one does).
        back = time.monotonic()
        await asyncio.sleep(CANARY_LIMIT["lookup_events"])
        again = [(a["labels"]["account_id"], a["labels"]["source"], a["labels"].get("region", ""), a["labels"]["reason"])
                 for n, a in p.hooks.alerts(PAGER, alertname=BLIND) if n.received_monotonic > back]
        assert again == []
        assert await vector(p, f'ALERTS{{alertname="{BLIND}"}}') == []
        await wait_proven(p, len(members), max(BOUNDS.values()) + 2 * INTERVAL + 20)

        # PurgeQueue loses the canaries in the queue at that moment; the path itself is not
        # broken. Its record pages Tampered; the EventBridge source is proven again by the next
        # canaries, and a page, if the purge took a path's last canary before its bound, is
        # that path's canary_missing and resolves by itself.
        sqs = sandbox.client("sqs")
        in_queue = int(sqs.get_queue_attributes(QueueUrl=sandbox.events_queue_url, AttributeNames=["ApproximateNumberOfMessages"])
                       ["Attributes"]["ApproximateNumberOfMessages"])
        purged = time.monotonic()
        sandbox.monitoring.act("purge-queue", MANAGEMENT_ACCOUNT_ID)
        note, _ = (await p.wait_for(
            "PurgeQueue pages Tampered",
            lambda: p.hooks.alerts(PAGER, alertname=TAMPERED, account_id=MANAGEMENT_ACCOUNT_ID, event_name="PurgeQueue"), interval=0.01,
        ))[0]
        report(record_property, "purge-queue -> AwsRootMonitoringTampered PurgeQueue", note.received_monotonic - purged)
        await asyncio.sleep(CANARY_LIMIT["eventbridge_sqs"])  # long enough for a lost canary to page
        await wait_proven(p, len(members), CANARY_LIMIT["eventbridge_sqs"])
        after = [a["labels"] for n, a in p.hooks.alerts(PAGER, status=None, alertname=BLIND) if n.received_monotonic > purged]
        assert {(labels["source"], labels["reason"]) for labels in after} <= {("eventbridge_sqs", "canary_missing")}, after
        assert await vector(p, f'ALERTS{{alertname="{BLIND}"}}') == []
        paged = sorted({labels["account_id"] for labels in after})
        report_measurement(f"purge-queue: {in_queue} message(s) in the queue just before; Blind paged for {paged or 'no account'}")
