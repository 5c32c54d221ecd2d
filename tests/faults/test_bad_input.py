"""Bad input, property-based: whatever a credential report or the configuration holds, the
only exceptions are the documented ones (`CredentialReportError`, `SettingsError`).

Example counts are bounded (a few hundred per property) so the suite stays fast in CI.
"""

from __future__ import annotations

import csv
import io
import os
import string
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.posture.credential_report import CredentialReportError, RootReportRow, parse_root_row
from exporter.sandbox.moto_ext import REPORT_HEADER
from exporter.config.settings import ENV_PREFIX, Settings, SettingsError, load_settings

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

COLUMNS = REPORT_HEADER.split(",")
CELL_VALUES = [
    "true", "false", "TRUE", "False", "N/A", "n/a", "not_supported", "no_information", "",
    "2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05Z", "2024-13-45T99:99:99+00:00", "9999-12-31T23:59:59+14:00",
    "<root_account>", "arn:aws:iam::111122223333:root", '"', ",", "\n", "\r", "\r\n", "\x00", "\ufeff", "é",
]
cell = st.one_of(st.sampled_from(CELL_VALUES), st.text(max_size=30))


@st.composite
def reports(draw) -> str:
    """CSV shaped like a credential report: real and invented columns, ragged rows, odd cells."""
    header = draw(st.lists(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=12)), min_size=0, max_size=len(COLUMNS) + 3))
    if draw(st.booleans()) and "user" not in header:
        header.insert(draw(st.integers(0, len(header))), "user")
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        width = draw(st.one_of(st.just(len(header)), st.integers(0, len(header) + 3)))
        row = [draw(cell) for _ in range(width)]
        if row and draw(st.booleans()):
            row[header.index("user") if "user" in header and header.index("user") < width else 0] = "<root_account>"
        rows.append(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()):  # damage: cut it anywhere
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _check(result: RootReportRow) -> None:
    assert result.password in ("present", "absent", "unknown")
    assert result.mfa_active in (True, False, None)
    for count in (result.access_keys_active, result.access_keys_inactive, result.certificates_active, result.certificates_inactive):
        assert 0 <= count <= 2
    assert result.access_keys_active + result.access_keys_inactive <= 2
    for when in (result.password_last_used, result.access_key_last_used):
        assert when is None or (isinstance(when, datetime) and when.tzinfo is not None)


def _parse(content: bytes | str) -> None:
    try:
        result = parse_root_row(content)
    except CredentialReportError as exc:
        assert str(exc), "the error says why"
        return
    _check(result)


@FAST
@given(reports())
@example(f"user,password_enabled\n<root_account>,{'x' * 200_000}\n")  # beyond csv's field size limit
@example('user,password_enabled\n"<root_account>,true\n')  # an unterminated quote
@example("user\r\n<root_account>\rfalse\n")
def test_structured_reports(content: str) -> None:
    _parse(content)
    _parse(content.encode("utf-8", "surrogatepass"))


@FAST
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
@example(b"\xef\xbb\xbfuser,password_enabled\n<root_account>,true\n")
@example(b"\xff\xfe")
def test_arbitrary_bytes_and_text(content: bytes | str) -> None:
    _parse(content)


# --- configuration -------------------------------------------------------------------------

FIELDS = sorted(Settings.model_fields)
env_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
ENV_VALUES = ["", "0", "-1", "1e309", "nan", "inf", "true", "yes", "[]", "{}", "[1, 2]", '["x"]', "null", "{\"a\": 1}",
              "123456789012", '["123456789012"]', "0.0.0.0:99999", ":", "us-east-1", "https://", "[{\"account_id\": 1}]"]


@contextmanager
def environment(values: dict[str, str]):
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[key]
        os.environ.update(saved)


def _load(config_file: Path | None = None) -> None:
    try:
        result = load_settings(config_file)
    except SettingsError as exc:
        assert str(exc)
        return
    assert isinstance(result, Settings)


@FAST
@given(st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12)),
    st.one_of(st.sampled_from(ENV_VALUES), env_text),
    max_size=4,
))
@example({"exclude_account_ids": ""})  # an empty list setting, as Helm or Docker pass it
def test_arbitrary_environment(values: dict[str, str]) -> None:
    with environment({ENV_PREFIX + k.upper(): v for k, v in values.items()}):
        _load()


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                         st.sampled_from(["2026-01-01T00:00:00Z", "0.0.0.0:9784", "123456789012", "arn:aws:iam::123456789012:role/x"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)), max_leaves=8)


@FAST
@given(st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), yaml_values, max_size=4).map(lambda d: yaml.safe_dump(d)),
    st.text(max_size=200),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
))
@example("break_glass_windows: [{account_id: '123456789012', start: 2026-01-02, end: 2026-01-01}]")
@example("listen_address: !!python/object:os.system {}")
@example("a: &a [*a]")
def test_arbitrary_config_file(text: str) -> None:
    with TemporaryDirectory() as tmp, environment({}):
        path = Path(tmp) / "config.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _load(path)


def test_missing_config_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")


def test_empty_list_setting_in_the_environment_names_the_variable() -> None:
    with environment({ENV_PREFIX + "INCLUDE_ACCOUNT_IDS": ""}), pytest.raises(SettingsError, match=ENV_PREFIX + "INCLUDE_ACCOUNT_IDS"):
        load_settings()


def test_report_csv_errors_are_report_errors() -> None:
    # Before: _csv.Error escaped (a bare carriage return inside a line, a huge field).
    assert parse_root_row("user\r\n<root_account>\rfalse\n").password == "unknown"
    with pytest.raises(CredentialReportError, match="not valid CSV"):
        parse_root_row("user,password_enabled\n<root_account>," + "x" * 200_000 + "\n")
