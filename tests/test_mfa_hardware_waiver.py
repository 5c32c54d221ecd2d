"""The opt-in waiver of `mfa_hardware` for a member root behind an SCP fence
(mfa_hardware_waived_when_fenced): off by default; on, a fenced member root with a virtual MFA
device passes the control in `audit` (shown as waived, Config's answer unchanged) and in
/metrics alike, while an unfenced member and the management account (no SCP applies to it)
still fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from exporter.sandbox import Sandbox, load_scenario

from .conftest import ROOT, running_exporter, sample, sandbox_settings
from .test_scp_sandbox import orgs_client

SCENARIO = """
organization:
  scps:
    - name: DenyRootUser
      targets: [Fenced]
      content:
        Version: "2012-10-17"
        Statement:
          - Effect: Deny
            Action: "*"
            Resource: "*"
            Condition:
              StringLike:
                aws:PrincipalArn: "arn:aws:iam::*:root"
management: {id: "123456789012", name: management, root: {mfa: virtual}}
accounts:
  - {id: "310000000001", name: fenced-virtual, ou: Fenced, root: {mfa: virtual}}
  - {id: "310000000002", name: open-virtual, ou: Open, root: {mfa: virtual}}
"""
FENCED, OPEN, MANAGEMENT = "310000000001", "310000000002", "123456789012"


def _audit(tmp_path: Path, config: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    scenario = tmp_path / "fenced.yaml"
    scenario.write_text(SCENARIO)
    command = [sys.executable, "-m", "exporter", "audit", "--sandbox", "--scenario", str(scenario), *args]
    if config is not None:
        (tmp_path / "config.yaml").write_text(config)
        command += ["--config", str(tmp_path / "config.yaml")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def _mfa_hardware(report: dict, account_id: str) -> dict:
    account = next(a for a in report["accounts"] if a["account_id"] == account_id)
    return next(c for c in account["controls"] if c["control"] == "mfa_hardware")


def _rows(stdout: str) -> dict[str, str]:
    return {line.split()[0]: line for line in stdout.splitlines() if line[:12].isdigit()}


def test_off_by_default_a_fenced_root_fails_mfa_hardware(tmp_path: Path) -> None:
    table = _audit(tmp_path, None)
    assert table.returncode == 1, table.stdout + table.stderr
    assert _rows(table.stdout)[FENCED].endswith("fenced      FAIL: mfa_hardware (IAM.6)"), table.stdout
    report = json.loads(_audit(tmp_path, None, "--format", "json").stdout)
    assert _mfa_hardware(report, FENCED)["compliant"] is False
    assert _mfa_hardware(report, FENCED)["waived"] is None


def test_on_a_fenced_member_root_passes_and_shows_the_waiver(tmp_path: Path) -> None:
    config = "mfa_hardware_waived_when_fenced: true\n"
    table = _audit(tmp_path, config)
    rows = _rows(table.stdout)
    assert rows[FENCED].endswith("fenced      ok; waived: mfa_hardware (scp_fence)"), table.stdout
    assert rows[OPEN].endswith("NOT-FENCED  FAIL: mfa_hardware (IAM.6)"), table.stdout
    assert rows[MANAGEMENT].endswith("n/a         FAIL: mfa_hardware (IAM.6)"), table.stdout
    assert "3 accounts: 1 ok, 2 with findings, 0 not collected" in table.stdout
    # The other accounts still fail: the exit status does not change.
    assert table.returncode == 1

    report = json.loads(_audit(tmp_path, config, "--format", "json").stdout)
    fenced = next(a for a in report["accounts"] if a["account_id"] == FENCED)
    assert fenced["status"] == "ok" and fenced["findings"] == []
    control = _mfa_hardware(report, FENCED)
    # Security Hub IAM.6 / Config still fail this root: the waiver is the exporter's setting.
    assert (control["compliant"], control["waived"], control["config_rule_result"]) == (True, "scp_fence", "NON_COMPLIANT")
    assert control["ids"]["security_hub"] == "IAM.6"
    # The posture is what was measured.
    assert fenced["posture"]["mfa_hardware"] is False
    for account_id in (OPEN, MANAGEMENT):
        assert (_mfa_hardware(report, account_id)["compliant"], _mfa_hardware(report, account_id)["waived"]) == (False, None)


def test_a_fenced_root_without_mfa_still_fails_mfa_enabled(tmp_path: Path) -> None:
    # Only mfa_hardware is waived: a fenced root with no MFA at all is still a finding.
    config = "mfa_hardware_waived_when_fenced: true\n"
    scenario = SCENARIO.replace("name: fenced-virtual, ou: Fenced, root: {mfa: virtual}", "name: fenced-none, ou: Fenced, root: {mfa: none}")
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "none.yaml").write_text(scenario)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "audit", "--sandbox", "--scenario", str(tmp_path / "none.yaml"),
         "--config", str(tmp_path / "config.yaml")],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )
    assert _rows(result.stdout)[FENCED].endswith("fenced      FAIL: mfa_enabled (IAM.9); waived: mfa_hardware (scp_fence)"), result.stdout + result.stderr


async def test_metrics_follow_the_setting(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "fenced.yaml").write_text(SCENARIO)
    sandbox.reset(load_scenario(tmp_path / "fenced.yaml"))
    got: dict[bool, dict[str, float | None]] = {}
    for waived in (False, True):
        async with running_exporter(sandbox_settings(sandbox, mfa_hardware_waived_when_fenced=waived)) as exporter:
            await exporter.wait_for_sweeps(1)
            families = await exporter.metrics()
        got[waived] = {
            a: sample(families, "aws_root_control_compliant", account_id=a, control="mfa_hardware") for a in (FENCED, OPEN, MANAGEMENT)
        }
        assert sample(families, "aws_root_scp_fence_state", account_id=FENCED, state="fenced") == 1.0
    assert got[False] == {FENCED: 0.0, OPEN: 0.0, MANAGEMENT: 0.0}
    assert got[True] == {FENCED: 1.0, OPEN: 0.0, MANAGEMENT: 0.0}


async def test_the_waiver_goes_with_the_fence(sandbox: Sandbox, tmp_path: Path) -> None:
    # The posture is read again every sweep, but the waiver must follow the fence of the
    # sweep that publishes it: detached between two sweeps, the control fails at the second.
    (tmp_path / "fenced.yaml").write_text(SCENARIO)
    sandbox.reset(load_scenario(tmp_path / "fenced.yaml"))
    async with running_exporter(sandbox_settings(sandbox, mfa_hardware_waived_when_fenced=True)) as exporter:
        await exporter.wait_for_sweeps(1)
        before = await exporter.metrics()
        orgs_client(sandbox).detach_policy(PolicyId=sandbox.scp_ids["DenyRootUser"], TargetId=sandbox.ou_ids["Fenced"])
        await exporter.exporter.sweeper.sweep()
        after = await exporter.metrics()
    assert sample(before, "aws_root_control_compliant", account_id=FENCED, control="mfa_hardware") == 1.0
    assert sample(after, "aws_root_scp_fence_state", account_id=FENCED, state="not_fenced") == 1.0
    assert sample(after, "aws_root_control_compliant", account_id=FENCED, control="mfa_hardware") == 0.0


def test_the_waiver_needs_the_scp_check() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ROOT_EXPORTER_MFA_HARDWARE_WAIVED_WHEN_FENCED": "true", "AWS_ROOT_EXPORTER_SCP_CHECK": "false"}
    result = subprocess.run([sys.executable, "-m", "exporter", "audit", "--sandbox"], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr == (
        "aws-root-exporter: configuration error: mfa_hardware_waived_when_fenced:"
        " needs the SCP check: account_mode 'organization' and scp_check true\n"
    )
