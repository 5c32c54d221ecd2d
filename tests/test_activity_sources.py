"""Root activity end to end: each source against the sandbox, counted exactly once.

LookupEvents (with AWS's 2 requests/second limit enforced by the sandbox), the EventBridge
queue and the S3 organization-trail queue all feed the same classifier and the same
dedup by eventID; the counters in /metrics must move by exactly one per root record.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from exporter.sandbox import Sandbox
from exporter.sandbox.moto_ext import LOOKUP_RATE, lookup_requests
from exporter.sandbox.records import make_record

from .conftest import report_measurement, running_exporter, sample, sandbox_settings

ACCOUNT = "210000000003"  # dev-sandbox


def activity_settings(sandbox: Sandbox, **overrides):
    values = dict(
        eventbridge_queue_url=sandbox.events_queue_url,
        s3_trail_queue_url=sandbox.trail_queue_url,
        sqs_wait_seconds=1,
        lookup_events_enabled=True,
        lookup_events_interval_seconds=5,
        include_account_ids=[ACCOUNT, "210000000001", "123456789012"],
    )
    values.update(overrides)
    return sandbox_settings(sandbox, **values)


async def wait_for(exporter, name: str, value: float, timeout: float = 30, **labels: str) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            families = await exporter.metrics()
            if sample(families, name, **labels) == value:
                return families
            await asyncio.sleep(0.1)


async def queue_drained(sandbox: Sandbox, queue_url: str, timeout: float = 15) -> None:
    """Wait until every message of the queue is deleted (none visible, none in flight)."""
    sqs = sandbox.client("sqs")
    wanted = {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    async with asyncio.timeout(timeout):
        while sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(wanted))["Attributes"] != wanted:
            await asyncio.sleep(0.2)


def logins(families: dict, account: str = ACCOUNT, outcome: str = "success", mfa: str = "true") -> float | None:
    return sample(families, "aws_root_console_logins_total", account_id=account, outcome=outcome, mfa=mfa, approved="false")


ACTIVITY_COUNTERS = (
    "aws_root_console_logins_total", "aws_root_signin_events_total", "aws_root_api_calls_total",
    "aws_root_api_calls_by_event_source_total", "aws_root_assumed_root_calls_total",
    "aws_root_assume_root_calls_total", "aws_root_recovery_signals_total",
)


def activity_counter_samples(families: dict) -> list:
    return [s for family in families.values() for s in family.samples if s.name in ACTIVITY_COUNTERS]


async def test_login_counts_exist_at_zero_and_counters_appear_with_their_first_event(sandbox: Sandbox) -> None:
    """Issue 16's series budget: every account has its login counts at 0 ("no root login"),
    but an activity counter has no series until its first event."""
    accounts = (ACCOUNT, "210000000001", "123456789012")
    async with running_exporter(activity_settings(sandbox, lookup_events_enabled=False)) as exporter:
        await exporter.wait_for_sweeps(1)
        before = await exporter.metrics()
        sandbox.inject(make_record("console-login", ACCOUNT, mfa=True), lookup=False, s3=False)
        after = await wait_for(exporter, "aws_root_console_logins_total", 1.0, account_id=ACCOUNT, outcome="success", mfa="true", approved="false")
    for account in accounts:
        assert sample(before, "aws_root_console_logins_90d", account_id=account) == 0.0
        for quarter in ("current", "previous"):
            assert sample(before, "aws_root_console_logins_quarter", account_id=account, quarter=quarter) == 0.0
    assert sample(before, "aws_root_console_logins_quarter_complete", quarter="current") is not None
    assert activity_counter_samples(before) == []
    # The login brings its own series and no other: the other accounts and label sets stay absent.
    assert [(s.name, s.labels, s.value) for s in activity_counter_samples(after)] == [
        ("aws_root_console_logins_total", {"account_id": ACCOUNT, "outcome": "success", "mfa": "true", "approved": "false", "mfa_kind": "totp"}, 1.0)
    ]
    assert sample(after, "aws_root_console_logins_90d", account_id=ACCOUNT) == 1.0
    assert sample(after, "aws_root_console_logins_90d", account_id="210000000001") == 0.0


async def test_one_login_seen_by_three_sources_counts_once(sandbox: Sandbox) -> None:
    async with running_exporter(activity_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        record = make_record("console-login", ACCOUNT, mfa=True, source_ip="198.51.100.7")
        sandbox.inject(record)
        families = await wait_for(exporter, "aws_root_console_logins_total", 1.0, account_id=ACCOUNT, outcome="success", mfa="true", approved="false")
        # Let every source see it: the trail file, the next LookupEvents poll, a redelivery.
        sandbox.client("sqs").send_message(
            QueueUrl=sandbox.events_queue_url,
            MessageBody=json.dumps({"detail-type": "AWS Console Sign In via CloudTrail", "detail": record}),
        )
        async with asyncio.timeout(30):
            while True:
                families = await exporter.metrics()
                dupes = sum(s.value for s in families["aws_root_exporter_events_duplicate"].samples if s.name.endswith("_total"))
                if dupes >= 3 and exporter.state.api.requests["cloudtrail:LookupEvents"] >= 6:
                    break
                await asyncio.sleep(0.2)
        await exporter.exporter.activity.poll_lookup_events()
        families = await exporter.metrics()
    assert logins(families) == 1.0
    assert sample(families, "aws_root_console_logins_90d", account_id=ACCOUNT) == 1.0
    last = [s for s in families["aws_root_last_event_info"].samples if s.labels["account_id"] == ACCOUNT]
    assert len(last) == 1
    assert last[0].labels == {
        "account_id": ACCOUNT,
        "event_name": "ConsoleLogin",
        "event_source": "signin.amazonaws.com",
        "source_ip": "198.51.100.7",
        "mfa": "true",
        "outcome": "success",
    }
    assert sample(families, "aws_root_last_activity_timestamp_seconds", account_id=ACCOUNT) == datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00")).timestamp()


async def test_sqs_path_time_to_metric_and_non_root_records(sandbox: Sandbox) -> None:
    """The EventBridge path: the counter moves within about a second; non-root records never count."""
    settings = activity_settings(sandbox, lookup_events_enabled=False, s3_trail_queue_url=None)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        for kind in ("iam-user-login", "iam-user-named-root-login"):
            sandbox.inject(make_record(kind, ACCOUNT), lookup=False, s3=False)
        started = time.monotonic()
        sandbox.inject(make_record("console-login", ACCOUNT, mfa=False), lookup=False, s3=False)
        families = await wait_for(exporter, "aws_root_console_logins_total", 1.0, account_id=ACCOUNT, outcome="success", mfa="false", approved="false")
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.5)
        families = await exporter.metrics()
    report_measurement(f"root login injected into the EventBridge SQS path -> /metrics counter: {elapsed:.2f} s")
    assert logins(families, mfa="false") == 1.0
    total = sum(s.value for s in families["aws_root_console_logins"].samples if s.name.endswith("_total"))
    assert total == 1.0, "IAM user sign-ins (even one named root) are not root activity"
    assert sample(families, "aws_root_exporter_event_delay_seconds_count", source="eventbridge_sqs") == 1.0


async def test_trail_path_break_glass_and_malformed_input(sandbox: Sandbox) -> None:
    settings = activity_settings(
        sandbox,
        lookup_events_enabled=False,
        eventbridge_queue_url=None,
        break_glass_windows=[
            {"account_id": ACCOUNT, "start": "2026-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z", "ticket": "CHG-42"}
        ],
    )
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        good = make_record("break-glass", ACCOUNT)
        other = make_record("api-call", "210000000001")
        broken = dict(make_record("api-call", "210000000001"))
        broken["userIdentity"] = "not an object"
        # Any principal's StopLogging in the organization trail is a tamper record.
        stop = json.loads((Path(__file__).parent / "fixtures" / "tamper" / "stratus__cloudtrail_stop.json").read_text())
        stop |= {"eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "recipientAccountId": ACCOUNT}
        sandbox.write_trail_file([good, broken, other, stop], ACCOUNT)
        sandbox.write_trail_file([], ACCOUNT, body=b"this is not gzip")
        sandbox.client("sqs").send_message(QueueUrl=sandbox.trail_queue_url, MessageBody="{not json")
        families = await wait_for(exporter, "aws_root_api_calls_total", 1.0, account_id="210000000001", category="administrative", outcome="success", approved="false")
        families = await wait_for(exporter, "aws_root_exporter_events_rejected_total", 1.0, source="s3_trail", reason="malformed_message")
        # Everything is consumed (the last delete may still be on its way): nothing left to
        # redeliver forever.
        await queue_drained(sandbox, sandbox.trail_queue_url)
    assert sample(families, "aws_root_api_calls_total", account_id=ACCOUNT, category="break_glass", outcome="success", approved="true") == 1.0
    assert sample(families, "aws_root_api_calls_total", account_id=ACCOUNT, category="break_glass", outcome="success", approved="false") is None
    # Outside the window (another account): never approved.
    assert sample(families, "aws_root_api_calls_total", account_id="210000000001", category="administrative", outcome="success", approved="true") is None
    # The record with a broken identity could be root's: it pages as malformed_root_record;
    # the file that is not gzip holds no record of anyone.
    assert sample(families, "aws_root_exporter_events_rejected_total", source="s3_trail", reason="malformed_root_record") == 1.0
    assert sample(families, "aws_root_exporter_events_rejected_total", source="s3_trail", reason="malformed_record") >= 1.0
    assert sample(families, "aws_root_monitoring_tamper_events_total", account_id=ACCOUNT, account_name="dev-sandbox",
                  event_name="StopLogging", outcome="success") == 1.0
    assert sample(families, "aws_root_api_calls_by_event_source_total", event_source="iam.amazonaws.com") == 1.0
    assert sample(families, "aws_root_exporter_collector_success", account_id="123456789012", collector="s3_trail") == 1.0


async def test_lookup_events_history_overlap_and_rate_limit(sandbox: Sandbox) -> None:
    """History gives the 90-day count without touching the counters; a new record counts once
    although overlapping polls read it again; never more than 2 requests/s per account and region."""
    now = datetime.now(timezone.utc)
    old = [make_record("console-login", ACCOUNT, when=now - timedelta(days=d)) for d in (10, 40, 89)]
    ancient = make_record("console-login", ACCOUNT, when=now - timedelta(days=120))
    from exporter.sandbox import moto_ext

    for record in [*old, ancient]:
        moto_ext.add_cloudtrail_record(ACCOUNT, "us-east-1", record)
    # Enough root API calls to need several pages of 50.
    for n in range(120):
        moto_ext.add_cloudtrail_record(ACCOUNT, "us-east-1", make_record("api-call", ACCOUNT, when=now - timedelta(hours=1, seconds=n), event_name="ListBuckets"))
    settings = activity_settings(sandbox, eventbridge_queue_url=None, s3_trail_queue_url=None, include_account_ids=[ACCOUNT])
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await wait_for(exporter, "aws_root_console_logins_90d", 3.0, account_id=ACCOUNT)
        assert logins(families) is None, "history before the start is not new activity"
        assert [s for s in activity_counter_samples(families) if s.labels.get("account_id") == ACCOUNT] == [], \
            "the 120 historical API calls are no new activity either"
        fresh = make_record("console-login", ACCOUNT)
        sandbox.inject(fresh, eventbridge=False, s3=False)
        await exporter.exporter.activity.poll_lookup_events()
        await exporter.exporter.activity.poll_lookup_events()
        families = await exporter.metrics()
    assert logins(families) == 1.0
    assert sample(families, "aws_root_console_logins_90d", account_id=ACCOUNT) == 4.0
    # The same records by calendar quarter (UTC); the one 120 days old is beyond the history read.
    def quarter(at: datetime) -> int:
        return at.year * 4 + (at.month - 1) // 3

    # The exporter's clock is read between `now` and `after`: on a quarter's first second the
    # two may straddle it, and either quarter is then the exporter's honest "current".
    after = datetime.now(timezone.utc)
    read = [now - timedelta(days=d) for d in (10, 40, 89)] + [now]
    seen = {label: sample(families, "aws_root_console_logins_quarter", account_id=ACCOUNT, quarter=label)
            for label in ("current", "previous")}
    expected = [{label: sum(1 for at in read if quarter(at) == index) for label, index in (("current", q), ("previous", q - 1))}
                for q in sorted({quarter(now), quarter(after)})]
    assert seen in expected, (seen, expected)
    # The first poll read 90 days back: the current quarter (at most 92 days long) is covered
    # unless it began more than 90 days ago; the previous one never is after a fresh start.
    clock = now if seen == expected[0] else after
    quarter_start = datetime(clock.year, 3 * ((clock.month - 1) // 3) + 1, 1, tzinfo=timezone.utc)
    covered = clock - timedelta(days=90) <= quarter_start
    assert sample(families, "aws_root_console_logins_quarter_complete", quarter="current") == float(covered)
    assert sample(families, "aws_root_console_logins_quarter_complete", quarter="previous") == 0.0
    assert sample(families, "aws_root_exporter_events_duplicate_total", source="lookup_events") >= 1.0
    times = sorted(lookup_requests(ACCOUNT, "us-east-1"))
    assert len(times) >= 5, "a first poll of three pages (90 days of history), then overlapping polls"
    worst = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert worst <= LOOKUP_RATE, f"{worst} LookupEvents requests within one second"
    assert exporter.state.api.errors[("cloudtrail:LookupEvents", "throttled")] == 0


async def test_restart_with_state_file_neither_loses_nor_double_counts(sandbox: Sandbox, tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    settings = activity_settings(sandbox, state_file=state_file, s3_trail_queue_url=None, include_account_ids=[ACCOUNT])
    first = make_record("console-login", ACCOUNT)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        sandbox.inject(first, s3=False)
        await wait_for(exporter, "aws_root_console_logins_total", 1.0, account_id=ACCOUNT, outcome="success", mfa="true", approved="false")
    assert state_file.exists()

    # While the exporter is down, another root login happens (LookupEvents history only).
    second = make_record("console-login", ACCOUNT, mfa=False)
    sandbox.inject(second, eventbridge=False, s3=False)
    # And the first one is redelivered by SQS.
    sandbox.client("sqs").send_message(QueueUrl=sandbox.events_queue_url, MessageBody=json.dumps({"detail": first}))

    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await wait_for(exporter, "aws_root_console_logins_total", 1.0, account_id=ACCOUNT, outcome="success", mfa="false", approved="false")
        await exporter.exporter.activity.poll_lookup_events()
        await asyncio.sleep(1.5)
        families = await exporter.metrics()
    assert logins(families, mfa="true") == 1.0, "the first login is not counted twice"
    assert logins(families, mfa="false") == 1.0, "the login during the downtime is not lost"
    assert sample(families, "aws_root_console_logins_90d", account_id=ACCOUNT) == 2.0


async def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess

    state_file = tmp_path / "state.json"
    state_file.write_text("{broken")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "serve"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "AWS_ROOT_EXPORTER_STATE_FILE": str(state_file), "AWS_ROOT_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:0"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("aws-root-exporter: state file error: ")
    assert str(state_file) in result.stderr


async def test_assume_root_evidence_arriving_second_and_evidence_that_never_comes(sandbox: Sandbox) -> None:
    """Issue 12: a Root record with an ASIA key is held; its AssumeRoot record (second, on
    the EventBridge queue) makes it a privileged task; the same record with a key no
    AssumeRoot issued (a root GetSessionToken session) is root use once the wait ends."""
    member, evader = "210000000001", ACCOUNT
    settings = activity_settings(sandbox, lookup_events_enabled=False, s3_trail_queue_url=None,
                                 assume_root_evidence_wait_seconds=3)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        key = "ASIA" + "Q" * 16
        sandbox.inject(make_record("root-temporary-key-call", member, access_key_id=key, event_name="DeleteBucketPolicy"),
                       lookup=False, s3=False)
        sandbox.inject(make_record("root-temporary-key-call", evader), lookup=False, s3=False)
        async with asyncio.timeout(10):
            while exporter.exporter.activity.store.pending_count() < 2:
                await asyncio.sleep(0.05)
        sandbox.inject(make_record("assume-root", "123456789012", target_account_id=member, access_key_id=key),
                       lookup=False, s3=False)
        families = await wait_for(exporter, "aws_root_assumed_root_calls_total", 1.0, account_id=member, outcome="success")
        assert sample(families, "aws_root_api_calls_total", account_id=member, category="break_glass", outcome="success", approved="false") is None
        families = await wait_for(exporter, "aws_root_api_calls_total", 1.0, account_id=evader, category="break_glass",
                                  outcome="success", approved="false")
        assert sample(families, "aws_root_assumed_root_calls_total", account_id=evader, outcome="success") is None
        assert sample(families, "aws_root_assume_root_calls_total", account_id=member, task_policy="S3UnlockBucketPolicy", outcome="success") == 1.0
        assert exporter.exporter.activity.store.pending_count() == 0


async def test_lookup_events_reads_recovery_signals_from_the_management_account(sandbox: Sandbox) -> None:
    settings = activity_settings(sandbox, eventbridge_queue_url=None, s3_trail_queue_url=None)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        sandbox.inject(make_record("primary-email-update", "123456789012", target_account_id=ACCOUNT), eventbridge=False, s3=False)
        await exporter.exporter.activity.poll_lookup_events()
        families = await exporter.metrics()
    assert sample(families, "aws_root_recovery_signals_total", account_id=ACCOUNT, signal="primary_email_updated", outcome="success") == 1.0


async def test_the_exporters_own_audit_sessions_are_privileged_tasks_without_their_assume_root_record(sandbox: Sandbox) -> None:
    """The exporter knows the keys of the AssumeRoot sessions it opens: their records in the
    member account never count as root use, even when no source delivers the AssumeRoot record."""
    settings = activity_settings(sandbox, lookup_events_enabled=False, s3_trail_queue_url=None, assume_root_audit=True,
                                 assume_root_evidence_wait_seconds=1)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        activity = exporter.exporter.activity
        credentials = await activity.aws.assume_root(ACCOUNT, "aws")  # cached: the sweep's own session
        sandbox.inject(make_record("root-temporary-key-call", ACCOUNT, access_key_id=credentials.access_key_id,
                                   event_name="ListMFADevices"), lookup=False, s3=False)
        sandbox.inject(make_record("root-temporary-key-call", ACCOUNT, event_name="ListMFADevices"), lookup=False, s3=False)
        families = await wait_for(exporter, "aws_root_assumed_root_calls_total", 1.0, account_id=ACCOUNT, outcome="success")
        families = await wait_for(exporter, "aws_root_api_calls_total", 1.0, account_id=ACCOUNT, category="read_only",
                                  outcome="success", approved="false")
        assert sample(families, "aws_root_assumed_root_calls_total", account_id=ACCOUNT, outcome="success") == 1.0


async def test_exporter_restart_between_a_held_record_and_its_assume_root_record(sandbox: Sandbox, tmp_path: Path) -> None:
    """The held record and the key ledger are in the state file: the AssumeRoot record that
    arrives after a restart still makes the earlier record a privileged task, not root use."""
    member = "210000000001"
    state_file = tmp_path / "state.json"
    settings = activity_settings(sandbox, state_file=state_file, lookup_events_enabled=False, s3_trail_queue_url=None,
                                 assume_root_evidence_wait_seconds=60)
    key = "ASIA" + "R" * 16
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        sandbox.inject(make_record("root-temporary-key-call", member, access_key_id=key, event_name="DeleteBucketPolicy"),
                       lookup=False, s3=False)
        async with asyncio.timeout(10):
            while exporter.exporter.activity.store.pending_count() < 1:
                await asyncio.sleep(0.05)
        # Held is not yet deleted from the queue: stopping in between would leave the message
        # in flight, to come back to the next process 30 s later (SQS's visibility timeout).
        await queue_drained(sandbox, sandbox.events_queue_url)
    assert json.loads(state_file.read_text())["pending"][0]["verdict"]["awaiting_key"] == key

    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        assert exporter.exporter.activity.store.pending_count() == 1
        # Injected once the new process polls: a message sent during the shutdown could be
        # taken by the old process's last long poll and stay invisible for 30 s.
        sandbox.inject(make_record("assume-root", "123456789012", target_account_id=member, access_key_id=key),
                       lookup=False, s3=False)
        # SQS delivers at least once: a receive whose answer is lost (a client timeout and retry
        # on a loaded machine) hides its message for the 30 s visibility timeout, then SQS
        # delivers it again. What is tested here is the verdict, so allow one redelivery.
        redelivery = 75
        families = await wait_for(exporter, "aws_root_assumed_root_calls_total", 1.0, redelivery, account_id=member, outcome="success")
        # A later record of the same session, after the restart: the key came through too.
        sandbox.inject(make_record("root-temporary-key-call", member, access_key_id=key, event_name="PutBucketPolicy"),
                       lookup=False, s3=False)
        families = await wait_for(exporter, "aws_root_assumed_root_calls_total", 2.0, redelivery, account_id=member, outcome="success")
        assert exporter.exporter.activity.store.pending_count() == 0
    calls = [s for s in families["aws_root_api_calls"].samples if s.name.endswith("_total") and s.labels["account_id"] == member]
    assert calls == [], "no root use: the member has no API call series at all"
    assert key in json.loads(state_file.read_text())["assume_root_keys"]
