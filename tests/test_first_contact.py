"""First contact: each command run as a new user would, checking its exit status and message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from exporter.sandbox import SANDBOX_ENV, load_scenario

from .conftest import ROOT, reap, stop_cleanly
from .scenario_expect import collected, expected_error, skip_reason

SMALL_SCENARIO = """
management: {id: "123456789012", name: management, root: {mfa: hardware}}
accounts:
  - {id: "310000000001", name: only-member, ou: Teams/Blue, root: {mfa: none}}
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AWS_ROOT_EXPORTER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _run(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=timeout, env=_env(**env), cwd=ROOT)


def test_sandbox_without_moto_says_how_to_install(tmp_path: Path) -> None:
    # An installation without the sandbox extra: `import moto` fails as it would there.
    (tmp_path / "moto.py").write_text('raise ModuleNotFoundError("No module named \'moto\'", name="moto")\n')
    for command in (["sandbox", "--no-prometheus", "--web.listen-address", "127.0.0.1:0"], ["audit", "--sandbox"]):
        result = _run(*command, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", timeout=60)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "pip install 'aws-root-exporter[sandbox]'" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert "did not start" not in result.stderr


def test_bad_scenario_names_the_problem_and_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("accounts: [\n")
    bad_field = tmp_path / "bad-field.yaml"
    bad_field.write_text('management: {id: "123456789012", name: m}\naccounts: [{id: "12", name: x}]\n')
    cases = [(missing, "No such file"), (not_yaml, "not valid YAML"), (bad_field, "accounts.0.id")]
    for command in (["audit", "--sandbox", "--scenario"], ["sandbox", "--no-prometheus", "--scenario"]):
        for path, problem in cases:
            result = _run(*command, str(path), timeout=60)
            assert result.returncode == 2, (command, path, result.stderr)
            assert "scenario error" in result.stderr and str(path) in result.stderr and problem in result.stderr, result.stderr
            assert "Traceback" not in result.stderr


def test_sandbox_hint_and_inject_use_the_running_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "small.yaml"
    scenario.write_text(SMALL_SCENARIO)
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "sandbox", "--scenario", str(scenario), "--no-prometheus", "--web.listen-address", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=ROOT,
    )
    try:
        lines: list[str] = []
        hint = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and hint is None:
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            hint = re.search(r"aws-root-exporter inject --control-url (\S+) --account (\d{12})", line)
        assert hint, "".join(lines)
        assert "(2 accounts, 2 collected;" in "".join(lines)
        control, account = hint.groups()
        assert account == "310000000001"
        refused = subprocess.run(
            [sys.executable, "-m", "exporter", "inject", "--control-url", control, "--account", "210000000003"],
            capture_output=True, text=True, timeout=30, env=_env(), cwd=ROOT,
        )
        assert refused.returncode == 2, refused.stderr
        assert "210000000003 is not in the running scenario" in refused.stderr and "310000000001" in refused.stderr
        accepted = subprocess.run(
            [sys.executable, "-m", "exporter", "inject", "--control-url", control, "--account", account],
            capture_output=True, text=True, timeout=30, env=_env(), cwd=ROOT,
        )
        assert accepted.returncode == 0, accepted.stderr
        assert f"injected console-login in {account}" in accepted.stdout
        stop_cleanly(process)
    finally:
        reap(process)


