"""The AssumeRoot key ledger: bounded, pruned by expiry, serialisable, strict on bad state."""

from __future__ import annotations

import pytest

from exporter.activity.assume_root_keys import AssumeRootKeys, IssuedKey, issued_key, parse_expiration

ACCOUNT = "222222222222"


def test_lookup_needs_the_issuing_account() -> None:
    keys = AssumeRootKeys()
    keys.learn("ASIAAAAAAAAAAAAAAAAA", IssuedKey(ACCOUNT, "S3UnlockBucketPolicy", 1000.0))
    assert keys.lookup("ASIAAAAAAAAAAAAAAAAA", ACCOUNT) == IssuedKey(ACCOUNT, "S3UnlockBucketPolicy", 1000.0)
    assert keys.lookup("ASIAAAAAAAAAAAAAAAAA", "333333333333") is None
    assert keys.lookup(None, ACCOUNT) is None and keys.lookup(["x"], ACCOUNT) is None


def test_bounded_forgetting_the_keys_that_expire_first() -> None:
    keys = AssumeRootKeys(max_keys=10)
    for n in range(11):
        keys.learn(f"ASIA{n:016d}", IssuedKey(ACCOUNT, "other", float(100 - n)))
    assert len(keys) == 9
    # Keys 9 and 10 expire first (91, 90): gone, a tenth more than the overflow; the rest stay.
    assert f"ASIA{9:016d}" not in keys and f"ASIA{10:016d}" not in keys
    assert all(f"ASIA{n:016d}" in keys for n in range(9))


def test_prune_keeps_keys_for_a_while_past_expiry() -> None:
    keys = AssumeRootKeys()
    keys.learn("ASIAOLD0000000000000", IssuedKey(ACCOUNT, "other", 1000.0))
    keys.learn("ASIANEW0000000000000", IssuedKey(ACCOUNT, "other", 5000.0))
    keys.prune(now=4000.0, keep_for=3600.0)
    assert len(keys) == 2
    keys.prune(now=4601.0, keep_for=3600.0)
    assert "ASIAOLD0000000000000" not in keys and "ASIANEW0000000000000" in keys


def test_state_roundtrip_and_bad_state() -> None:
    keys = AssumeRootKeys()
    keys.learn("ASIAAAAAAAAAAAAAAAAA", IssuedKey(ACCOUNT, "IAMAuditRootUserCredentials", 1000.5))
    assert AssumeRootKeys.from_state(keys.to_state()).to_state() == keys.to_state()
    for bad in ([], {"k": [ACCOUNT, "x"]}, {"k": [ACCOUNT, "x", True]}, {"k": [1, "x", 2.0]}):
        with pytest.raises(ValueError, match="assume_root_keys"):
            AssumeRootKeys.from_state(bad)


def test_expiration_formats() -> None:
    assert parse_expiration("Nov 22, 2026, 10:07:11 AM") == parse_expiration("2026-11-22T10:07:11Z")
    assert parse_expiration("Nov 22, 2026, 10:07:11 PM") == parse_expiration("2026-11-22T22:07:11+00:00")
    assert parse_expiration("soon") is None and parse_expiration(None) is None


def test_unusable_expiration_gets_the_longest_session_from_event_time() -> None:
    record = {"eventTime": "2026-11-22T10:00:00Z",
              "responseElements": {"credentials": {"accessKeyId": "ASIAI44QH8DHBEXAMPLE", "expiration": "later"}}}
    learned = issued_key(record, ACCOUNT, "other")
    assert learned is not None and learned[1].expires == parse_expiration("2026-11-22T10:15:00Z")


@pytest.mark.parametrize("response", [None, {}, {"credentials": None}, {"credentials": {"accessKeyId": "AKIAIOSFODNN7EXAMPLE"}},
                                      {"credentials": {"accessKeyId": "<redacted>"}}])
def test_records_without_a_temporary_key_issue_nothing(response: object) -> None:
    assert issued_key({"eventTime": "2026-11-22T10:00:00Z", "responseElements": response}, ACCOUNT, "other") is None
