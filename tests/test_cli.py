"""The commands a user types: `audit --sandbox` and `sandbox`, as real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

from exporter.sandbox import load_scenario

from .conftest import ROOT, child_pids, parse_metrics, reap, sample, stop_cleanly
from .scenario_expect import collected, expected_error


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_audit_sandbox_json_lists_every_account_and_fails() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "audit", "--sandbox", "--format", "json"],
        capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    scenario = load_scenario()
    active = {a.id for a in scenario.all_accounts if collected(a)}
    by_id = {a["account_id"]: a for a in report["accounts"]}
    assert set(by_id) == active
    assert by_id["210000000001"]["status"] == "ok"
    def failed(account_id: str) -> list[str]:
        return [finding["control"] for finding in by_id[account_id]["findings"]]

    assert failed("210000000003") == ["mfa_enabled", "mfa_hardware"]
    assert failed("210000000004") == ["mfa_enabled", "mfa_hardware", "no_access_keys"]
    assert failed("210000000002") == ["mfa_hardware", "security_contact_present"]
    assert failed("210000000008") == ["no_signing_certificates"]
    assert by_id["210000000009"]["status"] == "error" and by_id["210000000009"]["error"] == "assume_role_failed"
    assert by_id["210000000007"]["status"] == "ok" and by_id["210000000007"]["posture"]["credentials_present"] is False
    assert report["summary"]["errors"] == sum(1 for a in scenario.all_accounts if expected_error(a)) == 2
    assert report["organization_features"] == {"RootCredentialsManagement": True, "RootSessions": True}


def test_audit_passes_when_every_account_is_compliant() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "audit", "--sandbox"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**_env(), "AWS_ROOT_EXPORTER_INCLUDE_ACCOUNT_IDS": '["210000000001", "210000000006", "210000000007"]'},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 accounts: 3 ok, 0 with findings, 0 not collected" in result.stdout


def test_sandbox_command_serves_metrics_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "sandbox", "--web.listen-address", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=ROOT,
    )
    children: list[int] = []
    try:
        url = None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline and url is None:
            line = process.stdout.readline()
            lines.append(line)
            match = re.search(r"Exporter metrics:\s+(http://127\.0\.0\.1:\d+/metrics)", line)
            if match:
                url = match.group(1)
        assert url, "".join(lines)
        ready = url.replace("/metrics", "/-/ready")
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(ready, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        with urllib.request.urlopen(url, timeout=10) as response:
            families = parse_metrics(response.read().decode())
        # dev-sandbox: a password without MFA; prod-payments: a hardware device.
        assert sample(families, "aws_root_control_compliant", account_id="210000000003", control="mfa_enabled") == 0.0
        assert sample(families, "aws_root_control_compliant", account_id="210000000001", control="mfa_hardware") == 1.0
        children = child_pids(process.pid)
        assert children, "the sandbox organization runs in a child process"
        stop_cleanly(process)
    finally:
        reap(process)
    # The sandbox child process is gone with its parent.
    for child in children:
        assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"
