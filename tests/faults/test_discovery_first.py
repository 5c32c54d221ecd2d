"""Discovery failing on the very first sweep: Organizations throttled or denied from the
start, so no account list and no management account id are known yet. The failure must
still show as a failing `discovery` collector (so AwsRootCollectionFailing fires), never as
an empty, quiet organization."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exporter.sandbox import Sandbox, Scenario
from exporter.sandbox.faults import FaultInjector

from ..conftest import http_get, report_measurement, running_exporter, sample, sandbox_settings
from ..scenario_expect import collected
from .promtool_replay import replay

MANAGEMENT = "123456789012"  # the exporter's own (management) account in the sandbox
HEALTHY = "210000000001"
BLIND = "aws_root_monitoring_blind_since_timestamp_seconds"


@pytest.mark.parametrize(("kind", "reason"), [("throttle", "throttled"), ("access_denied", "access_denied")])
async def test_discovery_failing_from_the_first_sweep(sandbox: Sandbox, faults: FaultInjector, tmp_path: Path, kind: str, reason: str, default_scenario: Scenario) -> None:
    faults.add(kind, service="organizations")
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        ready, _, _ = await asyncio.to_thread(http_get, exporter.url + "/-/ready")
        failing = await exporter.metrics()
        await exporter.exporter.sweeper.sweep()
        second = await exporter.metrics()
        faults.clear()
        await exporter.exporter.sweeper.sweep()
        recovered = await exporter.metrics()
    report_measurement(f"discovery {kind} from the first sweep: ready {ready}, accounts {len(failing['aws_root_account_info'].samples)}")
    assert ready == 200  # the sweep completed; what it found (nothing) is in /metrics
    assert failing["aws_root_account_info"].samples == []
    assert sample(failing, "aws_root_exporter_collector_success", account_id=MANAGEMENT, collector="discovery") == 0.0
    assert sample(failing, "aws_root_exporter_collector_errors_total", account_id=MANAGEMENT, collector="discovery", reason=reason) == 1.0
    assert sample(failing, "aws_root_exporter_collector_last_success_timestamp_seconds", account_id=MANAGEMENT, collector="discovery") is None
    assert sample(second, "aws_root_exporter_collector_success", account_id=MANAGEMENT, collector="discovery") == 0.0
    assert sample(second, "aws_root_exporter_collector_errors_total", account_id=MANAGEMENT, collector="discovery", reason=reason) == 2.0
    # No series under an empty account id, but the one that says no account is collected
    # (AwsRootMonitoringBlind pages on it: nothing is watched).
    empty = [(s.name, s.labels.get("reason")) for f in second.values() for s in f.samples if s.labels.get("account_id") == ""]
    assert empty == [(BLIND, "no_accounts_collected")]
    # Organizations answers again: every account collected, discovery back to 1.
    assert len(recovered["aws_root_account_info"].samples) == len([a for a in default_scenario.all_accounts if collected(a)])
    assert sample(recovered, "aws_root_exporter_collector_success", account_id=MANAGEMENT, collector="discovery") == 1.0
    assert sample(recovered, "aws_root_exporter_collector_success", account_id=HEALTHY, collector="posture") == 1.0
    assert not [s for f in recovered.values() for s in f.samples if s.name == BLIND and s.labels["account_id"] == ""]

    # The shipped collection alert fires for the discovery collector.
    replay(failing, [
        {"eval_time": "15m", "alertname": "AwsRootCollectionFailing", "exp_alerts": []},
        {
            "eval_time": "25m",
            "alertname": "AwsRootCollectionFailing",
            "exp_alerts": [
                {
                    "exp_labels": {"severity": "warning", "account_id": MANAGEMENT, "collector": "discovery"},
                    "exp_annotations": {
                        "summary": "The exporter cannot collect an account.",
                        "description": f"Collector discovery has failed for account {MANAGEMENT} (name unknown) for more than 20m. "
                        f"Its root posture and activity are unknown (not compliant). Most frequent error reason in the last hour: {reason}.",
                        "runbook_url": "https://github.com/aws-root-exporter/aws-root-exporter/blob/main/alerts/runbook.md#awsrootcollectionfailing",
                    },
                }
            ],
        },
    ], tmp_path)
