"""EventStore: dedup, series from the first event, 90-day window, backfill, state file, metric families."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.activity.classify import Verdict, classify
from exporter.activity.counters import SOURCES
from exporter.activity.state_file import StateFileError
from exporter.activity.store import EventStore
from exporter.activity.tamper import classify_tamper
from exporter.engine.state import ExporterState
from exporter.metrics import activity as activity_metrics
from exporter.metrics.tamper import tamper_families
from exporter.metrics.textformat import render

FIXTURES = Path(__file__).parent / "fixtures" / "cloudtrail"
A = "111122223333"
B = "222222222222"
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=15)  # EventStore's default backfill_grace


def fixture_verdict(name: str, **changes: Any) -> Verdict:
    v = classify(json.loads((FIXTURES / name).read_text()))
    assert v is not None
    return dataclasses.replace(v, **changes)


def login(event_id: str, at: datetime, account: str = A, outcome: str = "success", mfa: str = "true") -> Verdict:
    # The fixture's MFAUsed "Yes" names no device: its factor is unknown.
    return fixture_verdict("root_console_login_mfa_yes.json", event_id=event_id, event_time=at, account_id=account,
                           outcome=outcome, mfa=mfa, mfa_kind="none" if mfa == "false" else "unknown")


def api_call(event_id: str, at: datetime, **changes: Any) -> Verdict:
    return fixture_verdict("root_api_call_access_denied.json", event_id=event_id, event_time=at, **changes)


def families(store: EventStore, now: datetime) -> list[Any]:
    return [activity_metrics.family(store, name, now) for name in activity_metrics.FAMILIES]


class _Collector:
    def __init__(self, store: EventStore, now: datetime):
        self.store, self.now = store, now

    def collect(self) -> Any:
        return families(self.store, self.now)


def samples(store: EventStore, now: datetime = START + timedelta(hours=1)) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(families(store, now)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(store: EventStore, name: str, now: datetime = START + timedelta(hours=1), **labels: str) -> float | None:
    return samples(store, now).get((name, tuple(sorted(labels.items()))))


# The activity counters of issue 16's series budget: none holds a series before its first event.
ACTIVITY_COUNTERS = (
    "aws_root_console_logins_total", "aws_root_signin_events_total", "aws_root_api_calls_total",
    "aws_root_api_calls_by_event_source_total", "aws_root_assumed_root_calls_total",
    "aws_root_assume_root_calls_total", "aws_root_recovery_signals_total",
)


def test_register_accounts_creates_login_gauges_and_no_counters() -> None:
    store = EventStore(START)
    store.register_accounts([A, B])
    s = samples(store)
    # No activity counter has a series before its first event (issue 16) ...
    assert not [k for k in s if k[0] in ACTIVITY_COUNTERS]
    # ... while the login counts are a statement at 0 for every account.
    for account in (A, B):
        assert s[("aws_root_console_logins_90d", (("account_id", account),))] == 0
        for quarter in ("current", "previous"):
            assert s[("aws_root_console_logins_quarter", (("account_id", account), ("quarter", quarter)))] == 0
    assert {k[1] for k in s if k[0] == "aws_root_console_logins_quarter_complete"} == {(("quarter", "current"),), (("quarter", "previous"),)}
    assert len([k for k in s if k[0] == "aws_root_console_logins_90d"]) == 2
    assert len([k for k in s if k[0] == "aws_root_console_logins_quarter"]) == 4
    # The first event brings exactly its own series, at its count.
    at = START + timedelta(minutes=1)
    store.ingest(login("l-1", at), "eventbridge_sqs", at)
    s = samples(store)
    assert [(k, v) for k, v in s.items() if k[0] in ACTIVITY_COUNTERS] == [
        (("aws_root_console_logins_total", (("account_id", A), ("approved", "false"), ("mfa", "true"), ("mfa_kind", "unknown"), ("outcome", "success"))), 1)
    ]
    assert s[("aws_root_console_logins_90d", (("account_id", A),))] == 1
    assert s[("aws_root_console_logins_90d", (("account_id", B),))] == 0


def test_dedup_across_sources() -> None:
    store = EventStore(START)
    store.register_accounts([A])
    v = login("e-1", START + timedelta(minutes=1))
    assert store.ingest(v, "eventbridge_sqs", START + timedelta(minutes=2)) is True
    assert store.ingest(v, "lookup_events", START + timedelta(minutes=9)) is False
    assert store.ingest(v, "s3_trail", START + timedelta(minutes=12)) is False
    assert value(store, "aws_root_console_logins_total", account_id=A, outcome="success", mfa="true", approved="false", mfa_kind="unknown") == 1
    assert value(store, "aws_root_exporter_events_duplicate_total", source="lookup_events") == 1
    assert value(store, "aws_root_exporter_events_duplicate_total", source="s3_trail") == 1
    assert value(store, "aws_root_exporter_events_duplicate_total", source="eventbridge_sqs") == 0
    assert value(store, "aws_root_exporter_event_delay_seconds_count", source="eventbridge_sqs") == 1
    assert value(store, "aws_root_exporter_event_delay_seconds_count", source="lookup_events") == 0


def test_dedup_ids_are_bounded_and_logins_stay_exact() -> None:
    store = EventStore(START, max_event_ids=100, dedup_retention=timedelta(days=1))
    first = login("login-1", START + timedelta(seconds=1))
    store.ingest(first, "lookup_events", START + timedelta(seconds=2))
    for i in range(500):
        at = START + timedelta(seconds=10 + i)
        store.ingest(api_call(f"api-{i}", at), "lookup_events", at)
    assert store.seen_event_ids() <= 100
    # The login's id left the general id set, but the login list still knows it.
    assert store.ingest(first, "s3_trail", START + timedelta(hours=1)) is False
    assert store.logins_90d(A, START + timedelta(hours=1)) == 1
    # An old API call whose id was forgotten counts again: documented trade-off.
    assert store.ingest(api_call("api-0", START + timedelta(seconds=10)), "s3_trail", START + timedelta(hours=1)) is True


def test_dedup_retention_follows_newest_event_time() -> None:
    store = EventStore(START, dedup_retention=timedelta(days=7))
    store.ingest(api_call("old", START + timedelta(minutes=1)), "lookup_events", START + timedelta(minutes=2))
    for i in range(10_001):  # forces a prune pass
        at = START + timedelta(days=2, seconds=i)
        store.ingest(api_call(f"x-{i}", at), "lookup_events", at)
    assert store.ingest(api_call("old", START + timedelta(minutes=1)), "s3_trail", START + timedelta(days=3)) is False
    later = START + timedelta(days=9)
    for i in range(10_001):
        store.ingest(api_call(f"y-{i}", later + timedelta(seconds=i)), "lookup_events", later + timedelta(seconds=i))
    assert store.ingest(api_call("old", START + timedelta(minutes=1)), "s3_trail", later) is True


def test_logins_90d_window_edges() -> None:
    store = EventStore(START)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    store.ingest(login("exactly-90d", now - timedelta(days=90)), "lookup_events", now)
    store.ingest(login("just-inside", now - timedelta(days=90) + timedelta(seconds=1)), "lookup_events", now)
    store.ingest(login("now", now), "lookup_events", now)
    store.ingest(login("future", now + timedelta(seconds=1)), "lookup_events", now)
    store.ingest(login("failed", now - timedelta(days=1), outcome="failure"), "lookup_events", now)
    store.ingest(login("other-account", now - timedelta(days=1), account=B), "lookup_events", now)
    assert store.logins_90d(A, now) == 2  # (now - 90d, now]: "just-inside" and "now"
    assert store.logins_90d(A, now + timedelta(seconds=1)) == 2  # "just-inside" ages out, "future" comes in
    assert store.logins_90d(B, now) == 1
    assert value(store, "aws_root_console_logins_90d", now=now, account_id=A) == 2


def test_backfill_does_not_inflate_counters() -> None:
    store = EventStore(START)  # fresh store: no state file
    store.register_accounts([A])
    before = START - timedelta(days=3)
    assert store.ingest(login("hist-1", before), "lookup_events", START + timedelta(seconds=30)) is True
    store.ingest(api_call("hist-2", before + timedelta(hours=1)), "lookup_events", START + timedelta(seconds=30))
    # History is not new activity: no counter series appears for it.
    assert value(store, "aws_root_console_logins_total", account_id=A, outcome="success", mfa="true", approved="false", mfa_kind="unknown") is None
    assert value(store, "aws_root_api_calls_total", account_id=A, category="administrative", outcome="failure", approved="false") is None
    assert value(store, "aws_root_api_calls_by_event_source_total", event_source="s3.amazonaws.com") is None
    assert value(store, "aws_root_exporter_event_delay_seconds_count", source="lookup_events") == 0
    # ... but the 90-day count and the last event see history.
    assert store.logins_90d(A, START) == 1
    assert value(store, "aws_root_last_activity_timestamp_seconds", account_id=A) == (before + timedelta(hours=1)).timestamp()
    # A live record is counted.
    store.ingest(login("live-1", START + timedelta(minutes=5)), "eventbridge_sqs", START + timedelta(minutes=6))
    assert value(store, "aws_root_console_logins_total", account_id=A, outcome="success", mfa="true", approved="false", mfa_kind="unknown") == 1
    assert store.logins_90d(A, START + timedelta(minutes=10)) == 2


def test_records_in_flight_at_a_fresh_start_are_counted() -> None:
    store = EventStore(START)
    store.register_accounts([A])
    # Delivered by EventBridge a minute after start, it happened 5 minutes before it.
    store.ingest(login("in-flight", START - timedelta(minutes=5)), "eventbridge_sqs", START + timedelta(minutes=1))
    store.ingest(login("too-old", START - GRACE - timedelta(seconds=1)), "lookup_events", START + timedelta(minutes=1))
    assert value(store, "aws_root_console_logins_total", account_id=A, outcome="success", mfa="true", approved="false", mfa_kind="unknown") == 1
    assert store.logins_90d(A, START + timedelta(minutes=1)) == 2
    assert EventStore(START, backfill_grace=timedelta(0)).counting_from == START


def test_counters_continue_after_restart_with_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = EventStore(START)
    store.register_accounts([A])
    store.ingest(login("live-1", START + timedelta(minutes=5)), "eventbridge_sqs", START + timedelta(minutes=6))
    store.save(path)
    # Restarted a day later; the poller catches up on what happened while it was down.
    restarted = EventStore.open(path, started_at=START + timedelta(days=1))
    assert restarted.counting_from == START - GRACE
    restarted.ingest(login("downtime", START + timedelta(hours=5)), "lookup_events", START + timedelta(days=1))
    restarted.ingest(login("live-1", START + timedelta(minutes=5)), "lookup_events", START + timedelta(days=1))
    assert value(restarted, "aws_root_console_logins_total", now=START + timedelta(days=1), account_id=A, outcome="success", mfa="true", approved="false", mfa_kind="unknown") == 2
    fresh = EventStore.open(tmp_path / "absent.json", started_at=START + timedelta(days=1))
    assert fresh.counting_from == START + timedelta(days=1) - GRACE


def test_kinds_feed_their_metrics() -> None:
    store = EventStore(START)
    t = START + timedelta(minutes=1)
    seen = START + timedelta(minutes=3)
    store.ingest(fixture_verdict("root_password_recovery_requested.json", event_time=t), "eventbridge_sqs", seen)
    store.ingest(fixture_verdict("root_close_account.json", event_time=t, approved=True), "eventbridge_sqs", seen)
    store.ingest(fixture_verdict("assume_root_call.json", event_time=t), "lookup_events", seen)
    store.ingest(fixture_verdict("assumed_root_session_marker.json", event_time=t), "lookup_events", seen)
    s = samples(store)
    assert s[("aws_root_signin_events_total", (("account_id", A), ("event_name", "PasswordRecoveryRequested"), ("outcome", "success")))] == 1
    assert s[("aws_root_api_calls_total", (("account_id", A), ("approved", "true"), ("category", "break_glass"), ("outcome", "success")))] == 1
    assert s[("aws_root_api_calls_by_event_source_total", (("event_source", "account.amazonaws.com"),))] == 1
    assert s[("aws_root_assume_root_calls_total", (("account_id", B), ("outcome", "success"), ("task_policy", "S3UnlockBucketPolicy")))] == 1
    assert s[("aws_root_assumed_root_calls_total", (("account_id", B), ("outcome", "success")))] == 1
    # The privileged session is not root credential use: no API call, no last activity for B.
    assert not [k for k in s if k[0] == "aws_root_api_calls_total" and ("account_id", B) in k[1]]
    assert ("aws_root_last_activity_timestamp_seconds", (("account_id", B),)) not in s


def test_last_event_is_latest_by_event_time() -> None:
    store = EventStore(START)
    newer = START + timedelta(minutes=10)
    store.ingest(api_call("newer", newer), "s3_trail", newer)
    store.ingest(login("older", START + timedelta(minutes=1)), "eventbridge_sqs", newer)
    info = [(k, v) for k, v in samples(store).items() if k[0] == "aws_root_last_event_info"]
    assert info == [(
        ("aws_root_last_event_info", (("account_id", A), ("event_name", "CreateBucket"), ("event_source", "s3.amazonaws.com"),
                                      ("mfa", "unknown"), ("outcome", "failure"), ("source_ip", "203.0.113.25"))),
        1.0,
    )]
    assert value(store, "aws_root_last_activity_timestamp_seconds", account_id=A) == newer.timestamp()


@pytest.mark.parametrize(
    ("event_name", "event_source", "source_ip", "shown"),
    [
        ("CreateBucket", "s3.amazonaws.com", "2001:db8::1", ("CreateBucket", "s3.amazonaws.com", "2001:db8::1")),
        ("CreateBucket", "s3.amazonaws.com", "AWS Internal", ("CreateBucket", "s3.amazonaws.com", "AWS Internal")),
        ("CreateBucket", "s3.amazonaws.com", "cloudformation.amazonaws.com", ("CreateBucket", "s3.amazonaws.com", "cloudformation.amazonaws.com")),
        ("Create Bucket\n", "s3.example.com", "not-an-ip", ("other", "other", "other")),
        ("x" * 200, "a" * 80 + ".amazonaws.com", "203.0.113.256", ("other", "other", "other")),
    ],
)
def test_record_values_reach_labels_only_in_their_shape(event_name: str, event_source: str, source_ip: str, shown: tuple) -> None:
    """A record can carry anything; a label value is a series (issue 16)."""
    store = EventStore(START)
    at = START + timedelta(minutes=5)
    store.ingest(api_call("odd", at, event_name=event_name, event_source=event_source, source_ip=source_ip), "s3_trail", at)
    info = [dict(k[1]) for k in samples(store) if k[0] == "aws_root_last_event_info"]
    assert [(i["event_name"], i["event_source"], i["source_ip"]) for i in info] == [shown]
    by_source = [dict(k[1])["event_source"] for k in samples(store) if k[0] == "aws_root_api_calls_by_event_source_total"]
    assert by_source == [shown[1]]


def test_rejected_counts_and_validation() -> None:
    store = EventStore(START)
    store.reject("s3_trail", "malformed_record")
    store.reject("s3_trail", "malformed_record")
    assert value(store, "aws_root_exporter_events_rejected_total", source="s3_trail", reason="malformed_record") == 2
    with pytest.raises(ValueError):
        store.reject("s3_trail", "Free text with spaces")
    with pytest.raises(ValueError):
        store.ingest(login("x", START), "somewhere", START)


def test_exact_exposition() -> None:
    store = EventStore(START)
    store.register_accounts([A])
    store.ingest(login("l-1", START + timedelta(minutes=1), mfa="false"), "eventbridge_sqs", START + timedelta(minutes=1, seconds=40))
    store.ingest(api_call("a-1", START + timedelta(minutes=2)), "lookup_events", START + timedelta(minutes=9))
    registry = CollectorRegistry()
    registry.register(_Collector(store, START + timedelta(hours=1)))
    text = render(families(store, START + timedelta(hours=1))).decode()
    # The exporter's own renderer writes exactly what prometheus_client writes.
    assert text == generate_latest(registry).decode()
    expected = [
        "# TYPE aws_root_console_logins_total counter",
        'aws_root_console_logins_total{account_id="111122223333",approved="false",mfa="false",mfa_kind="none",outcome="success"} 1.0',
        'aws_root_api_calls_total{account_id="111122223333",approved="false",category="administrative",outcome="failure"} 1.0',
        'aws_root_api_calls_by_event_source_total{event_source="s3.amazonaws.com"} 1.0',
        'aws_root_last_activity_timestamp_seconds{account_id="111122223333"} 1.79552172e+09',  # 2026-11-24T12:02:00Z
        'aws_root_console_logins_90d{account_id="111122223333"} 1.0',
        "# TYPE aws_root_exporter_event_delay_seconds histogram",
        'aws_root_exporter_event_delay_seconds_bucket{le="30.0",source="eventbridge_sqs"} 0.0',
        'aws_root_exporter_event_delay_seconds_bucket{le="60.0",source="eventbridge_sqs"} 1.0',
        'aws_root_exporter_event_delay_seconds_bucket{le="+Inf",source="eventbridge_sqs"} 1.0',
        'aws_root_exporter_event_delay_seconds_count{source="eventbridge_sqs"} 1.0',
        'aws_root_exporter_event_delay_seconds_sum{source="eventbridge_sqs"} 40.0',
        'aws_root_exporter_event_delay_seconds_bucket{le="300.0",source="lookup_events"} 0.0',
        'aws_root_exporter_event_delay_seconds_bucket{le="600.0",source="lookup_events"} 1.0',
        'aws_root_exporter_event_delay_seconds_sum{source="lookup_events"} 420.0',
        "# TYPE aws_root_last_event_info gauge",
        "# TYPE aws_root_signin_events_total counter",
        "# TYPE aws_root_assume_root_calls_total counter",
        "# TYPE aws_root_exporter_events_rejected_total counter",
        'aws_root_exporter_events_duplicate_total{source="s3_trail"} 0.0',
    ]
    lines = text.splitlines()
    for line in expected:
        assert line in lines, line
    # The counters hold the series of the two records and nothing else: no zero series (issue 16).
    counted = [line for line in lines if line.startswith(("aws_root_console_logins_total{", "aws_root_api_calls_total{",
                                                          "aws_root_assumed_root_calls_total{", "aws_root_signin_events_total{"))]
    assert counted == [
        'aws_root_console_logins_total{account_id="111122223333",approved="false",mfa="false",mfa_kind="none",outcome="success"} 1.0',
        'aws_root_api_calls_total{account_id="111122223333",approved="false",category="administrative",outcome="failure"} 1.0',
    ]


def test_every_activity_metric_in_the_contract_is_exposed_with_its_labels() -> None:
    doc = (Path(__file__).parent.parent / "README.md").read_text()
    contract = {}
    in_activity = False
    for line in doc.splitlines():
        in_activity = in_activity or line.startswith("| `aws_root_console_logins_total`")
        if in_activity and line.startswith("| `aws_root_"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            labels = frozenset(x.strip().strip("`") for x in cells[2].split(",") if x.strip())
            contract[cells[0].strip("`")] = (cells[1], labels)
    store = EventStore(START)
    store.register_accounts([A])
    t, seen = START + timedelta(minutes=1), START + timedelta(minutes=2)
    for name in ("root_password_recovery_requested.json", "root_close_account.json", "assume_root_call.json",
                 "assumed_root_session_marker.json", "root_console_login_mfa_yes.json",
                 "recovery_accept_primary_email_update.json"):
        store.ingest(fixture_verdict(name, event_time=t), "eventbridge_sqs", seen)
    store.reject("s3_trail", "malformed_record")
    stop = json.loads((Path(__file__).parent / "fixtures" / "tamper" / "stratus__cloudtrail_stop.json").read_text())
    tamper = classify_tamper(stop | {"eventTime": t.isoformat()})
    assert tamper is not None
    store.ingest_tamper(tamper, "eventbridge_sqs", seen)
    exposed = {}
    for family in [*families(store, seen), *tamper_families(store, ExporterState(600))]:
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = frozenset(k for s in family.samples for k in s.labels if k != "le")
        assert family.samples, name
        exposed[name] = (family.type, labels)
    assert exposed == contract


def test_state_roundtrip(tmp_path: Path) -> None:
    store = EventStore(START)
    store.register_accounts([A, B])
    store.ingest(login("l-1", START + timedelta(minutes=1)), "eventbridge_sqs", START + timedelta(minutes=2))
    store.ingest(fixture_verdict("assume_root_call.json", event_time=START + timedelta(minutes=3)), "lookup_events", START + timedelta(minutes=9))
    store.ingest(login("hist", START - timedelta(days=2)), "lookup_events", START)
    store.reject("s3_trail", "malformed_record")
    store.ingest(login("l-1", START + timedelta(minutes=1)), "s3_trail", START + timedelta(minutes=20))
    store.set_checkpoint("lookup_events/111122223333/us-east-1", "2026-11-24T12:09:00Z")
    path = tmp_path / "state.json"
    store.save(path)
    loaded = EventStore.load(path)
    assert loaded.to_state() == store.to_state()
    now = START + timedelta(hours=1)
    assert samples(loaded, now) == samples(store, now)
    assert loaded.get_checkpoint("lookup_events/111122223333/us-east-1") == "2026-11-24T12:09:00Z"
    assert loaded.get_checkpoint("missing") is None
    assert loaded.ingest(login("l-1", START + timedelta(minutes=1)), "lookup_events", now) is False
    assert json.loads(path.read_text())["version"] == 5


def test_login_inside_a_break_glass_window_counts_as_approved() -> None:
    store = EventStore(START)
    store.register_accounts([A])
    t = START + timedelta(minutes=1)
    store.ingest(dataclasses.replace(login("bg-1", t), approved=True), "eventbridge_sqs", t)
    store.ingest(login("plain-1", t + timedelta(seconds=1)), "eventbridge_sqs", t)
    assert value(store, "aws_root_console_logins_total", account_id=A, outcome="success", mfa="true", approved="true", mfa_kind="unknown") == 1
    assert value(store, "aws_root_console_logins_total", account_id=A, outcome="success", mfa="true", approved="false", mfa_kind="unknown") == 1
    # Approved or not, a login is a login for the 90-day count (the quarterly KPI).
    assert store.logins_90d(A, t + timedelta(minutes=1)) == 2


def test_classify_marks_a_login_inside_a_window_approved() -> None:
    from exporter.config.settings import BreakGlassWindow

    record = json.loads((FIXTURES / "root_console_login_mfa_yes.json").read_text())
    v = classify(record)
    assert v is not None and v.kind == "console_login" and v.approved is False
    window = BreakGlassWindow(account_id=v.account_id, start=v.event_time - timedelta(minutes=5),
                              end=v.event_time + timedelta(minutes=5), ticket="CHG-1")
    assert classify(record, [window]).approved is True
    late = BreakGlassWindow(account_id=v.account_id, start=v.event_time + timedelta(seconds=1),
                            end=v.event_time + timedelta(hours=1), ticket="CHG-2")
    assert classify(record, [late]).approved is False


# A version 1 state file, as the exporter before the `approved` label on console logins wrote
# it (written out literally: the current code cannot produce it any more).
STATE_V1 = {
    "version": 1,
    "counting_from": "2026-11-24T11:45:00+00:00",
    "high_water": 1795521660.0,
    "accounts": ["111122223333"],
    "counters": {
        "console_logins": [
            ["111122223333", "failure", "false", 0.0], ["111122223333", "failure", "true", 2.0],
            ["111122223333", "failure", "unknown", 0.0], ["111122223333", "success", "false", 0.0],
            ["111122223333", "success", "true", 3.0], ["111122223333", "success", "unknown", 0.0],
        ],
        "signin_events": [],
        "api_calls": [["111122223333", "administrative", "failure", "false", 1.0],
                      ["111122223333", "break_glass", "success", "true", 4.0]],
        "api_calls_by_event_source": [["111122223333", "s3.amazonaws.com", 1.0]],
        "assumed_root_calls": [["111122223333", "failure", 0.0], ["111122223333", "success", 0.0]],
        "assume_root_calls": [],
        "events_duplicate": [["eventbridge_sqs", 0.0], ["lookup_events", 1.0], ["s3_trail", 0.0]],
        "events_rejected": [],
    },
    "event_delay": {},
    "last_event": {"111122223333": {"time": 1795521660.0, "event_name": "ConsoleLogin",
                                    "event_source": "signin.amazonaws.com", "source_ip": "198.51.100.1",
                                    "mfa": "true", "outcome": "success"}},
    "console_logins_90d": {"111122223333": [[1795521660.0, "l-1"]]},
    "seen_event_ids": {"l-1": 1795521660.0},
    "checkpoints": {"lookup_events/111122223333/us-east-1": "2026-11-24T12:09:00Z"},
}


def test_version_1_state_file_is_migrated_and_keeps_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(STATE_V1))
    store = EventStore.load(path)
    logins = {k[1]: v for k, v in samples(store).items() if k[0] == "aws_root_console_logins_total"}
    # The old counts land on approved="false"; the rows at 0 (the zero series files kept before
    # issue 16) are dropped, and approved="true" has no series until its first login.
    # Nor did it keep the factor: a login with MFA reads mfa_kind="unknown".
    assert logins == {
        (("account_id", A), ("approved", "false"), ("mfa", "true"), ("mfa_kind", "unknown"), ("outcome", "success")): 3,
        (("account_id", A), ("approved", "false"), ("mfa", "true"), ("mfa_kind", "unknown"), ("outcome", "failure")): 2,
    }
    assert value(store, "aws_root_api_calls_total", account_id=A, category="break_glass", outcome="success", approved="true") == 4
    assert value(store, "aws_root_api_calls_total", account_id=A, category="administrative", outcome="failure", approved="false") == 1
    assert not [k for k in samples(store) if k[0] == "aws_root_assumed_root_calls_total"]
    assert value(store, "aws_root_console_logins_90d", account_id=A) == 1
    assert store.logins_90d(A, START + timedelta(hours=1)) == 1
    assert store.get_checkpoint("lookup_events/111122223333/us-east-1") == "2026-11-24T12:09:00Z"
    assert store.ingest(login("l-1", START + timedelta(minutes=1)), "s3_trail", START + timedelta(hours=1)) is False
    # The next save writes the current version, which loads as is.
    store.save(path)
    saved = json.loads(path.read_text())
    assert saved["version"] == 5
    assert sorted(saved["counters"]["console_logins"]) == [
        [A, "failure", "true", "false", "unknown", 2.0], [A, "success", "true", "false", "unknown", 3.0],
    ]
    assert saved["counters"]["assumed_root_calls"] == []
    assert EventStore.load(path).to_state() == store.to_state()


def test_version_1_state_file_with_a_bad_login_row(tmp_path: Path) -> None:
    state = json.loads(json.dumps(STATE_V1))
    state["counters"]["console_logins"][0] = [A, "success", "true", "false", 1.0]  # a version 2 row
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    with pytest.raises(StateFileError, match="console_logins has a bad row") as info:
        EventStore.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"version": 99}', "unsupported version 99"),
        ('{"version": true}', "unsupported version True"),
        ('{"version": "1"}', "unsupported version '1'"),
        ('{"version": 1}', "missing"),
    ],
)
def test_corrupt_state_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=problem) as info:
        EventStore.load(path)
    assert str(path) in str(info.value)


def test_state_with_bad_counter_row(tmp_path: Path) -> None:
    store = EventStore(START)
    store.register_accounts([A])
    # Counter rows exist only for counted records (issue 16): count one of each kind edited below.
    t = START + timedelta(minutes=1)
    store.ingest(api_call("a-1", t), "eventbridge_sqs", t)
    store.ingest(login("l-1", t), "eventbridge_sqs", t)
    state = store.to_state()
    assert len(state["counters"]["api_calls"]) == 1 and len(state["counters"]["console_logins"]) == 1
    state["counters"]["api_calls"][0] = [A, "read_only", 3]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    with pytest.raises(StateFileError, match="api_calls"):
        EventStore.load(path)
    state = store.to_state()
    state["counters"]["console_logins"][0][-1] = -1
    path.write_text(json.dumps(state))
    with pytest.raises(StateFileError, match="not a count"):
        EventStore.load(path)


def test_atomic_save_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    store = EventStore(START)
    store.register_accounts([A])
    store.save(path)
    store.save(path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
    original = path.read_bytes()

    def fail(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    store.register_accounts([B])
    with pytest.raises(OSError):
        store.save(path)
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
    assert path.read_bytes() == original  # the old state survives a failed save


@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(SOURCES), st.integers(-600, 600)), max_size=60))
def test_each_event_id_counts_once_whatever_the_source(ingests: list[tuple[int, str, int]]) -> None:
    store = EventStore(START)
    store.register_accounts([A])
    for n, source, offset in ingests:
        # The same id always carries the same eventTime, as in CloudTrail.
        at = START + timedelta(minutes=n) + timedelta(seconds=(n * 37) % 600 - 300)
        store.ingest(api_call(f"id-{n}", at), source, at + timedelta(seconds=abs(offset)))
    ids = {n for n, _, _ in ingests}
    live = {n for n in ids if START + timedelta(minutes=n) + timedelta(seconds=(n * 37) % 600 - 300) >= START - GRACE}
    s = samples(store)
    counted = sum(v for k, v in s.items() if k[0] == "aws_root_api_calls_total")
    duplicates = sum(v for k, v in s.items() if k[0] == "aws_root_exporter_events_duplicate_total")
    delays = sum(v for k, v in s.items() if k[0] == "aws_root_exporter_event_delay_seconds_count")
    assert counted == len(live)
    assert delays == len(live)
    assert duplicates == len(ingests) - len(ids)


def test_concurrent_ingest_and_scrape() -> None:
    store = EventStore(START)
    store.register_accounts([A])
    at = START + timedelta(minutes=1)

    def work(worker: int) -> None:
        for i in range(500):
            # Half the ids are shared by all workers (the same record from several sources).
            event_id = f"shared-{i}" if i % 2 else f"own-{worker}-{i}"
            store.ingest(api_call(event_id, at), SOURCES[worker % 3], at)
            if i % 50 == 0:
                families(store, at)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert value(store, "aws_root_api_calls_total", account_id=A, category="administrative", outcome="failure", approved="false") == 250 + 6 * 250
    assert sum(v for k, v in samples(store).items() if k[0] == "aws_root_exporter_events_duplicate_total") == 5 * 250


# --- AssumeRoot evidence, held records, cross-account copies, recovery signals (issue 12) ----

def _records() -> tuple[dict[str, Any], dict[str, Any]]:
    """The member's Root record (PutBucketPolicy with an ASIA key) and the AssumeRoot record that issued the key."""
    session = json.loads((FIXTURES / "assumed_root_session_asia_only.json").read_text())
    session["eventSource"], session["eventName"], session["readOnly"] = "s3.amazonaws.com", "PutBucketPolicy", False
    session["eventTime"] = (START + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    call = json.loads((FIXTURES / "assume_root_call.json").read_text())
    call["eventTime"] = START.strftime("%Y-%m-%dT%H:%M:%SZ")
    call["responseElements"]["credentials"]["expiration"] = (START + timedelta(minutes=15)).strftime("%b %d, %Y, %I:%M:%S %p")
    return session, call


def _learn(store: EventStore, call: dict[str, Any], seen_at: datetime) -> list[Verdict]:
    from exporter.activity.assume_root_keys import issued_key

    v = classify(call, (), store.assume_root_keys)
    assert v is not None and v.kind == "assume_root_call"
    store.ingest(v, "eventbridge_sqs", seen_at)
    learned = issued_key(call, v.account_id, v.task_policy or "other")
    assert learned is not None
    return store.learn_key(*learned, seen_at)


WAIT = timedelta(seconds=120)


def test_record_before_its_assume_root_record_is_held_then_a_privileged_task() -> None:
    session, call = _records()
    store = EventStore(START)
    store.register_accounts([B])
    t = START + timedelta(minutes=2)
    v = classify(session, (), store.assume_root_keys)
    assert v is not None and v.awaiting_key == "ASIAI44QH8DHBEXAMPLE" and not v.assumed_root
    assert store.hold(v, "eventbridge_sqs", t, WAIT) is True
    assert store.hold(v, "s3_trail", t, WAIT) is False  # a second sighting while held
    assert value(store, "aws_root_api_calls_total", account_id=B, category="break_glass", outcome="success", approved="false") is None
    assert value(store, "aws_root_assumed_root_calls_total", account_id=B, outcome="success") is None
    released = _learn(store, call, t + timedelta(seconds=30))
    assert [r.event_id for r in released] == [session["eventID"]] and released[0].assumed_root
    assert value(store, "aws_root_assumed_root_calls_total", account_id=B, outcome="success") == 1
    assert value(store, "aws_root_api_calls_total", account_id=B, category="break_glass", outcome="success", approved="false") is None
    assert store.release_due(t + WAIT * 2) == [] and store.pending_count() == 0
    # Later records with the key are privileged tasks at once.
    later = dict(session, eventID="later-1")
    assert classify(later, (), store.assume_root_keys).assumed_root is True  # type: ignore[union-attr]


def test_held_record_whose_evidence_never_comes_is_root_use() -> None:
    session, _ = _records()
    store = EventStore(START)
    store.register_accounts([B])
    t = START + timedelta(minutes=2)
    v = classify(session, (), store.assume_root_keys)
    assert v is not None
    store.hold(v, "lookup_events", t, WAIT)
    assert store.release_due(t + WAIT - timedelta(seconds=1)) == []
    assert [r.event_id for r in store.release_due(t + WAIT)] == [session["eventID"]]
    assert value(store, "aws_root_api_calls_total", account_id=B, category="break_glass", outcome="success", approved="false") == 1
    assert value(store, "aws_root_assumed_root_calls_total", account_id=B, outcome="success") is None


def test_restart_between_the_record_and_its_assume_root_record(tmp_path: Path) -> None:
    session, call = _records()
    path = tmp_path / "state.json"
    store = EventStore(START)
    store.register_accounts([B])
    t = START + timedelta(minutes=2)
    v = classify(session, (), store.assume_root_keys)
    assert v is not None
    store.hold(v, "eventbridge_sqs", t, WAIT)
    store.save(path)
    restarted = EventStore.load(path)
    assert restarted.pending_count() == 1 and restarted.to_state() == store.to_state()
    released = _learn(restarted, call, t + timedelta(seconds=60))
    assert [r.event_id for r in released] == [session["eventID"]]
    assert value(restarted, "aws_root_assumed_root_calls_total", account_id=B, outcome="success") == 1
    # And the key itself survives the next restart.
    restarted.save(path)
    again = EventStore.load(path)
    assert "ASIAI44QH8DHBEXAMPLE" in again.assume_root_keys
    assert classify(dict(session, eventID="after-restart"), (), again.assume_root_keys).assumed_root is True  # type: ignore[union-attr]


def test_held_records_are_bounded_and_released_as_root_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.activity import store as store_module

    monkeypatch.setattr(store_module, "MAX_PENDING", 2)
    session, _ = _records()
    store = EventStore(START)
    t = START + timedelta(minutes=2)
    for i in range(4):
        v = classify(dict(session, eventID=f"held-{i}"), (), store.assume_root_keys)
        assert v is not None
        store.hold(v, "eventbridge_sqs", t + timedelta(seconds=i), WAIT)
    assert [r.event_id for r in store.release_due(t)] == ["held-0", "held-1"]
    assert store.pending_count() == 2


def test_cross_account_pair_counts_once_for_the_acting_account() -> None:
    record = json.loads((FIXTURES / "root_console_session_list_access_keys.json").read_text())
    record["sharedEventID"] = "5a4ec3f6-5e4c-4a6a-9b1b-7c0d2b2e0f11"
    record["eventTime"] = (START + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    copy_b = dict(record, eventID="0f6b7e1c-4d2a-4c8e-9a3b-111111111111", recipientAccountId=B)
    store = EventStore(START)
    store.register_accounts([A, B])
    t = START + timedelta(minutes=2)
    assert store.ingest(classify(record), "s3_trail", t) is True  # type: ignore[arg-type]
    assert store.ingest(classify(copy_b), "s3_trail", t) is False  # type: ignore[arg-type]
    assert value(store, "aws_root_api_calls_total", account_id=A, category="read_only", outcome="success", approved="false") == 1
    assert value(store, "aws_root_api_calls_total", account_id=B, category="read_only", outcome="success", approved="false") is None
    assert value(store, "aws_root_exporter_events_duplicate_total", source="s3_trail") == 1


def test_recovery_signal_series_appears_with_its_first_event() -> None:
    call = json.loads((FIXTURES / "assume_root_call.json").read_text())
    record = dict(call, eventSource="account.amazonaws.com", eventName="AcceptPrimaryEmailUpdate",
                  requestParameters={"accountId": B, "primaryEmail": "HIDDEN_DUE_TO_SECURITY_REASONS"},
                  responseElements={"status": "ACCEPTED"}, eventTime=(START + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    store = EventStore(START)
    store.register_accounts([A, B])
    assert not any(name == "aws_root_recovery_signals_total" for name, _ in samples(store))
    store.ingest(classify(record), "eventbridge_sqs", START + timedelta(minutes=2))  # type: ignore[arg-type]
    assert value(store, "aws_root_recovery_signals_total", account_id=B, signal="primary_email_updated", outcome="success") == 1
    assert [n for n, _ in samples(store) if n == "aws_root_recovery_signals_total"] == ["aws_root_recovery_signals_total"]
    # Not root activity: no last-activity time for the account.
    assert value(store, "aws_root_last_activity_timestamp_seconds", account_id=B) is None


def test_version_2_state_file_is_migrated(tmp_path: Path) -> None:
    state = json.loads(json.dumps(STATE_V1))
    state["version"] = 2
    state["counters"]["console_logins"] = [[*row[:3], "false", row[3]] for row in state["counters"]["console_logins"]]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    store = EventStore.load(path)
    assert value(store, "aws_root_console_logins_total", account_id=A, outcome="success", mfa="true", approved="false", mfa_kind="unknown") == 3
    assert store.pending_count() == 0 and len(store.assume_root_keys) == 0
    store.save(path)
    saved = json.loads(path.read_text())
    assert (saved["version"], saved["assume_root_keys"], saved["pending"], saved["counters"]["recovery_signals"]) == (5, {}, [], [])


def test_version_3_state_file_gains_the_factor_of_each_login(tmp_path: Path) -> None:
    state = json.loads(json.dumps(STATE_V1))
    state["version"] = 3
    state["counters"]["console_logins"] = [
        [A, "success", "false", "false", 4.0], [A, "success", "true", "true", 1.0], [A, "failure", "unknown", "false", 2.0],
    ]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    store = EventStore.load(path)
    logins: dict[str, float] = {}
    for (name, labels), count in samples(store).items():
        if name == "aws_root_console_logins_total":
            logins[dict(labels)["mfa_kind"]] = logins.get(dict(labels)["mfa_kind"], 0) + count
    # A login without MFA is "none" whatever the version; the factor of any other was not kept.
    assert logins == {"none": 4, "unknown": 3}
    store.save(path)
    assert sorted(json.loads(path.read_text())["counters"]["console_logins"]) == [
        [A, "failure", "unknown", "false", "unknown", 2.0],
        [A, "success", "false", "false", "none", 4.0],
        [A, "success", "true", "true", "unknown", 1.0],
    ]
