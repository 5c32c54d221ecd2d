"""Monitoring tamper records: the pure verdict on public records, the EventBridge pattern, the
store and state file, the metric, `ActivityService.take` and the `classify` command.

The records are in tests/fixtures/tamper (SOURCES.md names each one's origin); expected.json
says what each one is, and why.
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.activity.classify import MalformedRecord, classify, eventbridge_pattern
from exporter.activity.records import Record, read_records_file
from exporter.activity.state_file import STATE_VERSION
from exporter.activity.store import EventStore
from exporter.activity.tamper import (
    EVENTS, SQS, TAMPER_EVENT_NAMES, TAMPER_EVENTS, TamperScope, TamperVerdict, classify_tamper, tamper_pattern)
from exporter.config.settings import load_settings
from exporter.discovery.accounts import Account
from exporter.engine.activity import ActivityService
from exporter.engine.state import ExporterState, Snapshot
from exporter.metrics.tamper import tamper_families
from exporter.metrics.textformat import render

from .test_aws_permissions_files import _matches

TAMPER = Path(__file__).parent / "fixtures" / "tamper"
EXPECTED: dict[str, dict[str, Any]] = json.loads((TAMPER / "expected.json").read_text())
FILES = sorted(EXPECTED)
ROOT_STOP = "panther-scenario__root_stop_logging_denied.json"
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def record_of(name: str) -> dict[str, Any]:
    items = list(read_records_file(TAMPER / name))
    assert len(items) == 1 and isinstance(items[0], Record), f"{name}: {items}"
    return dict(items[0].data)


def is_root(record: dict[str, Any]) -> bool:
    try:
        return classify(record) is not None
    except MalformedRecord:
        return False


def now(record: dict[str, Any], at: datetime = START) -> dict[str, Any]:
    return record | {"eventTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")}


def verdict(name: str) -> TamperVerdict:
    v = classify_tamper(record_of(name))
    assert v is not None, name
    return v


# --- the pure verdict ------------------------------------------------------------------


def test_every_fixture_has_an_expectation_and_a_source() -> None:
    files = sorted(p.name for p in TAMPER.glob("*.json") if p.name != "expected.json")
    assert files == FILES
    sources = (TAMPER / "SOURCES.md").read_text()
    assert [f for f in files if f"`{f}`" not in sources] == []
    assert f"{len(files)} records:" in sources


@pytest.mark.parametrize("name", FILES)
def test_public_record(name: str) -> None:
    want = EXPECTED[name]
    record = record_of(name)
    got = classify_tamper(record)
    if want["tamper"] is None:
        assert got is None, f"{name}: {want['why']}"
    else:
        assert got is not None, f"{name}: {want['why']}"
        assert {"account_id": got.account_id, "event_name": got.event_name, "outcome": got.outcome} == want["tamper"], want["why"]
        assert got.event_source == record["eventSource"] and got.detail
    assert is_root(record) is want["root"], f"{name}: {want['why']}"


def test_every_tamper_call_has_a_positive_record_and_failures_count() -> None:
    positives = [w["tamper"] for w in EXPECTED.values() if w["tamper"]]
    assert {p["event_name"] for p in positives} == TAMPER_EVENT_NAMES
    # A denied or failed attempt counts: someone tried.
    assert {p["event_name"] for p in positives if p["outcome"] == "failure"} >= {
        "StopLogging", "DeleteTrail", "LeaveOrganization", "SetQueueAttributes"}
    assert sum(1 for w in EXPECTED.values() if w["tamper"] is None) >= 10


def test_a_root_stop_logging_is_root_activity_and_tampering() -> None:
    record = record_of(ROOT_STOP)
    root = classify(record)
    assert root is not None and (root.kind, root.event_name, root.outcome) == ("api_call", "StopLogging", "failure")
    tamper = classify_tamper(record)
    assert tamper is not None and (tamper.account_id, tamper.outcome) == (root.account_id, "failure")
    assert tamper.principal_arn == "arn:aws:iam::493859302102:root"


def test_a_tamper_record_without_id_time_or_account_still_counts() -> None:
    v = verdict("derived__stop_logging_no_id_time_account.json")
    assert (v.account_id, v.event_time) == ("unknown", None)
    assert v.event_id.startswith("content-sha256:")
    assert verdict("derived__stop_logging_no_id_time_account.json").event_id == v.event_id


@pytest.mark.parametrize(
    "selectors, off",
    [
        ([{"readWriteType": "ReadOnly", "includeManagementEvents": True}, {"readWriteType": "WriteOnly"}], None),
        ([{}], None),  # defaults: All, management events included
        ([{"readWriteType": "All", "excludeManagementEventSources": ["kms.amazonaws.com"]}], None),
        ([{"readWriteType": "WriteOnly"}], "read management events off"),
        ([{"readWriteType": "ReadOnly"}], "write management events off"),
        ([{"readWriteType": "All", "includeManagementEvents": "false"}], "management events off"),
        ([], "management events off"),
    ],
)
def test_basic_event_selectors(selectors: list[dict[str, Any]], off: str | None) -> None:
    record = record_of("stratus__cloudtrail_event_selectors.json")
    record["requestParameters"] = {"trailName": "t", "eventSelectors": selectors}
    v = classify_tamper(record)
    assert (v.detail if v else None) == (None if off is None else f"trail t: {off}")


@pytest.mark.parametrize(
    "fields, covers",
    [
        ([{"field": "eventCategory", "equals": ["Management"]}], True),
        ([{"field": "eventCategory", "equals": ["Management"]}, {"field": "readOnly", "equals": ["true"]}], False),
        ([{"field": "eventCategory", "equals": ["Management"]}, {"field": "eventSource", "notEquals": ["rdsdata.amazonaws.com"]}], True),
        # Any other narrowing of management events vouches for nothing (fail closed).
        ([{"field": "eventCategory", "equals": ["Management"]}, {"field": "eventSource", "notEquals": ["sts.amazonaws.com"]}], False),
        ([{"field": "eventCategory", "equals": ["Management"]}, {"field": "eventName", "equals": ["ConsoleLogin"]}], False),
    ],
)
def test_advanced_event_selectors(fields: list[dict[str, Any]], covers: bool) -> None:
    record = record_of("derived__advanced_selectors_keep_management.json")
    record["requestParameters"]["advancedEventSelectors"] = [{"name": "m", "fieldSelectors": fields}]
    assert (classify_tamper(record) is None) is covers


def test_a_read_selector_and_a_write_selector_together_keep_every_management_event() -> None:
    record = record_of("derived__advanced_selectors_keep_management.json")
    record["requestParameters"]["advancedEventSelectors"] = [
        {"fieldSelectors": [{"field": "eventCategory", "equals": ["Management"]}, {"field": "readOnly", "equals": [flag]}]}
        for flag in ("true", "false")
    ]
    assert classify_tamper(record) is None


def test_update_trail_flags() -> None:
    record = record_of("derived__update_trail_multi_region_off.json")
    record["requestParameters"] = {"name": "org", "isOrganizationTrail": False, "isMultiRegionTrail": True}
    assert verdict_of(record).detail == "trail org: isOrganizationTrail=false"
    record["requestParameters"] = {"name": "org", "isMultiRegionTrail": True, "includeGlobalServiceEvents": True, "isOrganizationTrail": True}
    assert classify_tamper(record) is None


def verdict_of(record: dict[str, Any]) -> TamperVerdict:
    v = classify_tamper(record)
    assert v is not None
    return v


@pytest.mark.parametrize(
    "record",
    [
        None, [], "StopLogging", 42, {},
        {"eventName": "StopLogging"},
        {"eventName": "StopLogging", "eventSource": ["cloudtrail.amazonaws.com"]},
        {"eventName": ["StopLogging"], "eventSource": "cloudtrail.amazonaws.com"},
        {"eventName": "PutEventSelectors", "eventSource": "cloudtrail.amazonaws.com", "requestParameters": "x"},
        {"eventName": "PutEventSelectors", "eventSource": "cloudtrail.amazonaws.com",
         "requestParameters": {"advancedEventSelectors": ["x", {"fieldSelectors": "y"}]}},
        {"eventName": "SetQueueAttributes", "eventSource": "sqs.amazonaws.com", "requestParameters": {"attributes": ["Policy"]}},
    ],
)
def test_garbage_never_raises(record: Any) -> None:
    classify_tamper(record)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["false", "All", "Management", "Policy"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["field", "equals", "notEquals", "readWriteType", "includeManagementEvents", "fieldSelectors",
                         "eventSelectors", "advancedEventSelectors", "attributes", "Policy", "name", "isMultiRegionTrail"]),
        inner, max_size=4),
    max_leaves=12,
)


@given(st.sampled_from(sorted((s, n) for s, names in TAMPER_EVENTS.items() for n in names)), JSON, JSON)
def test_any_parameters_never_raise(call: tuple[str, str], params: Any, identity: Any) -> None:
    source, name = call
    classify_tamper({"eventSource": source, "eventName": name, "requestParameters": params, "userIdentity": identity,
                     "eventID": params, "eventTime": identity, "recipientAccountId": params})


# --- the scope: the monitoring's own rules and queues -------------------------------------

FORWARDER = "aws-root-activity-forwarder"
CENTRAL = "111122223333"  # the account of the EventBridge queue, where the central bus is
# The fixtures' account and queue (the SQS Developer Guide's example records).
FIXTURE_ACCOUNT, FIXTURE_QUEUE = "123456789012", "MyQueue"
EVENTS_QUEUE = f"https://sqs.us-east-1.amazonaws.com/{CENTRAL}/aws-root-activity"
SCOPE = TamperScope.of(FORWARDER, EVENTS_QUEUE, f"https://sqs.us-east-1.amazonaws.com/{CENTRAL}/org-trail-files")
RULE_FILES = ("derived__events_disable_rule.json", "derived__events_delete_rule.json", "derived__events_remove_targets.json")
QUEUE_FILES = ("derived__sqs_purge_queue.json", "derived__sqs_set_queue_attributes_policy.json",
               "derived__sqs_set_queue_attributes_policy_denied.json", "awsdocs-sqs__delete_queue.json")


def with_params(file: str, /, **params: Any) -> dict[str, Any]:
    record = record_of(file)
    record["requestParameters"] = {**record["requestParameters"], **params}
    return record


def rule_key(name: str) -> str:
    return "rule" if record_of(name)["eventName"] == "RemoveTargets" else "name"


@pytest.mark.parametrize("name", FILES)
def test_a_scope_leaves_out_other_rules_and_queues_and_nothing_else(name: str) -> None:
    """The fixtures' rules (cttest2) and queue (MyQueue) are not the monitoring's: with a
    scope their calls are ordinary changes; every other verdict is as without one."""
    record = record_of(name)
    unscoped = classify_tamper(record)
    if unscoped is not None and unscoped.event_source in (EVENTS, SQS):
        assert classify_tamper(record, SCOPE) is None
    else:
        assert classify_tamper(record, SCOPE) == unscoped


@pytest.mark.parametrize("name", RULE_FILES)
def test_the_forwarder_rule_counts_on_any_bus_and_other_rules_only_on_the_central_accounts_custom_buses(name: str) -> None:
    key = rule_key(name)
    assert classify_tamper(record_of(name), SCOPE) is None  # cttest2 on the default bus
    assert verdict_of_scoped(with_params(name, **{key: FORWARDER})).account_id == FIXTURE_ACCOUNT
    assert classify_tamper(with_params(name, **{key: FORWARDER, "eventBusName": "other-bus"}), SCOPE) is not None
    # The central stack's rule on the central bus has a name CloudFormation generates.
    central = with_params(name, **{key: "root-activity-CentralBusRule-1X2Y3Z", "eventBusName": "aws-root-activity"})
    assert classify_tamper(central, SCOPE) is None  # the fixture's account is not the central one
    central["recipientAccountId"] = central["userIdentity"]["accountId"] = CENTRAL
    assert verdict_of_scoped(central).account_id == CENTRAL
    central["requestParameters"]["eventBusName"] = f"arn:aws:events:us-east-1:{CENTRAL}:event-bus/aws-root-activity"
    assert classify_tamper(central, SCOPE) is not None
    # The central account's default bus, named by its ARN: an ordinary rule.
    central["requestParameters"]["eventBusName"] = f"arn:aws:events:us-east-1:{CENTRAL}:event-bus/default"
    assert classify_tamper(central, SCOPE) is None
    assert classify_tamper(with_params(name, eventBusName="default"), SCOPE) is None


@pytest.mark.parametrize("name", QUEUE_FILES)
def test_a_configured_queue_counts_whatever_host_its_url_names(name: str) -> None:
    assert classify_tamper(record_of(name), SCOPE) is None
    host_forms = ("https://sqs.us-east-2.amazonaws.com", "https://us-east-2.queue.amazonaws.com", "http://127.0.0.1:4566")
    for host in host_forms:
        configured = TamperScope.of(FORWARDER, f"{host}/{FIXTURE_ACCOUNT}/{FIXTURE_QUEUE}", None)
        # The record's own URL is AWS's example, https://sqs.us-east-2.amazon.com/...
        assert verdict_of_scoped(record_of(name), configured).account_id == FIXTURE_ACCOUNT, host
        trail_queue = TamperScope.of(FORWARDER, None, f"{host}/{FIXTURE_ACCOUNT}/{FIXTURE_QUEUE}")
        assert classify_tamper(record_of(name), trail_queue) is not None
    # The same queue name in another account, or another name in the same account: not ours.
    assert classify_tamper(record_of(name), TamperScope.of(FORWARDER, f"https://sqs.us-east-2.amazonaws.com/{CENTRAL}/{FIXTURE_QUEUE}", None)) is None
    assert classify_tamper(record_of(name), TamperScope.of(FORWARDER, f"https://sqs.us-east-2.amazonaws.com/{FIXTURE_ACCOUNT}/{FIXTURE_QUEUE}2", None)) is None


@pytest.mark.parametrize("name", [*RULE_FILES, *QUEUE_FILES])
def test_without_a_scope_every_rule_and_queue_counts(name: str) -> None:
    assert classify_tamper(record_of(name)) is not None
    assert classify_tamper(record_of(name), None) == classify_tamper(record_of(name))


@pytest.mark.parametrize("name", RULE_FILES)
@pytest.mark.parametrize("params", [{"_key": None}, {"_key": ""}, {"_key": ["x"]}, {"_key": "arn:aws:events:us-east-1:123456789012:rule/x"},
                                    {"eventBusName": ["default"]}, {"eventBusName": ""}, {"eventBusName": "bus name"}])
def test_a_rule_name_or_bus_that_cannot_be_read_counts(name: str, params: dict[str, Any]) -> None:
    key = rule_key(name)
    record = with_params(name, **{(key if k == "_key" else k): v for k, v in params.items()})
    if params.get("_key", "") is None:
        del record["requestParameters"][key]
    assert classify_tamper(record, SCOPE) is not None


def test_a_custom_bus_rule_change_of_an_unknown_account_counts() -> None:
    record = with_params("derived__events_disable_rule.json", eventBusName="partner-bus")
    assert classify_tamper(record, SCOPE) is None
    del record["recipientAccountId"], record["userIdentity"]["accountId"]
    assert verdict_of_scoped(record).account_id == "unknown"


@pytest.mark.parametrize("name", QUEUE_FILES)
@pytest.mark.parametrize("url", [None, "", "MyQueue", f"arn:aws:sqs:us-east-2:{FIXTURE_ACCOUNT}:MyQueue",
                                 f"https://sqs.us-east-2.amazonaws.com/{FIXTURE_ACCOUNT}", ["x"], "https://sqs.us-east-2.amazonaws.com/1234/MyQueue"])
def test_a_queue_url_that_cannot_be_read_counts(name: str, url: Any) -> None:
    record = with_params(name, queueUrl=url)
    if url is None:
        del record["requestParameters"]["queueUrl"]
    assert classify_tamper(record, SCOPE) is not None


def verdict_of_scoped(record: dict[str, Any], scope: TamperScope = SCOPE) -> TamperVerdict:
    v = classify_tamper(record, scope)
    assert v is not None
    return v


# --- the EventBridge pattern -------------------------------------------------------------


def test_the_rule_forwards_every_tamper_record_and_no_look_alike_of_another_service() -> None:
    pattern = eventbridge_pattern()
    assert all(piece in pattern["$or"] for piece in tamper_pattern())
    for name in FILES:
        record = record_of(name)
        event = {"detail-type": "AWS API Call via CloudTrail", "detail": record}
        if classify_tamper(record) is not None:
            assert _matches(pattern, event), name
        elif record.get("eventSource") not in TAMPER_EVENTS and record["userIdentity"].get("type") != "Root":
            assert not _matches(pattern, event), name


def test_the_pattern_fits_eventbridges_default_size() -> None:
    # EventBridge quotas: event pattern size, 2,048 characters by default (adjustable).
    assert len(json.dumps(eventbridge_pattern())) <= 2048


# --- store, state file, metric -------------------------------------------------------------


def test_store_counts_each_tamper_record_once_and_apart_from_root_activity() -> None:
    store = EventStore(START)
    record = now(record_of(ROOT_STOP))
    root, tamper = classify(record), classify_tamper(record)
    assert root is not None and tamper is not None
    assert store.ingest(root, "eventbridge_sqs", START) is True
    assert store.ingest_tamper(tamper, "eventbridge_sqs", START) is True  # same eventID, own namespace
    assert store.ingest_tamper(tamper, "s3_trail", START, count_duplicate=False) is False
    assert store.ingest_tamper(tamper, "s3_trail", START) is False
    assert store.tamper_counts() == {("493859302102", "StopLogging", "failure"): 1.0}
    assert store.counter("events_duplicate")[("s3_trail",)] == 1.0
    assert store.counter("api_calls") == {("493859302102", "administrative", "failure", "false"): 1.0}


def test_history_is_remembered_not_counted_and_a_record_without_time_counts_when_seen() -> None:
    store = EventStore(START)
    old = classify_tamper(now(record_of("stratus__cloudtrail_stop.json"), START - timedelta(days=2)))
    assert old is not None and store.ingest_tamper(old, "s3_trail", START) is True
    assert store.tamper_counts() == {}
    assert store.ingest_tamper(old, "s3_trail", START) is False
    timeless = verdict("derived__stop_logging_no_id_time_account.json")
    assert store.ingest_tamper(timeless, "s3_trail", START) is True
    assert store.tamper_counts() == {("unknown", "StopLogging", "success"): 1.0}


def test_state_file_keeps_tamper_counts_and_reads_version_4_unchanged(tmp_path: Path) -> None:
    store = EventStore(START)
    store.ingest_tamper(verdict_of(now(record_of("stratus__cloudtrail_stop.json"))), "eventbridge_sqs", START)
    path = tmp_path / "state.json"
    store.save(path)
    saved = json.loads(path.read_text())
    assert (saved["version"], saved["tamper_events"]) == (STATE_VERSION, [["143434273843", "StopLogging", "success", 1.0]])
    loaded = EventStore.load(path)
    assert loaded.tamper_counts() == store.tamper_counts()
    assert loaded.ingest_tamper(verdict_of(now(record_of("stratus__cloudtrail_stop.json"))), "s3_trail", START) is False
    # A version 4 file (before tamper records): everything it holds is read as it was.
    v4 = {k: v for k, v in saved.items() if k != "tamper_events"} | {"version": 4}
    path.write_text(json.dumps(v4))
    migrated = EventStore.load(path).to_state()
    assert migrated == v4 | {"version": STATE_VERSION, "tamper_events": []}
    bad = v4 | {"version": STATE_VERSION, "tamper_events": [["143434273843", "StopLogging", 1.0]]}
    path.write_text(json.dumps(bad))
    with pytest.raises(Exception, match="tamper_events has a bad row"):
        EventStore.load(path)


def test_the_metric_is_sparse_and_names_the_account() -> None:
    store = EventStore(START)
    state = ExporterState(600)
    state.publish(Snapshot(accounts=(Account(account_id="143434273843", name="prod-web"),)))
    assert b"aws_root_monitoring_tamper_events_total{" not in render(tamper_families(store, state))
    store.ingest_tamper(verdict_of(now(record_of("stratus__cloudtrail_stop.json"))), "eventbridge_sqs", START)
    store.ingest_tamper(verdict_of(now(record_of("stratus__organizations_leave_denied.json"))), "eventbridge_sqs", START)
    text = render(tamper_families(store, state)).decode()
    assert 'aws_root_monitoring_tamper_events_total{account_id="143434273843",account_name="prod-web",event_name="StopLogging",outcome="success"} 1.0' in text
    # Outside the organization: still counted, with an empty name.
    assert 'aws_root_monitoring_tamper_events_total{account_id="307578594326",account_name="",event_name="LeaveOrganization",outcome="failure"} 1.0' in text


# --- ActivityService.take -------------------------------------------------------------------


def service() -> tuple[ActivityService, EventStore]:
    store = EventStore(datetime.now(UTC))
    return ActivityService(types.SimpleNamespace(assume_root_listeners=[]), load_settings(None, {}), ExporterState(600), store), store  # type: ignore[arg-type]


def test_take_counts_tampering_by_any_principal_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    svc, store = service()
    record = now(record_of("stratus__cloudtrail_stop.json"), datetime.now(UTC))
    with caplog.at_level(logging.WARNING, logger="exporter.engine.activity"):
        assert svc.take(record, "eventbridge_sqs") is None  # not root activity
        svc.take(record, "s3_trail")
    assert store.tamper_counts() == {("143434273843", "StopLogging", "success"): 1.0}
    assert store.counter("events_duplicate")[("s3_trail",)] == 1.0
    (line,) = [r for r in caplog.records if r.getMessage() == "monitoring tamper"]
    assert (line.account_id, line.event_name, line.outcome, line.source, line.counted) == (  # type: ignore[attr-defined]
        "143434273843", "StopLogging", "success", "eventbridge_sqs", True)
    assert line.detail == "trail stratus-red-team-ct-stop-trail-buykxbqejv"  # type: ignore[attr-defined]


def test_take_counts_a_root_stop_logging_twice_once_per_meaning() -> None:
    svc, store = service()
    record = now(record_of(ROOT_STOP), datetime.now(UTC))
    assert svc.take(record, "eventbridge_sqs") is not None
    svc.take(record, "lookup_events")
    assert store.tamper_counts() == {("493859302102", "StopLogging", "failure"): 1.0}
    assert store.counter("api_calls") == {("493859302102", "administrative", "failure", "false"): 1.0}
    assert store.counter("events_duplicate")[("lookup_events",)] == 1.0  # one record, one duplicate


def test_a_malformed_root_record_is_rejected_as_such_and_its_tampering_still_counts() -> None:
    svc, store = service()
    record = copy.deepcopy(now(record_of(ROOT_STOP), datetime.now(UTC)))
    record["userIdentity"]["accountId"] = "not-an-account"
    del record["recipientAccountId"]
    assert svc.take(record, "eventbridge_sqs") is None
    assert store.counter("events_rejected") == {("eventbridge_sqs", "malformed_root_record"): 1.0}
    assert store.tamper_counts() == {("unknown", "StopLogging", "failure"): 1.0}


def test_take_counts_only_the_configured_rules_and_queues_and_follows_a_reload() -> None:
    settings = load_settings(None, {"eventbridge_queue_url": f"https://sqs.us-east-2.amazonaws.com/{FIXTURE_ACCOUNT}/{FIXTURE_QUEUE}"})
    store = EventStore(datetime.now(UTC))
    svc = ActivityService(types.SimpleNamespace(assume_root_listeners=[]), settings, ExporterState(600), store)  # type: ignore[arg-type]
    at = datetime.now(UTC)
    svc.take(now(record_of("derived__events_disable_rule.json"), at), "eventbridge_sqs")  # cttest2: not the forwarder
    svc.take(now(record_of("derived__sqs_purge_queue.json"), at), "eventbridge_sqs")  # the configured queue
    assert store.tamper_counts() == {(FIXTURE_ACCOUNT, "PurgeQueue", "success"): 1.0}
    # A reload assigns the settings' fields in place: the next record is judged by the new name.
    settings.forwarder_rule_name = "cttest2"
    svc.take(now(record_of("derived__events_delete_rule.json"), at), "eventbridge_sqs")
    assert store.tamper_counts() == {(FIXTURE_ACCOUNT, "PurgeQueue", "success"): 1.0, (FIXTURE_ACCOUNT, "DeleteRule", "success"): 1.0}


# --- the classify command ------------------------------------------------------------------


def classify_command(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("aws-root-exporter")
    return subprocess.run([str(exe), "classify", *args], capture_output=True, text=True, timeout=60)


def test_classify_prints_a_root_line_and_a_tamper_line_for_a_root_stop_logging() -> None:
    path = str(TAMPER / ROOT_STOP)
    result = classify_command(path, str(TAMPER / "panther__cloudtrail_started.json"))
    assert (result.returncode, result.stderr) == (0, "")
    root, tamper = (json.loads(line) for line in result.stdout.splitlines())
    assert (root["kind"], root["eventID"], root["location"]) == ("api_call", "1", path)
    assert tamper == {
        "kind": "monitoring_tamper", "eventID": "1", "account_id": "493859302102", "event_name": "StopLogging",
        "outcome": "failure", "event_time": "2020-11-01T08:30:03Z", "event_source": "cloudtrail.amazonaws.com",
        "region": "us-east-1", "principal_arn": "arn:aws:iam::493859302102:root",
        "detail": "trail acme-cloudtrail-us-east-1", "location": path,
    }


def test_classify_reports_a_malformed_root_record_and_still_prints_its_tampering(tmp_path: Path) -> None:
    record = record_of(ROOT_STOP)
    record["userIdentity"]["accountId"] = "x"
    del record["recipientAccountId"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    result = classify_command(str(path))
    assert result.returncode == 0
    assert result.stderr == (f"{path}: malformed record: neither userIdentity.accountId nor recipientAccountId is a "
                             "12-digit account id (eventID 1)\n")
    (line,) = (json.loads(line) for line in result.stdout.splitlines())
    assert (line["kind"], line["account_id"]) == ("monitoring_tamper", "unknown")


def test_classify_counts_every_rule_and_queue_without_a_configuration_file_and_only_its_own_with_one(tmp_path: Path) -> None:
    files = [str(TAMPER / name) for name in ("derived__events_disable_rule.json", "derived__sqs_purge_queue.json")]
    result = classify_command(*files)
    assert (result.returncode, result.stderr) == (0, "")
    assert [(line["kind"], line["event_name"]) for line in map(json.loads, result.stdout.splitlines())] == [
        ("monitoring_tamper", "DisableRule"), ("monitoring_tamper", "PurgeQueue")]
    config = tmp_path / "config.yaml"
    config.write_text(f"eventbridge_queue_url: https://sqs.us-east-1.amazonaws.com/{CENTRAL}/aws-root-activity\n")
    result = classify_command("--config", str(config), *files)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    config.write_text(f"s3_trail_queue_url: https://us-east-2.queue.amazonaws.com/{FIXTURE_ACCOUNT}/{FIXTURE_QUEUE}\nforwarder_rule_name: cttest2\n")
    result = classify_command("--config", str(config), *files)
    assert (result.returncode, result.stderr) == (0, "")
    assert [line["event_name"] for line in map(json.loads, result.stdout.splitlines())] == ["DisableRule", "PurgeQueue"]
