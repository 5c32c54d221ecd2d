"""Each control's Security Hub, Config and CIS ids: one mapping in code, README's table held to
it, and `audit --format json` naming them on every finding."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from exporter.posture.collect import CONTROLS
from exporter.posture.controls import CONTROL_IDS, NOT_APPLICABLE_WITHOUT_CREDENTIALS
from exporter.sandbox import load_scenario

from .conftest import ROOT
from .scenario_expect import collected, expected_error, expected_posture

ID_KEYS = {"security_hub", "config_rule", "cis_v5", "cis_v7"}


def _readme_section() -> str:
    return (ROOT / "README.md").read_text().split("\n## Controls and Security Hub\n")[1].split("\n## ")[0]


def _cell(text: str) -> str | None:
    text = text.strip().strip("`")
    return None if text == "none" else text


def test_every_control_has_its_ids() -> None:
    assert set(CONTROL_IDS) == set(CONTROLS)
    assert NOT_APPLICABLE_WITHOUT_CREDENTIALS <= set(CONTROLS)
    # Each Security Hub control and Config rule stands for one control only.
    for field in ("security_hub", "config_rule"):
        values = [getattr(ids, field) for ids in CONTROL_IDS.values() if getattr(ids, field)]
        assert len(values) == len(set(values)), field


def test_readme_control_table_is_the_mapping() -> None:
    rows = {}
    for line in _readme_section().splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = tuple(_cell(c) for c in match.group(2).split("|"))
    assert rows == {
        control: (ids.security_hub, ids.config_rule, ids.cis_v5, ids.cis_v7) for control, ids in CONTROL_IDS.items()
    }


def test_audit_json_names_the_ids_of_every_finding() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "audit", "--sandbox", "--format", "json"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    scenario = load_scenario()
    seen: set[str] = set()
    for account in scenario.all_accounts:
        if not collected(account) or expected_error(account):
            continue
        entry = next(a for a in report["accounts"] if a["account_id"] == account.id)
        want = expected_posture(account)
        for finding in entry["findings"]:
            assert set(finding["ids"]) == ID_KEYS, account.name
            assert finding["ids"] == CONTROL_IDS[finding["control"]].as_dict(), account.name
            seen.add(finding["control"])
        for result_ in entry["controls"]:
            control = result_["control"]
            assert result_["compliant"] == want["controls"][control], (account.name, control)
            assert result_["ids"] == CONTROL_IDS[control].as_dict()
            # Config's answer for the root as read: NOT_APPLICABLE for the MFA rules of a
            # root without credentials, null where the control has no Config rule.
            if CONTROL_IDS[control].config_rule is None:
                expected = None
            elif control in NOT_APPLICABLE_WITHOUT_CREDENTIALS and not want["present"]:
                expected = "NOT_APPLICABLE"
            else:
                expected = "COMPLIANT" if want["controls"][control] else "NON_COMPLIANT"
            assert result_["config_rule_result"] == expected, (account.name, control)
    # The scenario fails every control somewhere, so every control's ids were checked; but
    # root_email_domain_allowed, evaluated only with allowed_root_email_domains set
    # (tests/test_recovery.py runs it).
    assert seen == set(CONTROLS) - {"root_email_domain_allowed"}
    hardware = next(f for a in report["accounts"] for f in a["findings"] if f["control"] == "mfa_hardware")
    assert hardware["ids"] == {"security_hub": "IAM.6", "config_rule": "root-account-hardware-mfa-enabled", "cis_v5": "1.5", "cis_v7": "2.6"}
    credential_less = [a for a in scenario.all_accounts if collected(a) and not expected_error(a) and not expected_posture(a)["present"]]
    assert credential_less, "the scenario must hold a root without credentials"


def test_audit_table_shows_the_security_hub_id_of_each_failed_control() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "audit", "--sandbox"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    ).stdout
    scenario = load_scenario()
    for account in scenario.all_accounts:
        if not collected(account) or expected_error(account):
            continue
        failed = [c for c, ok in expected_posture(account)["controls"].items() if not ok]
        if not failed:
            continue
        cells = [f"{c} ({CONTROL_IDS[c].security_hub})" if CONTROL_IDS[c].security_hub else c for c in failed]
        row = next(line for line in out.splitlines() if line.startswith(account.id + " "))
        assert row.endswith("FAIL: " + ", ".join(cells)), row
