"""Root console logins per calendar quarter (UTC): boundaries, history, completeness, state file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from exporter.activity.counters import QUARTERS_KEPT
from exporter.activity.state_file import StateFileError
from exporter.activity.store import EventStore
from tests.test_event_store import A, B, login, samples, value

LAST_SECOND_OF_Q1 = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)
FIRST_SECOND_OF_Q2 = datetime(2026, 4, 1, 0, 0, 0, tzinfo=UTC)


def quarter(store: EventStore, which: str, now: datetime, account: str = A) -> float | None:
    return value(store, "aws_root_console_logins_quarter", now=now, account_id=account, quarter=which)


def complete(store: EventStore, which: str, now: datetime) -> float | None:
    return value(store, "aws_root_console_logins_quarter_complete", now=now, quarter=which)


def boundary_store() -> EventStore:
    store = EventStore(datetime(2026, 3, 1, tzinfo=UTC))
    store.register_accounts([A], now=datetime(2026, 3, 1, tzinfo=UTC))
    store.ingest(login("q1-last", LAST_SECOND_OF_Q1), "eventbridge_sqs", LAST_SECOND_OF_Q1)
    store.ingest(login("q2-first", FIRST_SECOND_OF_Q2), "eventbridge_sqs", FIRST_SECOND_OF_Q2)
    return store


def test_the_quarter_boundary_is_midnight_utc_of_april_1() -> None:
    store = boundary_store()
    # Just after midnight: the 23:59:59 login is last quarter's, the 00:00:00 one this quarter's.
    after = FIRST_SECOND_OF_Q2 + timedelta(seconds=1)
    assert quarter(store, "current", after) == 1
    assert quarter(store, "previous", after) == 1
    # Just before midnight: the March 31 login is this quarter's; Q4 2025 had none. (The
    # April 1 record, in the future of this clock, belongs to no exposed quarter.)
    before = LAST_SECOND_OF_Q1 + timedelta(microseconds=500_000)
    assert quarter(store, "current", before) == 1
    assert quarter(store, "previous", before) == 0
    # At 00:00:00 exactly the new quarter has begun.
    assert store.logins_in_quarter(A, "current", FIRST_SECOND_OF_Q2) == 1
    assert store.logins_in_quarter(A, "previous", FIRST_SECOND_OF_Q2) == 1
    # A quarter later, Q1 is out of view: Q2 is the previous quarter, Q3 has none.
    july = datetime(2026, 7, 1, tzinfo=UTC)
    assert (quarter(store, "current", july), quarter(store, "previous", july)) == (0, 1)


def test_a_login_in_another_timezone_counts_in_its_utc_quarter() -> None:
    store = EventStore(datetime(2026, 3, 1, tzinfo=UTC))
    store.register_accounts([A])
    # 2026-03-31T20:00-05:00 is 2026-04-01T01:00Z: the second quarter.
    at = datetime(2026, 3, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    store.ingest(login("tz", at), "eventbridge_sqs", at)
    now = datetime(2026, 4, 2, tzinfo=UTC)
    assert (quarter(store, "current", now), quarter(store, "previous", now)) == (1, 0)


def test_the_previous_quarter_across_a_year_end() -> None:
    store = EventStore(datetime(2025, 12, 1, tzinfo=UTC))
    store.register_accounts([A])
    at = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    store.ingest(login("dec", at), "eventbridge_sqs", at)
    new_year = datetime(2026, 1, 1, tzinfo=UTC)
    assert (quarter(store, "current", new_year), quarter(store, "previous", new_year)) == (0, 1)


def test_history_counts_in_its_quarter_beyond_the_90_day_window() -> None:
    now = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
    store = EventStore(now)
    store.register_accounts([A], now=now)
    # Read as history (before counting_from): no counter moves, but the quarter counts it.
    store.ingest(login("april-1", FIRST_SECOND_OF_Q2), "lookup_events", now)
    store.ingest(login("june", now - timedelta(days=3)), "lookup_events", now)
    assert value(store, "aws_root_console_logins_total", now=now, account_id=A, outcome="success", mfa="true", approved="false") is None
    # April 1 00:00 is 90.5 days before now: out of the trailing 90 days, in this quarter.
    assert value(store, "aws_root_console_logins_90d", now=now, account_id=A) == 1
    assert quarter(store, "current", now) == 2


def test_failed_logins_and_duplicates_do_not_count() -> None:
    store = boundary_store()
    now = FIRST_SECOND_OF_Q2 + timedelta(hours=1)
    store.ingest(login("failed", now - timedelta(minutes=5), outcome="failure"), "eventbridge_sqs", now)
    assert store.ingest(login("q2-first", FIRST_SECOND_OF_Q2), "lookup_events", now) is False
    assert store.ingest(login("q2-first", FIRST_SECOND_OF_Q2), "s3_trail", now) is False
    assert quarter(store, "current", now) == 1


def test_two_series_per_account_and_two_completeness_series() -> None:
    store = EventStore(datetime(2026, 3, 1, tzinfo=UTC))
    store.register_accounts([A, B])
    s = samples(store, datetime(2026, 3, 2, tzinfo=UTC))
    assert sorted(k for k in s if k[0] == "aws_root_console_logins_quarter") == sorted(
        ("aws_root_console_logins_quarter", (("account_id", account), ("quarter", q)))
        for account in (A, B) for q in ("current", "previous")
    )
    assert all(v == 0 for k, v in s.items() if k[0] == "aws_root_console_logins_quarter")
    assert sorted(k[1] for k in s if k[0] == "aws_root_console_logins_quarter_complete") == [
        (("quarter", "current"),), (("quarter", "previous"),)
    ]


def test_completeness_follows_the_history_read() -> None:
    installed = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    store = EventStore(installed)
    # No account known: no evidence, not complete.
    assert (complete(store, "current", installed), complete(store, "previous", installed)) == (0, 0)
    store.register_accounts([A], now=installed)
    # Only live sources so far: the account's records start now.
    assert (complete(store, "current", installed), complete(store, "previous", installed)) == (0, 0)
    # LookupEvents read 90 days back (to September 4): Q4 (from October 1) is complete, Q3 is not.
    store.note_history(A, installed - timedelta(days=90))
    assert (complete(store, "current", installed), complete(store, "previous", installed)) == (1, 0)
    # A later read from a later start does not shorten what is known.
    store.note_history(A, installed)
    assert complete(store, "current", installed) == 1
    # After the next quarter ends, both exposed quarters are covered.
    april = datetime(2027, 4, 1, tzinfo=UTC)
    assert (complete(store, "current", april), complete(store, "previous", april)) == (1, 1)
    # An account that joins later with no history read makes the counts incomplete again.
    later = april + timedelta(days=1)
    store.register_accounts([B], now=later)
    assert (complete(store, "current", later), complete(store, "previous", later)) == (0, 0)


def test_installed_on_the_last_day_of_a_quarter_the_current_one_is_incomplete() -> None:
    installed = datetime(2026, 12, 31, 12, 0, tzinfo=UTC)
    store = EventStore(installed)
    store.register_accounts([A], now=installed)
    store.note_history(A, installed - timedelta(days=90))  # October 2: October 1 is missing
    assert (complete(store, "current", installed), complete(store, "previous", installed)) == (0, 0)


def test_old_quarters_are_pruned_and_impossible_ones_ignored() -> None:
    store = EventStore(datetime(2024, 1, 1, tzinfo=UTC))
    store.register_accounts([A])
    # Three years of logins, one per quarter, each read as it happens.
    months = [datetime(2024 + m // 12, m % 12 + 1, 15, tzinfo=UTC) for m in range(0, 36, 3)]
    for i, at in enumerate(months):
        store.ingest(login(f"l-{i}", at), "eventbridge_sqs", at)
        kept = store.to_state()["console_logins_quarter"]["counts"][A]
        assert len(kept) <= 2, kept  # the quarters before the previous one are dropped
    assert store.to_state()["console_logins_quarter"]["counts"][A] == {"2026-Q3": 1, "2026-Q4": 1}
    # A record read in October 2026 with an eventTime in 2099 (clock skew) counts in no quarter.
    seen = datetime(2026, 10, 20, tzinfo=UTC)
    store.ingest(login("skewed", datetime(2099, 1, 1, tzinfo=UTC)), "eventbridge_sqs", seen)
    assert store.to_state()["console_logins_quarter"]["counts"][A] == {"2026-Q3": 1, "2026-Q4": 1}
    # Seconds before midnight of December 31, a login stamped just after it counts in 2027-Q1.
    seen = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)
    store.ingest(login("early", datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)), "eventbridge_sqs", seen)
    assert store.to_state()["console_logins_quarter"]["counts"][A] == {"2026-Q3": 1, "2026-Q4": 1, "2027-Q1": 1}
    assert len(store.to_state()["console_logins_quarter"]["counts"][A]) <= QUARTERS_KEPT


def test_state_file_keeps_quarters_longer_than_the_login_list(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    store = EventStore(start)
    store.register_accounts([A], now=start)
    store.note_history(A, start - timedelta(days=90))
    store.ingest(login("jan", datetime(2026, 1, 2, tzinfo=UTC)), "eventbridge_sqs", datetime(2026, 1, 2, tzinfo=UTC))
    # Five months later a new login moves the high-water mark: the January login leaves the
    # 90-day list, but it still counts in Q1.
    may = datetime(2026, 5, 20, tzinfo=UTC)
    store.ingest(login("may", may), "eventbridge_sqs", may)
    store.save(path)
    loaded = EventStore.load(path)
    assert loaded.to_state() == store.to_state()
    assert loaded.logins_90d(A, may) == 1
    assert (quarter(loaded, "current", may), quarter(loaded, "previous", may)) == (1, 1)
    assert (complete(loaded, "current", may), complete(loaded, "previous", may)) == (1, 1)


def test_a_state_file_without_quarters_is_backfilled_from_the_login_list(tmp_path: Path) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    store = EventStore(start)
    store.register_accounts([A], now=start)
    store.ingest(login("q1-last", LAST_SECOND_OF_Q1), "eventbridge_sqs", LAST_SECOND_OF_Q1)
    store.ingest(login("q2-first", FIRST_SECOND_OF_Q2), "eventbridge_sqs", FIRST_SECOND_OF_Q2)
    state = store.to_state()
    del state["console_logins_quarter"]  # as written by an exporter before this key existed
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    loaded = EventStore.load(path)
    now = FIRST_SECOND_OF_Q2 + timedelta(days=1)
    assert (quarter(loaded, "current", now), quarter(loaded, "previous", now)) == (1, 1)
    # The login list reaches back 90 days before the newest record: from April 1, that is
    # January 1 exactly (2026's first quarter lasts 90 days), so Q1 is complete.
    assert loaded.to_state()["console_logins_quarter"]["history_from"][A] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert (complete(loaded, "current", now), complete(loaded, "previous", now)) == (1, 1)
    # One second later and the first second of Q1 is out of reach.
    state["high_water"] = FIRST_SECOND_OF_Q2.timestamp() + 1
    path.write_text(json.dumps(state))
    assert complete(EventStore.load(path), "previous", now) == 0


@pytest.mark.parametrize(
    ("quarterly", "problem"),
    [
        ({"history_from": {}, "counts": {A: {"2026-Q5": 1}}}, "quarters like 2026-Q1"),
        ({"history_from": {}, "counts": {A: {"2026-Q1": -1}}}, "not a count"),
        ({"history_from": {A: "yesterday"}, "counts": {}}, "not a timestamp"),
        ({"counts": {}}, "missing 'history_from'"),
        ([], "not an object"),
    ],
)
def test_bad_quarter_content_names_the_problem(tmp_path: Path, quarterly: object, problem: str) -> None:
    state = EventStore(datetime(2026, 3, 1, tzinfo=UTC)).to_state()
    state["console_logins_quarter"] = quarterly
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    with pytest.raises(StateFileError, match=problem) as info:
        EventStore.load(path)
    assert str(path) in str(info.value)
