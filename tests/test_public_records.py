"""The classifier on CloudTrail records this project did not write (tests/fixtures/cloudtrail/public).

Each file holds one published record (or a labelled derived one, see SOURCES.md there);
expected.json says what the rules make of it, and why. Records are classified the way the
offline `classify` command does: the keys that `sts:AssumeRoot` records issued are learned
from the whole set first (AWS's own example, which classify rejects for lacking an eventID,
included), so a member's Root record is a privileged-task action only when a record in the
set vouches for it. The command itself is run too, and its totals compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.activity.assume_root_keys import AssumeRootKeys
from exporter.activity.classify import MalformedRecord, Verdict, assume_root_evidence, classify
from exporter.activity.records import Record, read_records_file
from exporter.activity.store import EventStore
from exporter.metrics import activity as activity_metrics
from exporter.metrics.textformat import render

from .conftest import ROOT

PUBLIC = Path(__file__).parent / "fixtures" / "cloudtrail" / "public"
EXPECTED: dict[str, dict[str, Any]] = json.loads((PUBLIC / "expected.json").read_text())
FILES = sorted(EXPECTED)

# kind in expected.json -> (Verdict.kind, Verdict.assumed_root); None = classify returns None.
VERDICT_KIND: dict[str, tuple[str, bool] | None] = {
    "root_login": ("console_login", False),
    "root_signin": ("signin_other", False),
    "root_api_call": ("api_call", False),
    "assumed_root_call": ("api_call", True),
    "assume_root_issued": ("assume_root_call", False),
    "recovery_signal": ("recovery_signal", False),
    "ignored": None,
}


def record_of(name: str) -> dict[str, Any]:
    items = list(read_records_file(PUBLIC / name))
    assert len(items) == 1 and isinstance(items[0], Record), f"{name}: {items}"
    return dict(items[0].data)


def issued_keys() -> AssumeRootKeys:
    keys = AssumeRootKeys()
    for name in FILES:
        evidence = assume_root_evidence(record_of(name))
        if evidence is not None:
            keys.learn(*evidence)
    return keys


KEYS = issued_keys()


def test_every_fixture_has_an_expectation_and_a_source() -> None:
    files = sorted(p.name for p in PUBLIC.glob("*.json") if p.name != "expected.json")
    assert files == FILES
    sources = (PUBLIC / "SOURCES.md").read_text()
    assert [f for f in files if f"`{f}`" not in sources] == []
    assert f"{len(files)} records:" in sources
    assert len(files) >= 30


@pytest.mark.parametrize("name", FILES)
def test_public_record(name: str) -> None:
    want = EXPECTED[name]
    record = record_of(name)
    if want["kind"] == "malformed" or "rejected" in want:
        with pytest.raises(MalformedRecord) as rejected:
            classify(record, (), KEYS)
        assert rejected.value.reason == want.get("rejected", rejected.value.reason), f"{name}: {want['why']}"
        return
    verdict = classify(record, (), KEYS)
    mapped = VERDICT_KIND[want["kind"]]
    if mapped is None:
        assert verdict is None, f"{name}: {want['why']}"
        return
    assert verdict is not None, f"{name} is {want['kind']} but classify returned None: {want['why']}"
    assert (verdict.kind, verdict.assumed_root) == mapped, f"{name}: {want['why']}"
    assert got_fields(verdict, record) == want_fields(want), f"{name}: {want['why']}"


def want_fields(want: dict[str, Any]) -> dict[str, Any]:
    return {
        "acting_account": want["account_id"],
        # AssumeRoot calls and a member's email change count for the member they act on.
        "counted_for": want.get("target_account_id", want["account_id"]),
        "outcome": want["outcome"],
        "mfa": want["mfa"],
        "mfa_kind": want.get("mfa_kind"),
        "category": want.get("category"),
        "recovery_signal": (want.get("signals") or [None])[0],
        "signin_event": want.get("signin_event"),
        "task_policy": want.get("task_policy"),
    }


def got_fields(verdict: Verdict, record: dict[str, Any]) -> dict[str, Any]:
    # The verdict keeps only the account it counts for; the acting account is the record's
    # caller, which for a Root record must be the account counted.
    acting = record["userIdentity"]["accountId"]
    if verdict.kind in ("console_login", "signin_other", "api_call"):
        assert verdict.account_id == acting
    return {
        "acting_account": acting,
        "counted_for": verdict.account_id,
        "outcome": verdict.outcome,
        "mfa": verdict.mfa,
        "mfa_kind": verdict.mfa_kind,
        "category": verdict.category,
        "recovery_signal": verdict.recovery_signal,
        "signin_event": verdict.signin_event,
        "task_policy": verdict.task_policy,
    }


def test_every_assume_root_record_vouches_for_the_key_it_issued() -> None:
    issuers = [name for name in FILES if EXPECTED[name]["kind"] == "assume_root_issued"]
    assert len(issuers) >= 2
    for name in issuers:
        want = EXPECTED[name]
        evidence = assume_root_evidence(record_of(name))
        assert evidence is not None, name
        key, issued = evidence
        assert (key, issued.account_id, issued.task_policy) == (want["issued_key"], want["target_account_id"], want["task_policy"])
    assert len(KEYS) == len(issuers)


def test_assumed_root_calls_need_the_set_s_assume_root_record() -> None:
    issued = {EXPECTED[name]["issued_key"]: name for name in FILES if EXPECTED[name]["kind"] == "assume_root_issued"}
    calls = [name for name in FILES if EXPECTED[name]["kind"] == "assumed_root_call"]
    assert len(calls) >= 2
    for name in calls:
        record = record_of(name)
        assert issued.get(record["userIdentity"]["accessKeyId"]) == EXPECTED[name]["issued_by"], name
        # Read alone, without the AssumeRoot record, the same record is root use.
        alone = classify(record)
        assert alone is not None and alone.assumed_root is False, name


def test_root_records_with_temporary_keys_not_issued_by_assume_root_are_root_use() -> None:
    # The set must hold the trap: ASIA-key Root records that no AssumeRoot record vouches for.
    unvouched = []
    for name in FILES:
        if EXPECTED[name]["kind"] in ("malformed", "ignored", "recovery_signal", "assume_root_issued"):
            continue
        record = record_of(name)
        identity = record["userIdentity"]
        key = identity.get("accessKeyId") or ""
        if identity.get("type") == "Root" and key.startswith("ASIA") and key not in KEYS:
            verdict = classify(record, (), KEYS)
            assert verdict is not None and verdict.assumed_root is False, name
            unvouched.append(name)
    assert len(unvouched) >= 5


def metric_samples(store: EventStore, now: datetime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render([activity_metrics.family(store, name, now) for name in activity_metrics.FAMILIES]).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.value
    }


def test_cross_account_pair_is_counted_once_for_the_acting_account() -> None:
    pairs: dict[str, list[str]] = {}
    for name in FILES:
        if "shared_event_id" in EXPECTED[name]:
            pairs.setdefault(EXPECTED[name]["shared_event_id"], []).append(name)
    assert pairs and all(len(names) == 2 for names in pairs.values())
    for shared, names in pairs.items():
        records = [record_of(n) for n in names]
        assert {r["sharedEventID"] for r in records} == {shared}
        assert len({r["eventID"] for r in records}) == 2
        assert len({r["recipientAccountId"] for r in records}) == 2
        verdicts = [classify(r, (), KEYS) for r in records]
        assert all(v is not None for v in verdicts)
        first = verdicts[0]
        assert first is not None
        store = EventStore(first.event_time)
        now = first.event_time
        assert [store.ingest(v, "s3_trail", first.event_time) for v in verdicts if v is not None] == [True, False]
        acting = EXPECTED[names[0]]["account_id"]
        want = EXPECTED[names[0]]
        counted = {k: v for k, v in metric_samples(store, now).items() if k[0] == "aws_root_api_calls_total"}
        assert counted == {
            (
                "aws_root_api_calls_total",
                (("account_id", acting), ("approved", "false"), ("category", want["category"]), ("outcome", want["outcome"])),
            ): 1.0
        }
        assert metric_samples(store, now)[("aws_root_exporter_events_duplicate_total", (("source", "s3_trail"),))] == 1.0


def test_classify_command_totals_match_expected() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "classify", *(str(PUBLIC / name) for name in FILES)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    got = Counter((line["kind"], line["assumed_root"]) for line in lines)
    want = Counter(
        VERDICT_KIND[w["kind"]] for w in EXPECTED.values()
        if w["kind"] not in ("malformed", "ignored") and "rejected" not in w
    )
    assert got == want
    factors = {line["location"].split(" ")[0].rsplit("/", 1)[-1]: line["mfa_kind"] for line in lines}
    assert factors == {
        name: w.get("mfa_kind") for name, w in EXPECTED.items()
        if w["kind"] not in ("malformed", "ignored") and "rejected" not in w
    }
    assert set(factors.values()) == {"u2f", "totp", "none", "unknown", None}
    signals = Counter(line["recovery_signal"] for line in lines if line["recovery_signal"])
    assert signals == Counter(s for w in EXPECTED.values() for s in w.get("signals", []))
    by_file = {line["location"].split(" ")[0].rsplit("/", 1)[-1]: line["account_id"] for line in lines}
    assert by_file == {
        name: w.get("target_account_id", w["account_id"]) for name, w in EXPECTED.items()
        if w["kind"] not in ("malformed", "ignored") and "rejected" not in w
    }
    rejected = sorted(line.split(":", 1)[0].rsplit("/", 1)[-1] for line in result.stderr.splitlines())
    assert rejected == sorted(n for n, w in EXPECTED.items() if w["kind"] == "malformed" or "rejected" in w)
