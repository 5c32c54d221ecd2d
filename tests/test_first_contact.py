"""First contact: each command run as a new user would, checking its exit status and message."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from exporter.cli import DEMO_DEFAULTS
from exporter.sandbox import SANDBOX_ENV, load_scenario
from exporter.sandbox.records import KINDS

from .conftest import ROOT, http_get, parse_metrics, reap, sample, stop_cleanly, tool
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


# --- the first hour (issue 22): the command line as a new user types it -----------------------

LOG_LEVEL_ERROR = "aws-root-exporter: configuration error: log_level: must be debug, info, warning or error, got 'loud'"
NOWHERE = "http://127.0.0.1:9"  # no AWS: `serve` starts its HTTP server before any AWS call


def _start(command: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(**env), cwd=ROOT)


def _read_until(process: subprocess.Popen[str], pattern: str, lines: list[str]) -> re.Match[str]:
    """Read the process's output line by line until `pattern` matches one (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, "exited before printing " + pattern + ":\n" + "".join(lines)
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no {pattern} within 60 s:\n" + "".join(lines))


def _metrics(url: str) -> dict:
    status, _, body = http_get(url + "/metrics")
    assert status == 200
    return parse_metrics(body.decode())


def _wait_for_metric(url: str, check: Callable[[dict], bool], what: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        families = _metrics(url)
        if check(families):
            return families
        assert time.monotonic() < deadline, f"{what} not seen within 60 s"
        time.sleep(0.2)


def test_options_before_the_command_apply_to_it(tmp_path: Path) -> None:
    config = tmp_path / "listen.yml"
    config.write_text("listen_address: 127.0.0.1:0\n")  # the default is 0.0.0.0:9784
    cases = [
        ["--config", str(config), "serve"],
        ["serve", "--config", str(config)],
        ["--config", str(config)],  # serve is the default command
        ["--web.listen-address", "127.0.0.1:0", "serve"],
        ["--log.format", "json", "--web.listen-address", "127.0.0.1:0", "serve"],
    ]
    for args in cases:
        process = _start([sys.executable, "-m", "exporter", *args], AWS_ROOT_EXPORTER_ENDPOINT_URL=NOWHERE)
        try:
            lines: list[str] = []
            match = _read_until(process, r"listening.*(http://127\.0\.0\.1:(\d+))/metrics", lines)
            assert match.group(2) not in ("0", "9784"), (args, lines)
            assert http_get(match.group(1) + "/-/healthy")[0] == 200, args
            if "json" in args:
                assert json.loads(lines[-1])["message"] == "listening", lines
            stop_cleanly(process)
        finally:
            reap(process)


def test_a_bad_log_level_is_one_line_and_exit_2_on_either_side_of_the_command() -> None:
    cases = [
        ["--log.level", "loud", "serve"],
        ["serve", "--log.level", "loud"],
        ["--log.level", "loud"],
        ["--log.level", "loud", "sandbox", "--no-prometheus"],
        ["sandbox", "--no-prometheus", "--log.level", "loud"],
        ["--log.level", "loud", "audit"],
        ["audit", "--log.level", "loud"],
    ]
    for args in cases:
        result = _run(*args, timeout=60, AWS_ROOT_EXPORTER_ENDPOINT_URL=NOWHERE)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", LOG_LEVEL_ERROR + "\n"), args


def test_an_option_the_command_does_not_use_is_refused(tmp_path: Path) -> None:
    # One real record: classify exits 2 on input that holds none, which is not what this test is about.
    records = ROOT / "tests/fixtures/cloudtrail/root_console_login_no_mfa.json"
    config = tmp_path / "config.yml"
    config.write_text("log_level: info\n")
    cases = {
        ("--web.listen-address", "127.0.0.1:0", "classify", str(records)):
            "aws-root-exporter classify: --web.listen-address (given before classify): classify does not use it; it takes --config"
            " (see `aws-root-exporter classify --help`)",
        ("--log.level", "debug", "classify", str(records)):
            "aws-root-exporter classify: --log.level (given before classify): classify does not use it; it takes --config"
            " (see `aws-root-exporter classify --help`)",
        ("classify", "--web.listen-address", str(records)):
            "aws-root-exporter classify: unrecognized arguments: --web.listen-address (see `aws-root-exporter classify --help`)",
        ("--config", str(config), "inject", "--control-url", NOWHERE, "--account", "210000000003"):
            "aws-root-exporter inject: --config (given before inject): inject does not use it; it takes none of these options"
            " (see `aws-root-exporter inject --help`)",
        ("--web.config.file", str(config), "audit"):
            "aws-root-exporter audit: --web.config.file (given before audit): audit does not use it; it takes --config, --log.level,"
            " --log.format (see `aws-root-exporter audit --help`)",
    }
    for args, message in cases.items():
        result = _run(*args, timeout=60)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n"), args
    # The options classify takes are the ones its --help lists.
    shown = _run("classify", "--help").stdout
    assert "--config PATH" in shown and "break_glass_windows" in shown
    assert "--web." not in shown and "--log." not in shown
    assert _run("--config", str(config), "classify", str(records)).returncode == 0


def test_help_lists_every_inject_kind_and_explains_audit_format() -> None:
    shown = " ".join(_run("inject", "--help", COLUMNS="80").stdout.split())
    listed = re.search(r"--kind KIND a record: one of (.*?) \(default: console-login\); or a call that blinds or restores a path: ", shown)
    assert listed, shown
    assert listed.group(1).split(", ") == list(KINDS)
    from exporter.sandbox.actions import ACTIONS

    assert all(f"{action}: {what}" in shown for action, what in ACTIONS.items()), shown
    refused = _run("inject", "--control-url", NOWHERE, "--account", "210000000003", "--kind", "nope")
    assert refused.returncode == 2 and refused.stdout == "" and refused.stderr.count("\n") == 1, refused.stderr
    assert all(f"'{kind}'" in refused.stderr for kind in KINDS), refused.stderr
    audit = " ".join(_run("audit", "--help").stdout.split())
    assert re.search(r"--format \{table,json\} table: one row per account, for people \(default\); json: ", audit), audit


def _left_running(marker: str) -> list[int]:
    """Processes whose environment holds `marker`: what a command started and left behind."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_an_address_in_use_is_one_line_naming_the_address_and_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        for command in (["serve"], ["sandbox", "--no-prometheus"]):
            marker = f"AWS_ROOT_EXPORTER_TEST_RUN={uuid.uuid4()}"
            result = subprocess.run(
                [sys.executable, "-m", "exporter", *command, "--web.listen-address", address],
                capture_output=True, text=True, timeout=120, cwd=ROOT,
                env={**_env(AWS_ROOT_EXPORTER_ENDPOINT_URL=NOWHERE), "CLI_TEST_MARKER": marker},
            )
            assert (result.returncode, result.stderr) == (2, (
                f"aws-root-exporter: configuration error: listen_address: cannot listen on {address}: Address already in use; "
                "choose another address with --web.listen-address HOST:PORT or the listen_address setting\n"
            )), command
            # The sandbox's child process stopped with it.
            assert _left_running("CLI_TEST_MARKER=" + marker) == [], command
        # The sandbox's own port, when one is asked for (moto's server would wait for it forever).
        result = _run("sandbox", "--no-prometheus", "--sandbox-port", address.rpartition(":")[2], "--web.listen-address", "127.0.0.1:0")
        assert (result.returncode, result.stdout, result.stderr) == (2, "", (
            f"aws-root-exporter: configuration error: --sandbox-port: cannot listen on {address}: Address already in use; "
            "choose another port, or leave --sandbox-port out for any free one\n"
        ))


def test_inject_pointed_at_something_else_says_so_in_one_line() -> None:
    process = _start([sys.executable, "-m", "exporter", "serve", "--web.listen-address", "127.0.0.1:0"], AWS_ROOT_EXPORTER_ENDPOINT_URL=NOWHERE)
    try:
        exporter = _read_until(process, r"listening.*(http://127\.0\.0\.1:\d+)/metrics", []).group(1)
        cases = {
            exporter: f"aws-root-exporter: inject: {exporter} is not a sandbox control URL (it answered HTTP 405 Method Not Allowed); "
            "use the --control-url that `aws-root-exporter sandbox` prints",
            "127.0.0.1:9": "aws-root-exporter: inject: 127.0.0.1:9 is not a sandbox control URL (it is not an http:// URL); "
            "use the --control-url that `aws-root-exporter sandbox` prints",
        }
        for url, message in cases.items():
            result = _run("inject", "--control-url", url, "--account", "210000000003", timeout=30)
            assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n"), url
        stop_cleanly(process)
    finally:
        reap(process)


def test_the_printed_inject_line_works_from_a_plain_shell(tmp_path: Path) -> None:
    """`make demo` runs .venv/bin/aws-root-exporter, which a new user's PATH does not hold:
    the line it prints must work as printed, from a shell without the venv, anywhere."""
    plain = {"PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [tool("aws-root-exporter"), "sandbox", "--no-prometheus", "--web.listen-address", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=plain,
    )
    try:
        lines: list[str] = []
        url = _read_until(process, r"Exporter metrics:\s+(http://127\.0\.0\.1:\d+)/metrics", lines).group(1)
        _read_until(process, r"^Press Ctrl-C to stop\.$", lines)
        banner = "".join(lines)
        # The accounts set up to fail are named as such, each with why, and no other.
        scenario = load_scenario()
        failing = [a for a in scenario.all_accounts if expected_error(a)]
        named = re.findall(r"^    (\d{12}) (\S+): \S", banner.split("Failing by design")[1], re.M)
        assert named == [(a.id, a.name) for a in failing], banner
        command = lines[lines.index("Inject a root console login (it shows in /metrics within seconds):\n") + 1].strip()
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60, env=plain, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        account = re.search(r"--account (\d{12})$", command).group(1)
        assert result.stdout.startswith(f"injected console-login in {account}: eventID "), result.stdout
        _wait_for_metric(
            url, lambda f: (sample(f, "aws_root_console_logins_total", account_id=account, outcome="success", mfa="true", approved="false") or 0) >= 1,
            "the injected login",
        )
        stop_cleanly(process)
    finally:
        reap(process)


def test_sandbox_settings_from_the_config_file_win_over_its_demo_defaults_also_on_reload(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.yml"
    config.write_text("listen_address: 127.0.0.1:0\nposture_interval_seconds: 12\nlookup_events_interval_seconds: 5\n")
    process = _start([sys.executable, "-m", "exporter", "--config", str(config), "sandbox", "--no-prometheus"])
    network = next(a.id for a in load_scenario().all_accounts if expected_error(a) == "assume_role_failed")
    try:
        lines: list[str] = []
        url = _read_until(process, r"Exporter metrics:\s+(http://127\.0\.0\.1:\d+)/metrics", lines).group(1)
        assert not url.endswith(":9784")
        interval = "aws_root_exporter_sweep_interval_seconds"
        _wait_for_metric(url, lambda f: sample(f, interval) == 12, "the file's posture interval")
        # LookupEvents every 5 s (the demo's default is 15 s): the account that fails by
        # design fails again soon.
        errors = "aws_root_exporter_collector_errors_total"
        _wait_for_metric(url, lambda f: (sample(f, errors, account_id=network, collector="lookup_events") or 0) >= 2, "a repeated failure")
        config.write_text("listen_address: 127.0.0.1:0\nposture_interval_seconds: 14\nlookup_events_interval_seconds: 5\n")
        request = urllib.request.Request(url + "/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        _wait_for_metric(url, lambda f: sample(f, interval) == 14, "the reloaded posture interval")
        # Without it in the file, the demo's default comes back (SIGHUP reloads too).
        config.write_text("listen_address: 127.0.0.1:0\nlookup_events_interval_seconds: 5\n")
        process.send_signal(signal.SIGHUP)
        _wait_for_metric(url, lambda f: sample(f, interval) == DEMO_DEFAULTS["posture_interval_seconds"], "the demo default again")
        stop_cleanly(process)
        lines += process.stdout.readlines()
    finally:
        reap(process)
    # Each failure is a warning once, though it repeated on every pass.
    warnings = [line for line in lines if " WARNING " in line and f"account_id={network} collector=lookup_events " in line]
    assert len(warnings) == 1, "".join(lines)


def test_installing_the_package_prints_nothing(tmp_path: Path) -> None:
    """`make demo` installs with `pip install --quiet -e .`: the build backend must have
    nothing to say (setuptools printed a deprecation banner for the old `project.license`
    table, and an "Editable installation" banner). Into a new venv, so this one is untouched."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True, timeout=120)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(tmp_path / "venv" / "bin" / "python"), "install", "--quiet", "--no-deps", "-e", str(ROOT)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_a_reader_that_stops_reading_ends_the_command_quietly() -> None:
    """`classify FILE | head -n 1`: the pipe's reader is gone before the command writes. The read
    end is closed before the command starts, so the write fails every time, not by chance."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.run(
            [sys.executable, "-m", "exporter", "classify", str(ROOT / "tests/fixtures/cloudtrail/root_console_login_no_mfa.json")],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, env=_env(), cwd=ROOT,
        )
    finally:
        os.close(write_end)
    assert process.stderr == ""
    assert process.returncode == 128 + signal.SIGPIPE
