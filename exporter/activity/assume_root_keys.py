"""Which temporary access keys were issued by `sts:AssumeRoot`: the evidence that makes a
Root record a privileged-task action rather than a person using root.

AWS's way of tying a member account's Root records to a centralized-root-access session
(IAM User Guide, "Track privileged tasks in AWS CloudTrail"): the caller's `AssumeRoot`
record carries `responseElements.credentials.accessKeyId`, and every record made with
those credentials carries the same `userIdentity.accessKeyId`. A root GetSessionToken or
console session also uses an `ASIA` key, so nothing but this link (or an explicit marker
on the Root record itself) may excuse a Root record from paging.

`AssumeRootKeys` is pure data: no clock, no I/O. Keys are kept until their expiry, bounded
in number (the keys that expire first are forgotten first), and serialise to JSON for the
state file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# AssumeRoot's DurationSeconds is at most 900: a record that gives no usable expiration
# gets the longest life its key can have.
MAX_SESSION = timedelta(seconds=900)
DEFAULT_MAX_KEYS = 100_000
_KEY = re.compile(r"^ASIA[A-Z0-9]{12,124}$")
# CloudTrail writes STS credential expirations as "Nov 22, 2026, 10:07:11 AM" (not ISO).
_CLOUDTRAIL_TIME = "%b %d, %Y, %I:%M:%S %p"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """One key an AssumeRoot call issued: for which account, with which task policy, until when."""

    account_id: str
    task_policy: str
    expires: float  # epoch seconds


def issued_key(record: Mapping[str, Any], account_id: str, task_policy: str) -> tuple[str, IssuedKey] | None:
    """The key a successful AssumeRoot record issued, or None when it names none."""
    response = record.get("responseElements")
    credentials = response.get("credentials") if isinstance(response, Mapping) else None
    if not isinstance(credentials, Mapping):
        return None
    key = credentials.get("accessKeyId")
    if not isinstance(key, str) or not _KEY.match(key):
        return None
    expires = parse_expiration(credentials.get("expiration"))
    if expires is None:
        event_time = record.get("eventTime")
        try:
            start = datetime.fromisoformat(event_time) if isinstance(event_time, str) else None
        except ValueError:
            start = None
        if start is None:
            return None
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start
        expires = (start + MAX_SESSION).timestamp()
    return key, IssuedKey(account_id, task_policy, expires)


def parse_expiration(value: Any) -> float | None:
    """Epoch seconds of a credentials expiration as CloudTrail or the API writes it."""
    if not isinstance(value, str):
        return None
    for parse in (datetime.fromisoformat, lambda v: datetime.strptime(v, _CLOUDTRAIL_TIME)):
        try:
            parsed = parse(value)
        except ValueError:
            continue
        return (parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed).timestamp()
    return None


class AssumeRootKeys:
    """Access key id -> IssuedKey, bounded; not thread-safe (the store holds its lock)."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._keys: dict[str, IssuedKey] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def learn(self, key: str, issued: IssuedKey) -> None:
        self._keys[key] = issued
        if len(self._keys) > self.max_keys:
            # Forget the keys that expire first (the least likely to show up again), a tenth
            # more than needed so the sort does not run on every new key.
            keep = max(1, self.max_keys - self.max_keys // 10)
            self._keys = dict(sorted(self._keys.items(), key=lambda item: item[1].expires)[-keep:])

    def lookup(self, key: Any, account_id: str) -> IssuedKey | None:
        """The issuing session of `key` when it was issued for `account_id`."""
        issued = self._keys.get(key) if isinstance(key, str) else None
        return issued if issued is not None and issued.account_id == account_id else None

    def prune(self, now: float, keep_for: float) -> None:
        """Forget keys expired more than `keep_for` seconds before `now` (records made with
        them may still be on their way)."""
        self._keys = {k: v for k, v in self._keys.items() if v.expires + keep_for >= now}

    def to_state(self) -> dict[str, list[Any]]:
        return {k: [v.account_id, v.task_policy, v.expires] for k, v in sorted(self._keys.items())}

    @classmethod
    def from_state(cls, state: Any, max_keys: int = DEFAULT_MAX_KEYS) -> AssumeRootKeys:
        """Raises ValueError on content that is not `to_state()` output."""
        if not isinstance(state, Mapping):
            raise ValueError("assume_root_keys is not an object")
        keys = cls(max_keys)
        for key, row in state.items():
            if (
                not isinstance(row, list) or len(row) != 3 or not all(isinstance(x, str) for x in row[:2])
                or isinstance(row[2], bool) or not isinstance(row[2], (int, float))
            ):
                raise ValueError(f"assume_root_keys has a bad entry {key!r:.40}")
            keys.learn(str(key), IssuedKey(row[0], row[1], float(row[2])))
        return keys
