"""Parsing the root row of the IAM credential report, and merging it with the account summary."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from exporter.posture.credential_report import CredentialReportError, parse_root_row
from exporter.posture.collect import combine

HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,"
    "mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,"
    "access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,"
    "cert_2_last_rotated"
)
USER = "alice,arn:aws:iam::111111111111:user/alice,2020-01-01T00:00:00+00:00,true,2026-01-01T00:00:00+00:00,N/A,N/A,true,true,2020-01-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"


def root(**cells: str) -> str:
    values = {
        "user": "<root_account>",
        "arn": "arn:aws:iam::111111111111:root",
        "user_creation_time": "2019-01-01T00:00:00+00:00",
        "password_enabled": "not_supported",
        "password_last_used": "no_information",
        "password_last_changed": "not_supported",
        "password_next_rotation": "not_supported",
        "mfa_active": "false",
    }
    for slot in ("access_key_1", "access_key_2"):
        values.update({f"{slot}_active": "false", f"{slot}_last_rotated": "N/A", f"{slot}_last_used_date": "N/A",
                       f"{slot}_last_used_region": "N/A", f"{slot}_last_used_service": "N/A"})
    values.update({"cert_1_active": "false", "cert_1_last_rotated": "N/A", "cert_2_active": "false", "cert_2_last_rotated": "N/A"})
    values.update(cells)
    return ",".join(values[c] for c in HEADER.split(","))


def report(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def test_not_supported_password_is_unknown() -> None:
    row = parse_root_row(report(USER, root()))
    assert row.password == "unknown"
    assert row.password_last_used is None
    assert row.access_keys_active == row.access_keys_inactive == 0


@pytest.mark.parametrize(("cell", "state"), [("true", "present"), ("TRUE", "present"), ("false", "absent"), ("False", "absent"), ("not_supported", "unknown"), ("", "unknown")])
def test_password_enabled_is_read_case_insensitively(cell: str, state: str) -> None:
    assert parse_root_row(report(root(password_enabled=cell))).password == state


def test_keys_certificates_and_times() -> None:
    row = parse_root_row(
        report(
            root(
                password_last_used="2026-11-01T10:00:00+00:00",
                access_key_1_active="TRUE",
                access_key_1_last_rotated="2020-01-01T00:00:00+00:00",
                access_key_1_last_used_date="2026-11-20T03:14:00+00:00",
                access_key_2_active="false",
                access_key_2_last_rotated="2021-01-01T00:00:00+00:00",
                access_key_2_last_used_date="2026-11-21T00:00:00+00:00",
                cert_1_active="false",
                cert_1_last_rotated="2022-01-01T00:00:00+00:00",
            )
        )
    )
    assert (row.access_keys_active, row.access_keys_inactive) == (1, 1)
    assert (row.certificates_active, row.certificates_inactive) == (0, 1)
    assert row.access_key_last_used == datetime(2026, 11, 21, tzinfo=timezone.utc)
    assert row.password_last_used == datetime(2026, 11, 1, 10, tzinfo=timezone.utc)


def test_columns_are_found_by_name_in_an_older_shorter_report() -> None:
    header = "arn,user,mfa_active,password_enabled,access_key_1_active,access_key_2_active"
    content = report("arn:aws:iam::111111111111:root,<root_account>,true,not_supported,true,false", header=header)
    row = parse_root_row(content)
    assert row.mfa_active is True
    assert row.access_keys_active == 1
    assert row.certificates_active == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (report(USER), "no <root_account> row"),
        (b"", "no 'user' column"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"a,b\n1,2\n", "no 'user' column"),
    ],
)
def test_unreadable_reports_say_why(content: bytes, message: str) -> None:
    with pytest.raises(CredentialReportError, match=message):
        parse_root_row(content)


def test_live_summary_wins_over_a_stale_report() -> None:
    stale = parse_root_row(report(root()))  # no key when the report was generated
    posture = combine("111111111111", {"AccountMFAEnabled": 1, "AccountAccessKeysPresent": 1, "AccountSigningCertificatesPresent": 0}, stale, None, False)
    assert posture.access_keys_active == 1, "a key created after the report must not read as 'no key'"
    assert posture.controls()["no_access_keys"] is False

    deleted = parse_root_row(report(root(access_key_1_active="true", access_key_1_last_rotated="2020-01-01T00:00:00+00:00")))
    posture = combine("111111111111", {"AccountMFAEnabled": 0, "AccountAccessKeysPresent": 0}, deleted, None, False)
    assert posture.access_keys_active == 0, "a key deleted since the report is gone"


def test_hardware_mfa_follows_cis_1_6() -> None:
    row = parse_root_row(report(root(mfa_active="true")))
    on = {"AccountMFAEnabled": 1}
    assert combine("1", on, row, None, root_virtual_mfa=False).mfa_hardware is True
    assert combine("1", on, row, None, root_virtual_mfa=True).mfa_hardware is False
    assert combine("1", {"AccountMFAEnabled": 0}, row, None, root_virtual_mfa=False).mfa_hardware is False


def test_root_without_credentials_passes_mfa_controls() -> None:
    row = parse_root_row(report(root(password_enabled="false")))
    posture = combine("1", {"AccountMFAEnabled": 0}, row, None, False)
    assert posture.credentials_present is False
    assert posture.findings() == []
    unknown = combine("1", {"AccountMFAEnabled": 0}, parse_root_row(report(root())), None, False)
    assert unknown.credentials_present is True
    assert unknown.findings() == ["mfa_enabled", "mfa_hardware"]
