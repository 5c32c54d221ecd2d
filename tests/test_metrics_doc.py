"""README.md (Metrics) lists exactly what /metrics exposes: names, types and labels.

The exporter runs against the sandbox with every kind of data present (posture through
AssumeRoot and the credential report, a throttled account, root activity of every kind),
so every documented family has samples whose labels can be compared.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from datetime import datetime, timedelta, timezone

from exporter.sandbox import Sandbox, Scenario
from exporter.sandbox.records import make_record

from .conftest import ROOT, running_exporter, sandbox_settings

FIXTURES = ROOT / "tests" / "fixtures" / "cloudtrail"
ACCOUNT = "210000000003"


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    rows = {}
    for line in (ROOT / "README.md").read_text().split("\n## Metrics\n")[1].split("\n## ")[0].splitlines():
        match = re.match(r"^\| `(aws_root_[a-z0-9_]+)` \| (counter|gauge|histogram) \|([^|]*)\| (stable|experimental) \|", line)
        assert match or not line.startswith("| `aws_root_"), f"a metric row without type, labels and stability: {line[:80]}"
        if match:
            labels = frozenset(re.findall(r"`([a-z_]+)`", match.group(3)))
            assert match.group(1) not in rows, f"{match.group(1)} documented twice"
            rows[match.group(1)] = (match.group(2), labels)
    return rows


def _assume_root_call(target: str) -> dict:
    record = json.loads((FIXTURES / "assume_root_call.json").read_text())
    record = copy.deepcopy(record)
    record["requestParameters"]["targetPrincipal"] = target
    record["eventID"] = "0b8d5b0e-6a3c-4d1e-9f3c-000000000001"
    return _now(record)


def _now(record: dict) -> dict:
    """The fixture, happening now (older records are history and do not move counters)."""
    return record | {"eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


async def test_documented_metrics_are_exactly_the_exposed_ones(sandbox: Sandbox, default_scenario: Scenario) -> None:
    scenario = default_scenario.model_copy(deep=True)
    scenario.account("ml-research").faults = ["throttle_iam"]
    # Its forwarder rule is disabled: a blind EventBridge path (rule_disabled) to document.
    scenario.account("ml-research").monitoring.forwarder = "disabled"
    sandbox.reset(scenario)
    settings = sandbox_settings(
        sandbox,
        assume_root_audit=True,
        eventbridge_queue_url=sandbox.events_queue_url,
        sqs_wait_seconds=1,
        lookup_events_enabled=True,
        include_account_ids=[ACCOUNT, "210000000004", "210000000013", "123456789012"],
        # A window elsewhere, so the window families have samples and the activity stays unapproved.
        break_glass_windows=[{"account_id": "210000000004", "start": datetime.now(timezone.utc) - timedelta(hours=1),
                              "end": datetime.now(timezone.utc) + timedelta(hours=1), "ticket": "CHG-DOC"}],
    )
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        records = [
            make_record("console-login", ACCOUNT),
            make_record("password-recovery", ACCOUNT),
            make_record("api-call", ACCOUNT),
            _assume_root_call(ACCOUNT),
            _now(json.loads((FIXTURES / "assumed_root_session_marker.json").read_text())) | {"recipientAccountId": ACCOUNT},
            _now(json.loads((FIXTURES / "recovery_accept_primary_email_update.json").read_text())),
            _now(json.loads((ROOT / "tests" / "fixtures" / "tamper" / "stratus__cloudtrail_stop.json").read_text())) | {"recipientAccountId": ACCOUNT},
        ]
        for record in records:
            sandbox.inject(record, lookup=False, s3=False)
        sandbox.client("sqs").send_message(QueueUrl=sandbox.events_queue_url, MessageBody="{not json")
        async with asyncio.timeout(30):
            while True:
                families = await exporter.metrics()
                if all(families[n].samples for n in ("aws_root_assume_root_calls", "aws_root_signin_events", "aws_root_last_event_info", "aws_root_api_calls_by_event_source", "aws_root_exporter_events_rejected", "aws_root_recovery_signals", "aws_root_monitoring_tamper_events")):
                    break
                await asyncio.sleep(0.2)
        await exporter.exporter.activity.poll_lookup_events()
        # A canary in each account, and a configuration check that finds ml-research's rule off.
        await exporter.exporter.canary.round()
        await exporter.exporter.checks.check()
        families = await exporter.metrics()

    docs = documented()
    exposed: dict[str, tuple[str, frozenset[str]]] = {}
    for family in families.values():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = frozenset(k for s in family.samples for k in s.labels if k != "le")
        exposed[name] = (family.type, labels)
    assert set(docs) == set(exposed), f"only documented: {sorted(set(docs) - set(exposed))}; only exposed: {sorted(set(exposed) - set(docs))}"
    for name, (kind, labels) in docs.items():
        assert exposed[name][0] == kind, f"{name}: documented {kind}, exposed {exposed[name][0]}"
        assert families_with_samples(families, name), f"{name} has no sample to compare"
        assert exposed[name][1] == labels, f"{name}: documented labels {sorted(labels)}, exposed {sorted(exposed[name][1])}"
    # Conventions (README, Metrics): an info metric is 1; an enum gauge has exactly one
    # state at 1 per label set without `state`.
    for family in families.values():
        if family.name.endswith("_info"):
            assert {s.value for s in family.samples} == {1.0}, family.name
        if family.name.endswith("_state"):
            current: dict[tuple, float] = {}
            for s in family.samples:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "state"))
                current[key] = current.get(key, 0.0) + s.value
            assert set(current.values()) == {1.0}, family.name


def families_with_samples(families: dict, name: str) -> bool:
    base = name[: -len("_total")] if name.endswith("_total") else name
    return bool(families[base].samples)
