"""The root row of an IAM credential report, parsed by column name.

AWS documents the booleans upper-case but sends them lower-case, older reports have fewer
columns, and root's password columns say `not_supported` in most real reports: every
comparison here is case-insensitive and every column optional, and "unknown" never turns
into "absent".
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone

ROOT_USER = "<root_account>"
# The columns of a current report, in AWS's order (for the sandbox and the benchmark's fake AWS).
REPORT_HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)
_NO_VALUE = {"", "n/a", "no_information", "not_supported"}


class CredentialReportError(ValueError):
    """The report cannot be read; the message says why (never includes report content)."""


@dataclass(frozen=True, slots=True)
class RootReportRow:
    password: str  # "present", "absent" or "unknown"
    password_last_used: datetime | None
    mfa_active: bool | None
    access_keys_active: int
    access_keys_inactive: int
    access_key_last_used: datetime | None
    certificates_active: int
    certificates_inactive: int


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def parse_time(value: str | None) -> datetime | None:
    if value is None or value.strip().lower() in _NO_VALUE:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _slots(row: dict[str, str], prefix: str, count: int, rotated: str) -> tuple[int, int, list[datetime]]:
    active = inactive = 0
    used: list[datetime] = []
    for n in range(1, count + 1):
        flag = _bool(row.get(f"{prefix}_{n}_active"))
        # An inactive key still exists when it has a rotation time; "false" + "N/A" is no key.
        exists = flag is True or parse_time(row.get(f"{prefix}_{n}_{rotated}")) is not None
        if flag is True:
            active += 1
        elif exists:
            inactive += 1
        last = parse_time(row.get(f"{prefix}_{n}_last_used_date"))
        if last is not None:
            used.append(last)
    return active, inactive, used


def parse_root_row(content: bytes | str) -> RootReportRow:
    """The root user's row of a credential report (CSV bytes as GetCredentialReport returns)."""
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CredentialReportError("credential report is not UTF-8 text") from None
    try:
        return _root_row(csv.DictReader(io.StringIO(content, newline="")))
    except csv.Error as exc:  # a stray quote or line break, a field beyond csv's size limit
        raise CredentialReportError(f"credential report is not valid CSV ({str(exc).split(' - ')[0]})") from None


def _root_row(reader: csv.DictReader) -> RootReportRow:
    if not reader.fieldnames or "user" not in [f.strip() for f in reader.fieldnames]:
        raise CredentialReportError("credential report has no 'user' column")
    for raw in reader:
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if row.get("user") != ROOT_USER:
            continue
        enabled = _bool(row.get("password_enabled"))
        password = "unknown" if enabled is None else ("present" if enabled else "absent")
        keys_active, keys_inactive, keys_used = _slots(row, "access_key", 2, "last_rotated")
        certs_active, certs_inactive, _ = _slots(row, "cert", 2, "last_rotated")
        return RootReportRow(
            password=password,
            password_last_used=parse_time(row.get("password_last_used")),
            mfa_active=_bool(row.get("mfa_active")),
            access_keys_active=keys_active,
            access_keys_inactive=keys_inactive,
            access_key_last_used=max(keys_used) if keys_used else None,
            certificates_active=certs_active,
            certificates_inactive=certs_inactive,
        )
    raise CredentialReportError(f"credential report has no {ROOT_USER} row")
