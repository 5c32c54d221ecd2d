"""Settings: sources, priorities, and one clear message naming the setting for each bad value."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config.settings import Settings, SettingsError, load_settings

from .conftest import ROOT

BAD_ENVIRONMENT = [
    ({"AWS_ROOT_EXPORTER_CONCURRENCY": "many"}, "concurrency (from AWS_ROOT_EXPORTER_CONCURRENCY): Input should be a valid integer, unable to parse string as an integer, got 'many'"),
    ({"AWS_ROOT_EXPORTER_CONCURRENCY": "0"}, "concurrency (from AWS_ROOT_EXPORTER_CONCURRENCY): Input should be greater than or equal to 1, got '0'"),
    ({"AWS_ROOT_EXPORTER_POSTURE_INTERVAL_SECONDS": "5"}, "posture_interval_seconds (from AWS_ROOT_EXPORTER_POSTURE_INTERVAL_SECONDS): Input should be greater than or equal to 10, got '5'"),
    ({"AWS_ROOT_EXPORTER_ACCOUNT_MODE": "everything"}, "account_mode (from AWS_ROOT_EXPORTER_ACCOUNT_MODE): Input should be 'organization', 'roles' or 'single', got 'everything'"),
    ({"AWS_ROOT_EXPORTER_LISTEN_ADDRESS": "9784"}, "listen_address (from AWS_ROOT_EXPORTER_LISTEN_ADDRESS): must be host:port with a port from 0 to 65535, got '9784'"),
    ({"AWS_ROOT_EXPORTER_LISTEN_ADDRESS": "0.0.0.0:70000"}, "listen_address (from AWS_ROOT_EXPORTER_LISTEN_ADDRESS): must be host:port with a port from 0 to 65535, got '0.0.0.0:70000'"),
    ({"AWS_ROOT_EXPORTER_ROLE_NAME": "bad role"}, "role_name (from AWS_ROOT_EXPORTER_ROLE_NAME): must be an IAM role name (1-64 characters of letters, digits and +=,.@_-), got 'bad role'"),
    ({"AWS_ROOT_EXPORTER_INCLUDE_ACCOUNT_IDS": '["12345"]'}, "include_account_ids (from AWS_ROOT_EXPORTER_INCLUDE_ACCOUNT_IDS): must be 12-digit AWS account ids, got '12345'"),
    ({"AWS_ROOT_EXPORTER_EXCLUDE_OU_IDS": '["Prod"]'}, "exclude_ou_ids (from AWS_ROOT_EXPORTER_EXCLUDE_OU_IDS): must be organization root or OU ids (r-..., ou-...), got 'Prod'"),
    ({"AWS_ROOT_EXPORTER_ACCOUNT_MODE": "roles"}, "role_arns: must list at least one role when account_mode is 'roles'"),
    ({"AWS_ROOT_EXPORTER_ROLE_ARNS": '["arn:aws:iam::111111111111:role/R"]'}, "role_arns: is only used when account_mode is 'roles'"),
    ({"AWS_ROOT_EXPORTER_ACCOUNT_MODE": "roles", "AWS_ROOT_EXPORTER_ROLE_ARNS": '["arn:aws:iam::1111:role/R"]'}, "role_arns (from AWS_ROOT_EXPORTER_ROLE_ARNS): must be IAM role ARNs (arn:aws:iam::<12 digits>:role/<name>), got 'arn:aws:iam::1111:role/R'"),
    ({"AWS_ROOT_EXPORTER_ACCOUNT_MODE": "roles", "AWS_ROOT_EXPORTER_ROLE_ARNS": '["arn:aws:iam::111111111111:role/A", "arn:aws:iam::111111111111:role/B"]'}, "role_arns (from AWS_ROOT_EXPORTER_ROLE_ARNS): lists account 111111111111 twice"),
    ({"AWS_ROOT_EXPORTER_ASSUME_ROOT_AUDIT": "true", "AWS_ROOT_EXPORTER_ACCOUNT_MODE": "single"}, "assume_root_audit: needs account_mode 'organization'"),
    ({"AWS_ROOT_EXPORTER_SHARD_COUNT": "2", "AWS_ROOT_EXPORTER_SHARD_INDEX": "2"}, "shard_index: must be below shard_count (2)"),
    ({"AWS_ROOT_EXPORTER_INCLUDE_ACCOUNT_IDS": '["111111111111"]', "AWS_ROOT_EXPORTER_EXCLUDE_ACCOUNT_IDS": '["111111111111"]'}, "exclude_account_ids: also included: 111111111111"),
    ({"AWS_ROOT_EXPORTER_LOG_LEVEL": "loud"}, "log_level (from AWS_ROOT_EXPORTER_LOG_LEVEL): must be debug, info, warning or error, got 'loud'"),
    ({"AWS_ROOT_EXPORTER_WEB_CONFIG_FILE": "/nonexistent/web.yml"}, "web_config_file (from AWS_ROOT_EXPORTER_WEB_CONFIG_FILE): cannot read '/nonexistent/web.yml': No such file or directory"),
    ({"AWS_ROOT_EXPORTER_ROLE_NAMES": "x"}, "AWS_ROOT_EXPORTER_ROLE_NAMES: unknown setting (see the Configuration section of README.md)"),
]


@pytest.mark.parametrize(("environment", "message"), BAD_ENVIRONMENT, ids=[m.split(":")[0] for _, m in BAD_ENVIRONMENT])
def test_bad_environment_names_the_setting(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str) -> None:
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == message


BAD_FILES = [
    ("concurrency: [1, 2]\n", "concurrency: Input should be a valid integer, got [1, 2]"),
    ("conncurrency: 4\n", "conncurrency: unknown setting (see the Configuration section of README.md)"),
    ("- just\n- a list\n", "config_file: '{path}' must hold a mapping of setting names to values"),
    ("concurrency: [\n", "config_file: '{path}' is not valid YAML at line 2: expected the node content, but found '<stream end>'"),
    (
        "concurrency: 4\nlog_level: info\nconcurrency: 8\n",
        "config_file: '{path}' line 3: key 'concurrency' given twice in one mapping (also at line 1): remove one (YAML would keep only the last)",
    ),
    (
        "break_glass_windows:\n  - {account_id: '111111111111', start: 2026-01-02T00:00:00Z, end: 2026-01-01T00:00:00Z}\n",
        "break_glass_windows.0: end must be after start",
    ),
    (
        "break_glass_windows:\n  - {account_id: '1111', start: 2026-01-01T00:00:00Z, end: 2026-01-02T00:00:00Z}\n",
        "break_glass_windows.0.account_id: must be a 12-digit AWS account id, got '1111'",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_config_file_names_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as raised:
        load_settings(path)
    assert str(raised.value) == message.format(path=path)


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path / "missing.yaml")
    assert str(raised.value) == f"config_file: cannot read '{tmp_path / 'missing.yaml'}': No such file or directory"


def test_priority_flags_over_environment_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("concurrency: 3\nrole_name: FromFile\nlisten_address: 127.0.0.1:1\n")
    monkeypatch.setenv("AWS_ROOT_EXPORTER_CONFIG_FILE", str(path))
    monkeypatch.setenv("AWS_ROOT_EXPORTER_CONCURRENCY", "7")
    settings = load_settings(None, {"listen_address": "127.0.0.1:2"})
    assert settings.concurrency == 7
    assert settings.role_name == "FromFile"
    assert settings.listen_address == "127.0.0.1:2"


def test_configuration_doc_lists_every_setting_with_its_default() -> None:
    text = (ROOT / "README.md").read_text().split("\n## Configuration\n")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]+) \|", text, flags=re.M))
    assert set(rows) == set(Settings.model_fields), "README.md (Configuration) and Settings differ"
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        default = getattr(default, "value", default)
        shown = rows[name].strip()
        if default is None:
            assert shown == "(unset)", name
        elif default == []:
            assert shown == "`[]`", name
        else:
            assert shown == f"`{str(default).lower() if isinstance(default, bool) else default}`", name


def test_cli_exits_2_with_the_message_before_any_aws_call(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "AWS_ROOT_EXPORTER_CONCURRENCY": "many", "AWS_ROOT_EXPORTER_ENDPOINT_URL": "http://127.0.0.1:9"}
    for command in (["serve"], ["audit"], ["sandbox"]):
        result = subprocess.run([sys.executable, "-m", "exporter", *command], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.strip() == (
            "aws-root-exporter: configuration error: concurrency (from AWS_ROOT_EXPORTER_CONCURRENCY): "
            "Input should be a valid integer, unable to parse string as an integer, got 'many'"
        )
        assert "Traceback" not in result.stderr
