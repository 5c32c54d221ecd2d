"""AwsRootScpFenceLost on the real exporter's output: a policy detached between two sweeps.

The exporter runs against the sandbox organization (default scenario); between two posture
sweeps an administrator detaches the fence attached to one account (log-archive) through
boto3. Both /metrics expositions, as they are, become the input series of a
`promtool test rules` unit test over the shipped rules: the first one for ten minutes,
the second one after it, as two scrapes of a sweep each would give. The alert must fire
for that account only, with its name and its new state, and stay silent before the
detach, for the management account (not_applicable), for the accounts never fenced and
for the accounts whose fence comes from elsewhere.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.sandbox import MANAGEMENT_ACCOUNT_ID, Sandbox, Scenario

from .conftest import ROOT, parse_metrics, running_exporter, sample, sandbox_settings
from .test_scp_sandbox import fence_policy, fence_state, orgs_client
from .scenario_expect import collected

RULES_FILE = ROOT / "alerts" / "aws-root-exporter.rules.yml"
RUNBOOK = "https://github.com/aws-root-exporter/aws-root-exporter/blob/main/alerts/runbook.md"
JOB = {"job": "aws-root-exporter", "instance": "sandbox-exporter:9784"}
BEFORE_MINUTES = 10  # the first exposition at 0m..9m, the second one from 10m
AFTER_MINUTES = 10


def _series_key(name: str, labels: dict[str, str]) -> str:
    merged = {**labels, **JOB}
    inner = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(merged.items()))
    return f"{name}{{{inner}}}"


def _samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if math.isfinite(s.value):  # promtool's series notation has no NaN / Inf
                out[_series_key(s.name, s.labels)] = s.value
    return out


def input_series(before: str, after: str) -> list[dict[str, str]]:
    """Every finite sample of both expositions; `_` where a series is absent."""
    first, second = _samples(before), _samples(after)
    series = []
    for key in sorted(first.keys() | second.keys()):
        a = f"{first[key]:g}" if key in first else "_"
        b = f"{second[key]:g}" if key in second else "_"
        series.append({"series": key, "values": f"{a}x{BEFORE_MINUTES - 1} {b}x{AFTER_MINUTES}"})
    return series


def promtool_test(tmp_path: Any, series: list[dict[str, str]], cases: list[dict[str, Any]]) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package prometheus)"
    test = {
        "rule_files": [str(RULES_FILE)],
        "evaluation_interval": "1m",
        "tests": [{"name": "sandbox fence detached", "interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    path = tmp_path / "fence-lost.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False, allow_unicode=True))
    return subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False)


async def test_fence_lost_alert_fires_for_the_detached_account_only(sandbox: Sandbox, default_scenario: Scenario, tmp_path: Any) -> None:
    target = default_scenario.account("log-archive")
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        before_text = await exporter.metrics_text()
        orgs_client(sandbox).detach_policy(PolicyId=sandbox.scp_ids["DenyRootUser"], TargetId=target.id)
        await exporter.exporter.sweeper.sweep()
        after_text = await exporter.metrics_text()
    before, after = parse_metrics(before_text), parse_metrics(after_text)

    # What the exporter saw: the account's fence went 1 -> 0 and nothing else changed.
    assert fence_state(before, target.id) == "fenced"
    assert fence_policy(before, target.id) == sandbox.scp_ids["DenyRootUser"]
    new_state = fence_state(after, target.id)
    assert new_state == "not_fenced"
    members = [a for a in default_scenario.accounts if collected(a)]
    changed = [a.name for a in members if fence_state(before, a.id) != fence_state(after, a.id)]
    assert changed == ["log-archive"]
    # The negative cases are present in the data: a management account, never-fenced
    # members, and members fenced by a policy elsewhere (the Workloads OU).
    assert fence_state(after, MANAGEMENT_ACCOUNT_ID) == "not_applicable"
    never = [a.id for a in members if fence_state(before, a.id) == "not_fenced"]
    still = [a.id for a in members if fence_state(after, a.id) == "fenced"]
    assert never and still

    info = next(
        s.labels
        for s in after["aws_root_account_info"].samples
        if s.labels["account_id"] == target.id
    )
    labels = {"severity": "warning", "account_id": target.id}
    labels |= {k: info[k] for k in ("account_name", "ou_name") if info.get(k)}  # empty labels are dropped
    assert labels["account_name"] == "log-archive"
    description = (
        f"The root user of account {target.id} (log-archive) was fenced by an SCP in the last 1d"
        " and is not any more: its root can call AWS APIs again."
        f" It is now {new_state}. It was fenced by {sandbox.scp_ids['DenyRootUser']}."
    )
    assert sample(after, "aws_root_scp_policy_type_enabled") == 1.0

    fence_lost = [
        {
            "exp_labels": labels,
            "exp_annotations": {
                "summary": "A member account's root user is no longer fenced by an SCP.",
                "description": description,
                "runbook_url": f"{RUNBOOK}#awsrootscpfencelost",
            },
        }
    ]
    cases = [
        # Ten minutes of the first exposition: every fence holds, nothing fires.
        {"eval_time": "9m", "alertname": "AwsRootScpFenceLost", "exp_alerts": []},
        # The first evaluation on the second exposition: exactly the detached account.
        {"eval_time": "10m", "alertname": "AwsRootScpFenceLost", "exp_alerts": fence_lost},
        {"eval_time": "19m", "alertname": "AwsRootScpFenceLost", "exp_alerts": fence_lost},
        # SCPs stay enforced.
        {"eval_time": "19m", "alertname": "AwsRootScpNotEnforced", "exp_alerts": []},
    ]
    series = input_series(before_text, after_text)
    assert any(s["series"].startswith("aws_root_scp_fence_state{") for s in series)
    result = promtool_test(tmp_path, series, cases)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output and "FAILED" not in output, output

    # The same test with the fence left in place (the first exposition all along) is
    # silent, and a wrong expectation fails: the check is not vacuous.
    unchanged = input_series(before_text, before_text)
    assert promtool_test(tmp_path, unchanged, [cases[0], {**cases[1], "exp_alerts": []}]).returncode == 0
    assert promtool_test(tmp_path, unchanged, [cases[1]]).returncode != 0
