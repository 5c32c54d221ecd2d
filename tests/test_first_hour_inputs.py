"""The first hour (issue 22): files a new user hands the exporter, typed as they typed them.

Scenario files (`audit --sandbox --scenario FILE`, `sandbox --scenario FILE`), settings files
(`--config FILE`, `--web.config.file FILE`) and `classify FILE...` / `classify -`: each bad
input is one line on stderr that names the problem and the fix, with exit status 2.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.sandbox.scenario import MINIMAL_SCENARIO

from .conftest import ROOT

COMMAND = str(Path(sys.executable).with_name("aws-root-exporter"))
FIXTURES = ROOT / "tests" / "fixtures" / "cloudtrail"
LOGIN = (FIXTURES / "root_console_login_no_mfa.json").read_bytes()
NOT_ROOT = (FIXTURES / "iam_user_named_root_console_login.json").read_bytes()

SMALL = """\
management: {id: "123456789012", name: management, root: {mfa: hardware}}
accounts:
  - id: "310000000001"
    name: only-member
    root: {mfa: none}
"""
SCENARIO_COMMANDS = [["audit", "--sandbox", "--scenario"], ["sandbox", "--no-prometheus", "--scenario"]]
SCENARIO_ERROR = "aws-root-exporter: scenario error: scenario 'scenario.yaml': "
CONFIG_ERROR = "aws-root-exporter: configuration error: "


def run(cwd: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AWS_ROOT_EXPORTER_"))}
    result = subprocess.run([COMMAND, *args], input=stdin, capture_output=True, timeout=120, env=env, cwd=cwd)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def scenario_fails(tmp_path: Path, content: bytes, message: str) -> None:
    """Both scenario commands refuse `content` with exactly `message`, exit 2, before starting anything."""
    (tmp_path / "scenario.yaml").write_bytes(content)
    for command in SCENARIO_COMMANDS:
        result = run(tmp_path, *command, "scenario.yaml")
        assert (result.returncode, result.stderr, result.stdout) == (2, SCENARIO_ERROR + message + "\n", ""), command


# ------------------------------------------------------------------ item 4: not UTF-8 text


def test_utf16_scenario_says_so_and_the_fix_it_names_works(tmp_path: Path) -> None:
    # What PowerShell's `>` writes: UTF-16 with a byte order mark.
    scenario_fails(tmp_path, SMALL.encode("utf-16"), "UTF-16 text, not UTF-8: save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")
    converted = subprocess.run(["iconv", "-f", "UTF-16", "-t", "UTF-8", "scenario.yaml"], cwd=tmp_path, capture_output=True, check=True)
    (tmp_path / "scenario.yaml").write_bytes(converted.stdout)
    audit = run(tmp_path, "audit", "--sandbox", "--format", "json", "--scenario", "scenario.yaml")
    assert audit.returncode == 1, audit.stderr  # only-member has no MFA: a finding
    assert {a["account_id"] for a in json.loads(audit.stdout)["accounts"]} == {"123456789012", "310000000001"}


def test_binary_scenario_is_not_a_text_file(tmp_path: Path) -> None:
    scenario_fails(
        tmp_path,
        gzip.compress(SMALL.encode(), mtime=0),
        "not a text file (a NUL byte at offset 3: binary, or UTF-16 without a byte order mark): give a YAML file saved as UTF-8",
    )
    scenario_fails(
        tmp_path,
        b"\x7fELF\x02\x01\x01\x00" + bytes(8),
        "not a text file (a NUL byte at offset 7: binary, or UTF-16 without a byte order mark): give a YAML file saved as UTF-8",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("concurrency: 4\n".encode("utf-16"), "'config.yaml' is UTF-16 text, not UTF-8: save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)"),
        (b"concurrency: 4\n\x00", "'config.yaml' is not a text file (a NUL byte at offset 15: binary, or UTF-16 without a byte order mark): give a YAML file saved as UTF-8"),
        ("log_level: d\xe9bug\n".encode("latin-1"), "'config.yaml' is not UTF-8 text (byte 0xe9 at offset 12): give a YAML file saved as UTF-8"),
    ],
    ids=["utf-16", "binary", "latin-1"],
)
def test_config_file_that_is_not_utf8_text(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "config.yaml").write_bytes(content)
    result = run(tmp_path, "audit", "--config", "config.yaml")
    assert (result.returncode, result.stderr) == (2, f"{CONFIG_ERROR}config_file: {message}\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"Records": []}'.encode("utf-16"), "UTF-16 text, not UTF-8: save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(8), "not UTF-8 text (byte 0x89 at offset 0): CloudTrail records are UTF-8 JSON, plain or gzip"),
    ],
    ids=["utf-16", "binary"],
)
def test_classify_names_a_file_that_is_not_utf8_and_goes_on(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "odd.json").write_bytes(content)
    (tmp_path / "trail.json").write_bytes(LOGIN)
    result = run(tmp_path, "classify", "odd.json", "trail.json")
    assert (result.returncode, result.stderr) == (2, f"odd.json: {message}\n")
    assert [json.loads(line)["eventID"] for line in result.stdout.splitlines()] == [json.loads(LOGIN)["eventID"]]


# ------------------------------------------------------------------ item 5: silent acceptance


def test_scenario_key_given_twice_is_refused(tmp_path: Path) -> None:
    twice = SMALL + "    ou: Teams/Blue\n    root: {mfa: hardware}\n"
    scenario_fails(
        tmp_path,
        twice.encode(),
        "line 7: key 'root' given twice in one mapping (also at line 5): remove one (YAML would keep only the last)",
    )
    # A key that a `<<` merge brings in and the mapping then sets is YAML's intended override.
    merged = 'management: &m {id: "123456789012", name: management}\naccounts:\n  - {<<: *m, id: "310000000001", name: member}\n'
    (tmp_path / "scenario.yaml").write_text(merged)
    audit = run(tmp_path, "audit", "--sandbox", "--format", "json", "--scenario", "scenario.yaml")
    assert audit.returncode == 1, audit.stderr
    assert {a["account_name"] for a in json.loads(audit.stdout)["accounts"]} == {"management", "member"}


def test_setting_given_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("concurrency: 4\nlog_level: info\nconcurrency: 8\n")
    result = run(tmp_path, "audit", "--config", "config.yaml")
    assert (result.returncode, result.stderr) == (
        2,
        f"{CONFIG_ERROR}config_file: 'config.yaml' line 3: key 'concurrency' given twice in one mapping (also at line 1):"
        " remove one (YAML would keep only the last)\n",
    )
    # The web configuration file is read by the same reader: a user given twice is refused
    # (Prometheus's exporter-toolkit refuses it too), not silently given the second password.
    (tmp_path / "web.yml").write_text("basic_auth_users:\n  alice: $2b$12$x\n  alice: $2b$12$y\n")
    result = run(tmp_path, "serve", "--web.config.file", "web.yml")
    assert (result.returncode, result.stderr) == (
        2,
        f"{CONFIG_ERROR}web_config_file: 'web.yml' line 3: key 'alice' given twice in one mapping (also at line 2):"
        " remove one (YAML would keep only the last)\n",
    )


def test_classify_of_nothing_classifiable_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "no-records.json").write_text('{"Records": []}')
    (tmp_path / "bad.json").write_text('{"Records": [1, "two"]}')
    (tmp_path / "trail.json").write_bytes(LOGIN)
    (tmp_path / "other.json").write_bytes(NOT_ROOT)

    empty = run(tmp_path, "classify", "empty.json", "no-records.json")
    assert (empty.returncode, empty.stdout) == (2, "")
    assert empty.stderr == "empty.json: holds no CloudTrail records\nno-records.json: holds no CloudTrail records\n"

    bad = run(tmp_path, "classify", "bad.json")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == (
        "bad.json record 0: a record must be a JSON object, got int\n"
        "bad.json record 1: a record must be a JSON object, got str\n"
        "classify: nothing was classified: every record was rejected (see above)\n"
    )

    # One file with records is a run that classified something: the empty one is noted.
    mixed = run(tmp_path, "classify", "empty.json", "bad.json", "trail.json")
    assert mixed.returncode == 0, mixed.stderr
    assert mixed.stderr.splitlines()[0] == "empty.json: holds no CloudTrail records"
    assert len(mixed.stdout.splitlines()) == 1

    # Records that are not root activity were classified: nothing to print, and no failure.
    other = run(tmp_path, "classify", "other.json")
    assert (other.returncode, other.stdout, other.stderr) == (0, "", "")


def test_classify_dash_reads_standard_input(tmp_path: Path) -> None:
    (tmp_path / "trail.json").write_bytes(LOGIN)
    from_file = run(tmp_path, "classify", "trail.json")
    assert from_file.returncode == 0, from_file.stderr
    expected = json.loads(from_file.stdout)
    for data in (LOGIN, gzip.compress(LOGIN)):  # `aws s3 cp s3://.../x.json.gz - | ... classify -`
        result = run(tmp_path, "classify", "-", stdin=data)
        assert (result.returncode, result.stderr) == (0, "")
        assert json.loads(result.stdout) == dict(expected, location="stdin")
    nothing = run(tmp_path, "classify", "-")
    assert (nothing.returncode, nothing.stderr) == (2, "stdin: holds no CloudTrail records\n")


# ------------------------------------------------------------------ item 9: scenario messages


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            SMALL.replace("name: only-member", "name: only-member\n    status: SUSPENDED"),
            "accounts.0.status: unknown key; did you mean state? (an account's status was renamed state when scenarios"
            " gained every Organizations AccountState: PENDING_ACTIVATION, ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED)",
        ),
        (
            "",
            f"the file is empty (or only comments); the smallest scenario is {MINIMAL_SCENARIO}"
            " (the built-in one, to copy from: exporter/sandbox/default.yaml)",
        ),
        (
            "# accounts: to come\n",
            f"the file is empty (or only comments); the smallest scenario is {MINIMAL_SCENARIO}"
            " (the built-in one, to copy from: exporter/sandbox/default.yaml)",
        ),
        (
            SMALL.replace("name: only-member", "name: yes"),
            "accounts.0.name: Input should be a valid string, got true (a boolean);"
            " YAML reads unquoted true/false, yes/no and on/off as booleans: quote the value",
        ),
        (
            SMALL.replace("{mfa: none}", "{mfa: no}"),
            "accounts.0.root.mfa: Input should be 'none', 'virtual', 'hardware' or 'u2f', got false (a boolean);"
            " YAML reads unquoted true/false, yes/no and on/off as booleans: quote the value",
        ),
        (
            SMALL.replace('"310000000001"', "310000000001"),
            'accounts.0.id: Input should be a valid string, got 310000000001 (a number);'
            ' YAML reads unquoted digits as a number: quote the value (e.g. id: "310000000001")',
        ),
        ("- " + MINIMAL_SCENARIO + "\n", "(top level): must be a mapping (keys: organization, management, accounts, monitoring), got a list"),
        (
            'management: {id: "123456789012", name: m}\naccounts: [{id: "310000000001", name: a, faults: [{operation: GetUser, eror: x}]}]\n',
            "accounts.0.faults.0.eror: unknown key; did you mean error?",
        ),
        ("accounts: []\n", f"management: required key missing; the smallest scenario is {MINIMAL_SCENARIO}"),
    ],
    ids=["status", "empty", "comments-only", "unquoted-yes", "unquoted-no", "unquoted-id", "top-level-list", "typo", "no-management"],
)
def test_scenario_mistake_names_the_place_and_the_fix(tmp_path: Path, content: str, message: str) -> None:
    scenario_fails(tmp_path, content.encode(), message)


def test_the_smallest_scenario_the_messages_suggest_runs(tmp_path: Path) -> None:
    (tmp_path / "scenario.yaml").write_text(MINIMAL_SCENARIO + "\n")
    audit = run(tmp_path, "audit", "--sandbox", "--format", "json", "--scenario", "scenario.yaml")
    assert audit.returncode == 1, audit.stderr  # a root with a password and no MFA
    assert [a["account_id"] for a in json.loads(audit.stdout)["accounts"]] == ["123456789012"]
