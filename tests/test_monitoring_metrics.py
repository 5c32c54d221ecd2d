"""The proof-of-sight families as /metrics shows them (exporter/metrics/monitoring.py): exact
lines from a known coverage, the problems of other producers, no accounts collected, and the
section keys that decide when they are rendered again."""

from __future__ import annotations

import time
from types import MappingProxyType

from prometheus_client.utils import floatToGoString as go

from exporter.config.settings import load_settings
from exporter.discovery.accounts import Account
from exporter.engine.state import CollectorStatus, ExporterState, Snapshot
from exporter.metrics.monitoring import MonitoringFamilies
from exporter.metrics.textformat import render
from exporter.monitoring.coverage import Coverage, configured_sources
from exporter.monitoring.problems import ALL, EVENTBRIDGE, LOOKUP, PathProblem

A, B = "111111111111", "222222222222"
QUEUE = "https://sqs.us-east-1.amazonaws.com/999999999999/root-activity"
SESSION = "aws-root-exporter"


def setup(now: float) -> tuple[ExporterState, MonitoringFamilies, Coverage]:
    settings = load_settings(overrides={"eventbridge_queue_url": QUEUE, "canary_bounds_seconds": {"eventbridge_sqs": 60, "lookup_events": 120}, "canary_interval_seconds": 60})
    state = ExporterState(600)
    accounts = (Account(A, name="prod", role_arn=f"arn:aws:iam::{A}:role/R"), Account(B, name="dev", role_arn=f"arn:aws:iam::{B}:role/R"))
    status = {(a.account_id, "posture"): CollectorStatus(True, now) for a in accounts}
    state.publish(Snapshot(accounts=accounts, status=MappingProxyType(status), completed_at=now))
    coverage = Coverage(configured_sources(settings), settings.canary_bounds_seconds, settings.canary_interval_seconds, SESSION)
    return state, MonitoringFamilies(state, settings, coverage), coverage


def lines(families) -> list[str]:
    return [line for line in render(families).decode().splitlines() if not line.startswith("#")]


def test_accounts_by_state_and_one_series_per_blind_path() -> None:
    # /metrics reads the clock: "now" is t0 + 100.
    t0 = float(int(time.time()) - 100)
    state, monitoring, coverage = setup(t0)
    coverage.attempted(A, "us-east-1", t0)
    coverage.attempted(B, "us-east-1", t0 - 90)
    for account in (A, B):
        coverage.made(account, f"arn:aws:sts::{account}:assumed-role/R/{SESSION}", t0)
    coverage.seen(A, "us-east-1", EVENTBRIDGE, "e1", t0 + 90, t0 + 95)
    coverage.seen(A, "us-east-1", LOOKUP, "e1", t0 + 90, t0 + 95)
    coverage.seen(B, "us-east-1", LOOKUP, "e2", t0 + 90, t0 + 95)
    # B's EventBridge canary never came: blind from its first attempt plus bound plus two intervals.
    # A problem of the configuration checks, on two sources, and an account that left.
    state.monitoring_problems["checks"] = (PathProblem(A, "eu-west-1", (EVENTBRIDGE, "s3_trail"), "rule_disabled", t0 + 5),)
    state.monitoring_problems["organization"] = (PathProblem("333333333333", "", (ALL,), "left_organization", t0 + 7),)
    shown = lines(monitoring.coverage_families())
    accounts = [line for line in shown if line.startswith("aws_root_monitoring_accounts{")]
    assert accounts == [
        'aws_root_monitoring_accounts{region="us-east-1",source="eventbridge_sqs",state="proven"} 1.0',
        'aws_root_monitoring_accounts{region="us-east-1",source="eventbridge_sqs",state="pending"} 0.0',
        'aws_root_monitoring_accounts{region="us-east-1",source="eventbridge_sqs",state="blind"} 1.0',
        'aws_root_monitoring_accounts{region="us-east-1",source="lookup_events",state="proven"} 2.0',
        'aws_root_monitoring_accounts{region="us-east-1",source="lookup_events",state="pending"} 0.0',
        'aws_root_monitoring_accounts{region="us-east-1",source="lookup_events",state="blind"} 0.0',
    ]
    blind = sorted(line for line in shown if line.startswith("aws_root_monitoring_blind_since"))
    name = "aws_root_monitoring_blind_since_timestamp_seconds"
    assert blind == sorted([
        f'{name}{{account_id="111111111111",account_name="prod",reason="rule_disabled",region="eu-west-1",source="eventbridge_sqs"}} {go(t0 + 5)}',
        f'{name}{{account_id="111111111111",account_name="prod",reason="rule_disabled",region="eu-west-1",source="s3_trail"}} {go(t0 + 5)}',
        f'{name}{{account_id="222222222222",account_name="dev",reason="canary_missing",region="us-east-1",source="eventbridge_sqs"}} {go(t0 - 90 + 60 + 2 * 60)}',
        f'{name}{{account_id="333333333333",account_name="",reason="left_organization",region="",source="all"}} {go(t0 + 7)}',
    ])


