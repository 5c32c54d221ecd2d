"""Recovery exposure controls, both outcomes each: `root_email_domain_allowed` (the root email's
domain against `allowed_root_email_domains`) and `security_contact_present` (the security
alternate contact), through `audit` as a user runs it and through `/metrics`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from exporter.posture.controls import CONTROL_IDS
from exporter.sandbox import Sandbox, load_scenario

from .conftest import ROOT, running_exporter, sample, sandbox_settings

# Emails: one in the allowed domain (upper case, as people type it), one in a subdomain of
# it (another mail system: not allowed unless listed), one outside; one account without a
# security alternate contact.
SCENARIO = """\
management: {id: "123456789012", name: management, email: owner.root@Corp.Example, root: {mfa: hardware}}
accounts:
  - {id: "210000000001", name: allowed, email: aws+allowed@CORP.example, root: {mfa: hardware}}
  - {id: "210000000002", name: subdomain, email: aws+sub@mail.corp.example, root: {mfa: hardware}}
  - {id: "210000000003", name: outside, email: alice.personal@gmail.com, root: {mfa: hardware}, security_contact: false}
"""
ALLOWED = ["corp.EXAMPLE"]
EMAILS = ("owner.root@Corp.Example", "aws+allowed@CORP.example", "aws+sub@mail.corp.example", "alice.personal@gmail.com")
WANT_DOMAIN = {"123456789012": True, "210000000001": True, "210000000002": False, "210000000003": False}
WANT_CONTACT = {"123456789012": True, "210000000001": True, "210000000002": True, "210000000003": False}
TRUSTED_ACCESS_OFF = "organization: {account_trusted_access: false}\n"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def _files(tmp_path: Path, scenario: str, allowed: list[str] | None = ALLOWED) -> list[str]:
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario)
    args = ["--scenario", str(path)]
    if allowed is not None:
        config = tmp_path / "config.yaml"
        config.write_text(f"allowed_root_email_domains: {json.dumps(allowed)}\n")
        args += ["--config", str(config)]
    return args


def _controls(entry: dict) -> dict[str, bool]:
    return {c["control"]: c["compliant"] for c in entry["controls"]}


def test_audit_judges_the_root_email_domain_and_the_security_contact(tmp_path: Path) -> None:
    result = _run("audit", "--sandbox", "--format", "json", *_files(tmp_path, SCENARIO))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    by_id = {a["account_id"]: a for a in report["accounts"]}
    assert set(by_id) == set(WANT_DOMAIN)
    for account_id, entry in by_id.items():
        controls = _controls(entry)
        assert controls["root_email_domain_allowed"] == WANT_DOMAIN[account_id], account_id
        assert controls["security_contact_present"] == WANT_CONTACT[account_id], account_id
        failed = {f["control"] for f in entry["findings"]}
        assert ("root_email_domain_allowed" in failed) == (not WANT_DOMAIN[account_id])
        assert ("security_contact_present" in failed) == (not WANT_CONTACT[account_id])
        assert entry["recovery"]["security_contact"] == WANT_CONTACT[account_id]
        assert entry["recovery"]["security_contact_unknown_reason"] is None
    # The domain is shown, lower-cased; the address never is.
    assert by_id["210000000001"]["recovery"]["root_email_domain"] == "corp.example"
    assert by_id["210000000002"]["recovery"]["root_email_domain"] == "mail.corp.example"
    assert by_id["210000000003"]["recovery"]["root_email_domain"] == "gmail.com"
    for email in EMAILS:
        assert email.split("@")[0] not in result.stdout + result.stderr
    contact = next(f for f in by_id["210000000003"]["findings"] if f["control"] == "security_contact_present")
    assert contact["ids"] == {"security_hub": "Account.1", "config_rule": "security-account-information-provided", "cis_v5": "1.2", "cis_v7": "2.3"}
    config_results = {c["control"]: c["config_rule_result"] for c in by_id["210000000003"]["controls"]}
    assert config_results["security_contact_present"] == "NON_COMPLIANT"
    assert config_results["root_email_domain_allowed"] is None

    table = _run("audit", "--sandbox", *_files(tmp_path, SCENARIO))
    row = next(line for line in table.stdout.splitlines() if line.startswith("210000000003 "))
    assert row.endswith("FAIL: root_email_domain_allowed, security_contact_present (Account.1)"), row
    row = next(line for line in table.stdout.splitlines() if line.startswith("210000000001 "))
    assert row.endswith("  ok"), row


def test_without_allowed_domains_the_email_control_is_not_evaluated(tmp_path: Path) -> None:
    result = _run("audit", "--sandbox", "--format", "json", *_files(tmp_path, SCENARIO, allowed=None))
    report = json.loads(result.stdout)
    for entry in report["accounts"]:
        assert "root_email_domain_allowed" not in _controls(entry), entry["account_id"]
        assert entry["recovery"]["root_email_domain_allowed"] is None
    # Only the account without a security contact fails.
    assert [a["account_id"] for a in report["accounts"] if a["status"] != "ok"] == ["210000000003"]


def test_trusted_access_off_leaves_the_members_contacts_unknown_never_compliant(tmp_path: Path) -> None:
    result = _run("audit", "--sandbox", "--format", "json", *_files(tmp_path, TRUSTED_ACCESS_OFF + SCENARIO, allowed=None))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    by_id = {a["account_id"]: a for a in report["accounts"]}
    # The management account reads its own contact without AccountId: no trusted access needed.
    assert _controls(by_id["123456789012"])["security_contact_present"] is True
    for account_id in ("210000000001", "210000000002", "210000000003"):
        entry = by_id[account_id]
        assert "security_contact_present" not in _controls(entry), account_id
        assert entry["recovery"]["security_contact"] is None
        assert entry["recovery"]["security_contact_unknown_reason"] == "trusted_access_disabled"
        assert "enable trusted access with AWS Account Management" in entry["recovery"]["security_contact_unknown_message"]
    # Every readable control passes, and still the audit fails: unknown is not compliant.
    assert all(a["status"] == "ok" for a in report["accounts"])
    assert result.stderr.count("trusted access for AWS Account Management is not enabled") == 1, result.stderr
    table = _run("audit", "--sandbox", *_files(tmp_path, TRUSTED_ACCESS_OFF + SCENARIO, allowed=None))
    assert table.returncode == 1
    assert (
        "Security alternate contact unknown (trusted_access_disabled) in 3 accounts: security_contact_present not evaluated there;"
        " trusted access for AWS Account Management is off in AWS Organizations"
        " (aws organizations enable-aws-service-access --service-principal account.amazonaws.com)\n"
    ) in table.stdout, table.stdout


def test_a_bad_allowed_domain_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _run("audit", "--sandbox", *_files(tmp_path, SCENARIO, allowed=["security@corp.example"]))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "allowed_root_email_domains" in result.stderr and "'security@corp.example' is not a domain" in result.stderr, result.stderr


async def test_metrics_show_both_outcomes_and_no_series_when_unknown(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    sandbox.reset(load_scenario(path))
    async with running_exporter(sandbox_settings(sandbox, allowed_root_email_domains=ALLOWED)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
        text = await exporter.metrics_text()
    for account_id in WANT_DOMAIN:
        assert sample(families, "aws_root_control_compliant", account_id=account_id, control="root_email_domain_allowed") == float(WANT_DOMAIN[account_id])
        assert sample(families, "aws_root_control_compliant", account_id=account_id, control="security_contact_present") == float(WANT_CONTACT[account_id])
    assert "@" not in text

    path.write_text(TRUSTED_ACCESS_OFF + SCENARIO)
    sandbox.reset(load_scenario(path))
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    assert sample(families, "aws_root_control_compliant", account_id="123456789012", control="security_contact_present") == 1.0
    for account_id in ("210000000001", "210000000002", "210000000003"):
        assert sample(families, "aws_root_control_compliant", account_id=account_id, control="security_contact_present") is None
        assert sample(families, "aws_root_control_compliant", account_id=account_id, control="root_email_domain_allowed") is None
        # The posture itself was read; the unreadable contact is counted, not a failed posture.
        assert sample(families, "aws_root_exporter_collector_success", account_id=account_id, collector="posture") == 1.0
        assert sample(families, "aws_root_exporter_collector_errors_total", account_id=account_id, collector="security_contact", reason="access_denied") == 1.0


def test_every_recovery_control_has_ids() -> None:
    assert CONTROL_IDS["root_email_domain_allowed"].as_dict() == {"security_hub": None, "config_rule": None, "cis_v5": None, "cis_v7": None}