def test_audit_table_shows_ou_paths_skips_and_errors() -> None:
    result = _run("audit", "--sandbox")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    scenario = load_scenario()
    rows = {line.split()[0]: line for line in out.splitlines() if re.match(r"^\d{12}\s", line)}
    assert set(rows) == {a.id for a in scenario.all_accounts if collected(a)}
    for account in scenario.all_accounts:
        if collected(account):
            assert f" {account.ou or 'Root'} " in rows[account.id], rows[account.id]
    # Skipped accounts counted by reason.
    reasons = {}
    for account in scenario.all_accounts:
        if skip_reason(account):
            reasons[skip_reason(account)] = reasons.get(skip_reason(account), 0) + 1
    assert len(reasons) == 3
    line = next(line for line in out.splitlines() if line.startswith("Skipped:"))
    for reason, count in reasons.items():
        assert f"{count} {reason.replace('_', ' ')}" in line, line
    # ... and each one named under the count.
    for account in scenario.all_accounts:
        if skip_reason(account):
            assert f"\n  {account.id} {account.name}: {skip_reason(account).replace('_', ' ')}\n" in out, out
    # Each failing account with AWS's own message.
    for account in scenario.all_accounts:
        if expected_error(account):
            assert re.search(rf"^  {account.id} {account.name}: \S+", out, re.M), out
    assert "is not authorized to perform: sts:AssumeRole" in out
    assert "Centralized root access features enabled: RootCredentialsManagement, RootSessions" in out


def test_audit_names_filtered_accounts() -> None:
    scenario = load_scenario()
    kept = [a.id for a in scenario.all_accounts if collected(a) and not expected_error(a)][:2]
    result = _run("audit", "--sandbox", "--format", "json", AWS_ROOT_EXPORTER_INCLUDE_ACCOUNT_IDS=json.dumps(kept))
    report = json.loads(result.stdout)
    assert [a["account_id"] for a in report["accounts"]] == sorted(kept)
    filtered = {(s["account_id"], s["account_name"]) for s in report["skipped_accounts"] if s["reason"] == "filtered"}
    assert filtered == {(a.id, a.name) for a in scenario.all_accounts if collected(a) and a.id not in kept}
    assert report["summary"]["skipped"]["filtered"] == len(filtered)
    table = _run("audit", "--sandbox", AWS_ROOT_EXPORTER_INCLUDE_ACCOUNT_IDS=json.dumps(kept)).stdout
    for account_id, name in filtered:
        assert f"\n  {account_id} {name}: filtered\n" in table, table


def test_audit_json_error_carries_aws_message_and_no_secret() -> None:
    result = _run("audit", "--sandbox", "--format", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    by_id = {a["account_id"]: a for a in report["accounts"]}
    network = by_id["210000000009"]
    assert network["error"] == "assume_role_failed"
    assert "AccessDenied" in network["error_message"] and "sts:AssumeRole" in network["error_message"]
    denied_one = by_id["210000000018"]  # one IAM operation denied
    assert denied_one["error"] == "access_denied" and "iam:ListVirtualMFADevices" in denied_one["error_message"]
    assert by_id["210000000001"]["ou_path"] == "Workloads/Prod" and by_id["123456789012"]["ou_path"] == "Root"
    assert SANDBOX_ENV["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr


def test_audit_tells_disabled_features_from_unreadable(tmp_path: Path) -> None:
    disabled = tmp_path / "disabled.yaml"
    disabled.write_text("organization: {root_access_features: []}\n" + SMALL_SCENARIO)
    unreadable = tmp_path / "unreadable.yaml"
    unreadable.write_text(SMALL_SCENARIO.replace(
        "root: {mfa: hardware}}", "root: {mfa: hardware}, faults: [{operation: ListOrganizationsFeatures, error: access_denied}]}", 1
    ))
    off = _run("audit", "--sandbox", "--scenario", str(disabled))
    assert "Centralized root access features enabled: none (RootCredentialsManagement and RootSessions are disabled)" in off.stdout, off.stdout
    unknown = _run("audit", "--sandbox", "--scenario", str(unreadable))
    assert "Centralized root access features: could not be read (access_denied: " in unknown.stdout, unknown.stdout
    assert "enabled: none" not in unknown.stdout
    report = json.loads(_run("audit", "--sandbox", "--format", "json", "--scenario", str(unreadable)).stdout)
    assert report["organization_features"] is None and report["organization_features_error"].startswith("access_denied")