def test_no_account_collected_is_one_organization_series() -> None:
    t0 = 1_800_000_000.0
    state, monitoring, _ = setup(t0)
    failed = {(A, "posture"): CollectorStatus(False, None, "access_denied"), (B, "posture"): CollectorStatus(False, None, "access_denied")}
    state.publish(Snapshot(accounts=state.snapshot.accounts, status=MappingProxyType(failed), completed_at=t0 + 600))
    blind = [line for line in lines(monitoring.coverage_families()) if line.startswith("aws_root_monitoring_blind_since")]
    assert blind == [
        f'aws_root_monitoring_blind_since_timestamp_seconds{{account_id="",account_name="",reason="no_accounts_collected",region="",source="all"}} {go(t0 + 600)}'
    ]
    # Still none at the next sweep: the same since.
    state.publish(Snapshot(accounts=state.snapshot.accounts, status=MappingProxyType(failed), completed_at=t0 + 1200))
    assert [line for line in lines(monitoring.coverage_families()) if "no_accounts_collected" in line] == blind
    # One account collected again: gone.
    state.publish(Snapshot(accounts=state.snapshot.accounts, status=MappingProxyType({(A, "posture"): CollectorStatus(True, t0)}), completed_at=t0 + 1800))
    assert not [line for line in lines(monitoring.coverage_families()) if line.startswith("aws_root_monitoring_blind_since")]


def test_the_coverage_key_moves_with_problems_and_sweeps_not_with_steady_canaries() -> None:
    t0 = 1_800_000_000.0
    state, monitoring, coverage = setup(t0)
    coverage.attempted(A, "us-east-1", t0)
    coverage.seen(A, "us-east-1", LOOKUP, "e1", t0, t0 + 1)
    key = monitoring.coverage_key()
    coverage.seen(A, "us-east-1", LOOKUP, "e2", t0 + 60, t0 + 61)  # proven stays proven
    assert monitoring.coverage_key() == key
    state.monitoring_problems["checks"] = (PathProblem(A, "us-east-1", (LOOKUP,), "check_failed", t0),)
    assert monitoring.coverage_key() != key
    key = monitoring.coverage_key()
    state.publish(state.snapshot)
    assert monitoring.coverage_key() != key


def test_the_delay_histogram_has_every_configured_source_from_the_start() -> None:
    t0 = 1_800_000_000.0
    _, monitoring, coverage = setup(t0)
    shown = lines(monitoring.delay_families())
    assert 'aws_root_monitoring_canary_delay_seconds_count{source="eventbridge_sqs"} 0.0' in shown
    assert 'aws_root_monitoring_canary_delay_seconds_count{source="lookup_events"} 0.0' in shown
    assert not [line for line in shown if "s3_trail" in line]
    key = monitoring.sections()[1].key()
    coverage.seen(A, "us-east-1", EVENTBRIDGE, "e1", t0, t0 + 7)
    assert monitoring.sections()[1].key() != key
    shown = lines(monitoring.delay_families())
    assert 'aws_root_monitoring_canary_delay_seconds_bucket{le="5.0",source="eventbridge_sqs"} 0.0' in shown
    assert 'aws_root_monitoring_canary_delay_seconds_bucket{le="10.0",source="eventbridge_sqs"} 1.0' in shown
    assert 'aws_root_monitoring_canary_delay_seconds_sum{source="eventbridge_sqs"} 7.0' in shown
