"""The factor of root console logins through the running exporter (issue 21): records with
each kind of MFA device reach `aws_root_console_logins_total{mfa_kind}`, and the setting
`required_signin_mfa` reaches `aws_root_console_login_mfa_kind_accepted`, following a reload.
The alert that joins the two is tested by promtool (alerts/tests/signin_mfa.yml)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import yaml

from exporter.sandbox.records import make_record

from .conftest import ROOT, running_exporter, sample, sandbox_settings
from .test_reload import post

ACCOUNT = "210000000001"
FIXTURES = ROOT / "tests" / "fixtures" / "cloudtrail" / "public"


def accepted(families: dict) -> dict[str, float]:
    return {s.labels["mfa_kind"]: s.value for s in families["aws_root_console_login_mfa_kind_accepted"].samples}


async def test_factor_of_each_login_and_the_required_factor_reach_metrics(sandbox, tmp_path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"required_signin_mfa": "u2f"}))

    def load():
        return sandbox_settings(sandbox, config, eventbridge_queue_url=sandbox.events_queue_url, sqs_wait_seconds=1,
                                include_account_ids=[ACCOUNT])

    async with running_exporter(load(), load) as exporter:
        await exporter.wait_for_sweeps(1)
        assert accepted(await exporter.metrics()) == {"u2f": 1, "totp": 0, "none": 0, "unknown": 0}
        for record in (make_record("console-login", ACCOUNT, mfa_kind="u2f"), make_record("console-login", ACCOUNT),
                       make_record("console-login", ACCOUNT, mfa=False)):
            sandbox.inject(record, lookup=False, s3=False)
        labels = dict(account_id=ACCOUNT, outcome="success", approved="false")
        async with asyncio.timeout(30):
            while True:
                families = await exporter.metrics()
                counted = {kind: sample(families, "aws_root_console_logins_total", mfa_kind=kind, mfa=mfa, **labels)
                           for kind, mfa in (("u2f", "true"), ("totp", "true"), ("none", "false"))}
                if all(counted.values()):
                    break
                await asyncio.sleep(0.2)
        assert counted == {"u2f": 1, "totp": 1, "none": 1}
        assert sample(families, "aws_root_console_logins_total", mfa_kind="unknown", mfa="true", **labels) is None

        # The requirement follows a reload, as the break-glass windows do.
        config.write_text(yaml.safe_dump({"required_signin_mfa": "totp"}))
        status, _ = await asyncio.to_thread(post, exporter.url + "/-/reload")
        assert status == 200
        assert accepted(await exporter.metrics()) == {"u2f": 1, "totp": 1, "none": 0, "unknown": 0}

        config.write_text(yaml.safe_dump({"required_signin_mfa": "fido"}))
        status, body = await asyncio.to_thread(post, exporter.url + "/-/reload")
        assert status == 500 and "required_signin_mfa" in body, body
        assert accepted(await exporter.metrics()) == {"u2f": 1, "totp": 1, "none": 0, "unknown": 0}


def test_classify_prints_the_factor_of_console_logins_only() -> None:
    names = ["derived__console_login_root_u2f.json", "derived__console_login_root_hardware_totp_serial.json",
             "awsdocs-cloudtrail-ug__console_login_root_mfa.json", "awsdocs-cloudtrail-ug__console_login_root_no_mfa.json",
             "derived__console_login_root_failure_mfa_used_no_identifier.json", "panther__create_access_key_root_own_console.json"]
    result = subprocess.run([sys.executable, "-m", "exporter", "classify", *(str(FIXTURES / n) for n in names)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (result.returncode, result.stderr) == (0, "")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["kind"], line["mfa_kind"]) for line in lines] == [
        ("console_login", "u2f"), ("console_login", "totp"), ("console_login", "totp"), ("console_login", "none"),
        ("console_login", "unknown"), ("api_call", None),
    ]


def test_a_bad_required_factor_is_one_line_and_exit_2(tmp_path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"required_signin_mfa": "fido"}))
    result = subprocess.run([sys.executable, "-m", "exporter", "--config", str(config), "classify", "-"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, input="")
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", "aws-root-exporter: configuration error: required_signin_mfa: Input should be 'any', 'totp' or 'u2f', got 'fido'\n"
    )
