"""In-memory store of root activity: deduplication, counters, a state file, metric families.

`EventStore` takes `Verdict`s from `classify()` (any source: LookupEvents polling,
EventBridge -> SQS, the S3 organization trail) and keeps everything the activity metrics
of README.md (Metrics) need. It does no I/O except `save()`/`load()`, needs no event loop, and
is thread-safe (one lock), so a scrape thread may call `metric_families()` while the
pollers ingest.

Which verdict feeds which metric:

* `console_login` -> `aws_root_console_logins_total` (with `approved`: the login is inside
  an approved break-glass window), the 90-day login list (successes only: a failed attempt
  is not a login; approved or not, a login is a login), last activity and last event.
* `signin_other` -> `aws_root_signin_events_total`, last activity and last event.
* `api_call` -> `aws_root_api_calls_total` and `aws_root_api_calls_by_event_source_total`,
  last activity and last event.
* any verdict with `assumed_root` (an action in an `sts:AssumeRoot` privileged session)
  -> `aws_root_assumed_root_calls_total` ONLY: it is not a person holding root
  credentials, and the exporter's own audit sessions must not look like root use (nor
  move the last-activity time every sweep).
* `assume_root_call` -> `aws_root_assume_root_calls_total` (by target account).
* any verdict with a `recovery_signal` (a root's recovery path reopened or moved: by IAM
  principals as `recovery_signal` verdicts, or a root password created as root) ->
  `aws_root_recovery_signals_total`, created by its first event, besides the above.

AssumeRoot evidence (`assume_root_keys`, see `exporter.activity.assume_root_keys`): the
service teaches the store every key a successful AssumeRoot record issued (`learn_key`).
A Root record that could be such a session but whose key is not known yet
(`Verdict.awaiting_key`) is held (`hold`) until its AssumeRoot record arrives, which
counts it as a privileged-task action, or until its wait ends (`release_due`), which
counts it as root use. Keys and held records are in the state file, so a restart between
the two records changes nothing.

Deduplication: by `eventID`, whatever the source (a record seen by LookupEvents and then
by the trail counts once; the second sighting counts in
`aws_root_exporter_events_duplicate_total{source=...}`), and by `sharedEventID` (the two copies of
a cross-account call, one per account, count once). Memory is bounded: an id is remembered
while its `eventTime` is within `dedup_retention` (default 7 days) of the newest
`eventTime` seen (not of the wall clock, so a restart after a long outage still
deduplicates what the pollers re-read), and at most `max_event_ids` ids are kept (default
200 000, oldest `eventTime` forgotten first). A copy arriving after its id was forgotten
is counted again: a late duplicate inflates a counter rather than hiding an event.
Successful console logins are kept with their ids for 90 days, so the 90-day count is
exact whatever the id retention.

Logins per calendar quarter (UTC): every successful console login, live or history, also
counts in its account's quarter (`2026-Q1`: January to March). A quarter lasts 90-92 days,
longer than CloudTrail's 90-day history and than the login list above, so these counts are
kept on their own (from the previous quarter on, at most `QUARTERS_KEPT` per account, in the state file) and
exposed as `aws_root_console_logins_quarter{quarter="current"|"previous"}`. Whether a
quarter's counts are complete depends on how far back the records go: each account has a
`history_from` time, the start of the first LookupEvents read of its history
(`note_history`), else the time it was registered (the live sources see only what happens
from then on). `aws_root_console_logins_quarter_complete{quarter}` is 1 when every known
account's history starts at or before the quarter's first second; a new install, whose
history goes back at most 90 days, shows the previous quarter incomplete until the current one
ends, and the current one incomplete only when installed on its last 1-2 days. A
login is deduplicated by eventID as everywhere else; login ids are kept 90 days, so only a
copy read more than 90 days after the first (an S3 trail replay) would count twice.

Backfill and restarts: a store has a `counting_from` time. A record whose `eventTime` is
before it is history: it updates the 90-day login list, the last activity time and the
last event details, and is remembered for deduplication, but it does NOT increment any
`_total` counter or the delay histogram. A fresh store (no state file) counts from
`backfill_grace` (default 15 minutes, CloudTrail's worst documented delivery delay) before
the exporter started, so reading 90 days of CloudTrail history on a restart does not show
up as a burst in `increase(aws_root_console_logins_total[1h])`, while a root login a few
minutes before the restart, still in flight when the old process stopped, is counted.
(At worst a record the previous process already counted is counted again after a
restart without a state file: that errs toward alerting.) A store loaded from a state
file keeps the stored `counting_from` and counter values: counters continue where they
were, and records that happened while the exporter was down are counted when the pollers
catch up from their checkpoints.

Sample exposition (`metric_families()` rendered by prometheus_client)::

    # HELP aws_root_console_logins_total Root ConsoleLogin records, by outcome, MFA use and approval (break-glass window).
    # TYPE aws_root_console_logins_total counter
    aws_root_console_logins_total{account_id="111122223333",approved="false",mfa="false",outcome="success"} 1.0
    # HELP aws_root_api_calls_total Root API calls by category, outcome and approval (break-glass window).
    # TYPE aws_root_api_calls_total counter
    aws_root_api_calls_total{account_id="111122223333",approved="false",category="administrative",outcome="failure"} 1.0
    # HELP aws_root_last_event_info Always 1: the latest root record of the account (its time is aws_root_last_activity_timestamp_seconds).
    # TYPE aws_root_last_event_info gauge
    aws_root_last_event_info{account_id="111122223333",event_name="CreateBucket",event_source="s3.amazonaws.com",mfa="unknown",outcome="failure",source_ip="203.0.113.25"} 1.0
    # HELP aws_root_console_logins_90d Exact count of successful root console logins in the trailing 90 days (a sliding window, not a calendar quarter), from CloudTrail history.
    # TYPE aws_root_console_logins_90d gauge
    aws_root_console_logins_90d{account_id="111122223333"} 1.0
    # HELP aws_root_console_logins_quarter Successful root console logins in the current and previous calendar quarter (UTC), from CloudTrail records kept in the state file.
    # TYPE aws_root_console_logins_quarter gauge
    aws_root_console_logins_quarter{account_id="111122223333",quarter="current"} 1.0
    aws_root_console_logins_quarter{account_id="111122223333",quarter="previous"} 0.0
    # HELP aws_root_console_logins_quarter_complete 1 when the quarterly login counts cover the whole quarter for every account (the records read reach back to its start).
    # TYPE aws_root_console_logins_quarter_complete gauge
    aws_root_console_logins_quarter_complete{quarter="current"} 1.0
    aws_root_console_logins_quarter_complete{quarter="previous"} 0.0
    # HELP aws_root_exporter_event_delay_seconds Delay between a root record's eventTime and its processing by the exporter.
    # TYPE aws_root_exporter_event_delay_seconds histogram
    aws_root_exporter_event_delay_seconds_bucket{le="30.0",source="eventbridge_sqs"} 0.0
    aws_root_exporter_event_delay_seconds_bucket{le="60.0",source="eventbridge_sqs"} 1.0
    ...
    aws_root_exporter_event_delay_seconds_count{source="eventbridge_sqs"} 1.0
    aws_root_exporter_event_delay_seconds_sum{source="eventbridge_sqs"} 40.0
"""

from __future__ import annotations

import bisect
import contextlib
import json
import ipaddress
import math
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from exporter.activity.assume_root_keys import AssumeRootKeys, IssuedKey
from exporter.activity.classify import Verdict
from exporter.metrics.textformat import Family, counter, gauge

# Version 2: `console_logins` rows carry `approved` (account, outcome, mfa, approved).
# Version 3: `assume_root_keys`, `pending` and the `recovery_signals` counter.
# Older files are migrated on load (version 1 logins were counted without a window check:
# approved="false"; before version 3 no key or held record existed), so an upgrade keeps
# every counter.
STATE_VERSION = 3
_MIGRATABLE_VERSIONS = (1, 2)
SOURCES: tuple[str, ...] = ("lookup_events", "eventbridge_sqs", "s3_trail")
DELAY_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
LOGIN_WINDOW = timedelta(days=90)
# Quarters of login counts kept per account at most: the previous, current and next ones
# of the clock (a login seconds after a quarter's end may be read seconds before it), and
# one more for a state file read after a quarter's end.
QUARTERS_KEPT = 4
_QUARTER = re.compile(r"^\d{4}-Q[1-4]$")
DEFAULT_DEDUP_RETENTION = timedelta(days=7)
DEFAULT_MAX_EVENT_IDS = 200_000
DEFAULT_BACKFILL_GRACE = timedelta(minutes=15)
# Records made with an AssumeRoot key keep arriving after the key expired (CloudTrail
# delivers up to 15 minutes late; a record re-read later is deduplicated by its eventID and
# needs no key): keep keys an hour past their expiry. The exporter's own audit opens about
# one session per member account every 14 minutes, so an organization of N accounts holds
# about 5.4 N keys, well under the ledger's bound (assume_root_keys.DEFAULT_MAX_KEYS) up to
# some 18 000 accounts.
KEY_RETENTION = timedelta(hours=1)
# Held records beyond this many are released as root use at once, oldest first: a flood of
# unexplained ASIA records must not grow memory, and releasing errs toward alerting.
MAX_PENDING = 10_000
_PRUNE_EVERY = 10_000
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_BOOL = {True: "true", False: "false"}


_Counter = dict[tuple[str, ...], float]  # label values -> count


class StateFileError(Exception):
    """The state file cannot be used; the message names the file and the problem."""


@dataclass(slots=True)
class _LastEvent:
    time: float
    event_name: str
    event_source: str
    source_ip: str
    mfa: str
    outcome: str


@dataclass(frozen=True, slots=True)
class _Pending:
    verdict: Verdict
    source: str
    due: float


@dataclass(slots=True)
class _Histogram:
    buckets: list[float]  # per bucket (not cumulative), the last one is +Inf
    total: float = 0.0
    count: float = 0.0

    @classmethod
    def empty(cls) -> _Histogram:
        return cls([0.0] * (len(DELAY_BUCKETS) + 1))

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(DELAY_BUCKETS, value)] += 1
        self.total += value
        self.count += 1


# Activity families in exposition order: the counters (metric, help, labels, store attribute), then the rest.
_COUNTERS: dict[str, tuple[str, str, list[str], str]] = {
    "console_logins": ("aws_root_console_logins_total", "Root ConsoleLogin records, by outcome, MFA use and approval (break-glass window).",
                       ["account_id", "outcome", "mfa", "approved"], "_console_logins"),
    "signin_events": ("aws_root_signin_events_total", "Other root sign-in records (password recovery, password change, MFA check...).",
                      ["account_id", "event_name", "outcome"], "_signin_events"),
    "api_calls": ("aws_root_api_calls_total", "Root API calls by category, outcome and approval (break-glass window).",
                  ["account_id", "category", "outcome", "approved"], "_api_calls"),
    "api_calls_by_event_source": ("aws_root_api_calls_by_event_source_total",
                                  "Root API calls in the organization by the AWS service that recorded them.",
                                  ["event_source"], "_api_by_source"),
    "assumed_root_calls": ("aws_root_assumed_root_calls_total", "API calls made inside an sts:AssumeRoot privileged session in the account.",
                           ["account_id", "outcome"], "_assumed_root"),
    "assume_root_calls": ("aws_root_assume_root_calls_total", "sts:AssumeRoot calls, by target account and task policy.",
                          ["account_id", "task_policy", "outcome"], "_assume_root"),
    "recovery_signals": ("aws_root_recovery_signals_total",
                         "Changes that make a root usable again (recovery email, centralized root access disabled, root password created).",
                         ["account_id", "signal", "outcome"], "_signals"),
    "events_duplicate": ("aws_root_exporter_events_duplicate_total", "Records dropped because their eventID was already counted.",
                         ["source"], "_duplicates"),
    "events_rejected": ("aws_root_exporter_events_rejected_total", "Records or messages that could not be processed, by reason.",
                        ["source", "reason"], "_rejected"),
}
FAMILIES: tuple[str, ...] = (*_COUNTERS, "last_activity", "last_event", "console_logins_90d",
                              "console_logins_quarter", "console_logins_quarter_complete", "event_delay")
# The families that hold a series for every known account: the login counts (0 is a
# statement, "no root login in the window"). The event counters are not among them: each
# series appears with its first event, and the alert rules count an appearance as an
# increase (alerts/generate.py, increase_by); zero series for every label combination
# were two thirds of an account's series (issue 16).
_PER_ACCOUNT_AT_ZERO = ("console_logins_90d", "console_logins_quarter", "console_logins_quarter_complete")
# The families whose value moves with the clock alone (a window slides, a quarter ends).
TIME_DEPENDENT_FAMILIES = ("console_logins_90d", "console_logins_quarter", "console_logins_quarter_complete")


class EventStore:
    """Root activity state; see the module docstring. Thread-safe."""

    def __init__(
        self,
        started_at: datetime,
        *,
        backfill_grace: timedelta = DEFAULT_BACKFILL_GRACE,
        dedup_retention: timedelta = DEFAULT_DEDUP_RETENTION,
        max_event_ids: int = DEFAULT_MAX_EVENT_IDS,
    ):
        """A fresh store; `started_at` is when the exporter started (see the module docstring)."""
        _require_aware(started_at, "started_at")
        if max_event_ids < 1:
            raise ValueError("max_event_ids must be at least 1")
        self._lock = threading.RLock()
        self.counting_from = started_at - backfill_grace
        self._retention = dedup_retention.total_seconds()
        self._max_ids = max_event_ids
        self._accounts: set[str] = set()
        self._console_logins: _Counter = {}
        self._signin_events: _Counter = {}
        self._api_calls: _Counter = {}
        self._api_by_source: _Counter = {}
        self._assumed_root: _Counter = {}
        self._assume_root: _Counter = {}
        self._signals: _Counter = {}
        self.assume_root_keys = AssumeRootKeys()
        self._pending: dict[str, _Pending] = {}
        self._duplicates: dict[str, float] = {source: 0.0 for source in SOURCES}
        self._rejected: _Counter = {}
        self._delay: dict[str, _Histogram] = {source: _Histogram.empty() for source in SOURCES}
        self._last_activity: dict[str, float] = {}
        self._last_event: dict[str, _LastEvent] = {}
        self._logins: dict[str, list[tuple[float, str]]] = {}
        self._quarters: dict[str, dict[str, float]] = {}  # account -> "2026-Q1" -> successful logins
        self._history_from: dict[str, float] = {}  # account -> earliest eventTime its logins are known from
        self._seen: dict[str, float] = {}
        self._high_water = -math.inf
        self._since_prune = 0
        self._checkpoints: dict[str, str] = {}
        self._family_versions = dict.fromkeys(FAMILIES, 0)

    def _touch(self, *families: str) -> None:
        for name in families:
            self._family_versions[name] += 1

    # --- accounts, checkpoints, rejections ---------------------------------------------

    def register_accounts(self, account_ids: Iterable[str], now: datetime | None = None) -> None:
        """Give each new account its login-count series (at 0); its login history starts
        `now` until `note_history` says it goes further back."""
        registered_at = (now or datetime.now(UTC)).timestamp()
        with self._lock:
            for account in account_ids:
                if account in self._accounts:
                    continue
                self._accounts.add(account)
                self._history_from.setdefault(account, registered_at)
                self._touch(*_PER_ACCOUNT_AT_ZERO)

    def note_history(self, account_id: str, start: datetime) -> None:
        """Every root record of the account since `start` has been read (a LookupEvents
        history read): its quarterly login counts are complete from then on."""
        _require_aware(start, "start")
        with self._lock:
            ts = start.timestamp()
            if ts < self._history_from.get(account_id, math.inf):
                self._history_from[account_id] = ts
                self._touch("console_logins_quarter_complete")

    def set_checkpoint(self, source_key: str, value: str) -> None:
        with self._lock:
            self._checkpoints[source_key] = value

    def get_checkpoint(self, source_key: str) -> str | None:
        with self._lock:
            return self._checkpoints.get(source_key)

    def reject(self, source: str, reason: str) -> None:
        """Count a record or message that could not be processed, by a bounded `reason`:
        `malformed_record` (classify raised MalformedRecord), `malformed_message` (an SQS
        body or object that holds no usable record), `fetch_failed` (an S3 object could not
        be read)."""
        _require_source(source)
        if not _REASON.match(reason):
            raise ValueError(f"reason must be a short snake_case word, got {reason!r}")
        with self._lock:
            self._rejected[(source, reason)] = self._rejected.get((source, reason), 0.0) + 1
            self._touch("events_rejected")

    # --- ingestion -------------------------------------------------------------------

    def ingest(self, verdict: Verdict, source: str, seen_at: datetime) -> bool:
        """Record one verdict; False when its eventID was already ingested (from any source)."""
        _require_source(source)
        _require_aware(seen_at, "seen_at")
        event_ts = verdict.event_time.timestamp()
        with self._lock:
            if self._known(verdict, event_ts):
                self._duplicate(source)
                return False
            self._pending.pop(verdict.event_id, None)
            self._remember(verdict.event_id, event_ts, seen_at.timestamp())
            if verdict.shared_event_id:
                self._remember(_shared(verdict), event_ts, seen_at.timestamp())
            live = verdict.event_time >= self.counting_from
            if live:
                self._touch(*self._count(verdict), "event_delay")
                self._delay.setdefault(source, _Histogram.empty()).observe(
                    max(0.0, (seen_at - verdict.event_time).total_seconds())
                )
            self._update_gauges(verdict, event_ts)
            if verdict.kind == "console_login" and verdict.outcome == "success" and not verdict.assumed_root:
                self._count_quarter(verdict.account_id, verdict.event_time, seen_at)
            return True

    def _known(self, v: Verdict, event_ts: float) -> bool:
        return (
            v.event_id in self._seen
            or (bool(v.shared_event_id) and _shared(v) in self._seen)
            or self._login_known(v, event_ts)
        )

    def _duplicate(self, source: str) -> None:
        self._duplicates[source] = self._duplicates.get(source, 0.0) + 1
        self._touch("events_duplicate")

    # --- AssumeRoot evidence ---------------------------------------------------------

    def learn_key(self, key: str, issued: IssuedKey, seen_at: datetime) -> list[Verdict]:
        """Remember a key an AssumeRoot record issued; ingest the records held for it as
        privileged-task actions and return them."""
        released: list[Verdict] = []
        with self._lock:
            self.assume_root_keys.learn(key, issued)
            self.assume_root_keys.prune(seen_at.timestamp(), KEY_RETENTION.total_seconds())
            for event_id, held in list(self._pending.items()):
                v = held.verdict
                if v.awaiting_key == key and v.account_id == issued.account_id:
                    del self._pending[event_id]
                    v = replace(v, assumed_root=True, awaiting_key=None)
                    if self.ingest(v, held.source, seen_at):
                        released.append(v)
        return released

    def hold(self, verdict: Verdict, source: str, seen_at: datetime, wait: timedelta) -> bool:
        """Hold a record awaiting its AssumeRoot key for `wait`; False for a duplicate."""
        _require_source(source)
        _require_aware(seen_at, "seen_at")
        with self._lock:
            if self._known(verdict, verdict.event_time.timestamp()) or verdict.event_id in self._pending:
                self._duplicate(source)
                return False
            self._pending[verdict.event_id] = _Pending(verdict, source, (seen_at + wait).timestamp())
        return True

    def release_due(self, now: datetime) -> list[Verdict]:
        """Ingest, as root use, the held records whose wait has ended; return them."""
        _require_aware(now, "now")
        with self._lock:
            due = sorted((p for p in self._pending.values() if p.due <= now.timestamp()), key=lambda p: p.due)
            excess = len(self._pending) - len(due) - MAX_PENDING
            if excess > 0:
                rest = sorted((p for p in self._pending.values() if p.due > now.timestamp()), key=lambda p: p.due)
                due += rest[:excess]
            released = []
            for held in due:
                del self._pending[held.verdict.event_id]
                # Counted now: the delay histogram shows the wait, which delayed the alert.
                if self.ingest(held.verdict, held.source, now):
                    released.append(held.verdict)
            return released

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def _count(self, v: Verdict) -> tuple[str, ...]:
        """Count the verdict; the names of the families it moved."""
        moved = self._count_kind(v)
        if v.recovery_signal is not None:
            _inc(self._signals, (v.account_id, v.recovery_signal, v.outcome))
            moved = (*moved, "recovery_signals")
        return moved

    def _count_kind(self, v: Verdict) -> tuple[str, ...]:
        if v.kind == "recovery_signal":
            return ()
        if v.kind == "assume_root_call":
            _inc(self._assume_root, (v.account_id, v.task_policy or "other", v.outcome))
            return ("assume_root_calls",)
        if v.assumed_root:
            _inc(self._assumed_root, (v.account_id, v.outcome))
            return ("assumed_root_calls",)
        if v.kind == "console_login":
            _inc(self._console_logins, (v.account_id, v.outcome, v.mfa, _BOOL[v.approved]))
            return ("console_logins",)
        if v.kind == "signin_other":
            _inc(self._signin_events, (v.account_id, v.signin_event or "other", v.outcome))
            return ("signin_events",)
        _inc(self._api_calls, (v.account_id, v.category or "administrative", v.outcome, _BOOL[v.approved]))
        _inc(self._api_by_source, (v.account_id, v.event_source))
        return ("api_calls", "api_calls_by_event_source")

    def _update_gauges(self, v: Verdict, event_ts: float) -> None:
        if v.kind in ("assume_root_call", "recovery_signal") or v.assumed_root:
            return
        if event_ts > self._last_activity.get(v.account_id, -math.inf):
            self._last_activity[v.account_id] = event_ts
            self._last_event[v.account_id] = _LastEvent(event_ts, v.event_name, v.event_source, v.source_ip, v.mfa, v.outcome)
            self._touch("last_activity", "last_event")
        if v.kind == "console_login" and v.outcome == "success":
            self._touch("console_logins_90d", "console_logins_quarter")
            logins = self._logins.setdefault(v.account_id, [])
            bisect.insort(logins, (event_ts, v.event_id))
            horizon = self._high_water - LOGIN_WINDOW.total_seconds() - 86400
            if logins[0][0] < horizon:
                del logins[: bisect.bisect_left(logins, (horizon, ""))]

    def _count_quarter(self, account_id: str, event_time: datetime, seen_at: datetime) -> None:
        """Count a login in its quarter. Quarters before the previous one of `seen_at` are
        never shown again and are dropped; a login in a quarter after the next one of
        `seen_at` has an impossible eventTime (clock skew) and is not counted, so it cannot
        push a real quarter out of the `QUARTERS_KEPT` kept per account."""
        quarter = _quarter_name(event_time)
        if quarter > _quarter_name(_quarter_start(seen_at, "current") + timedelta(days=93)):
            return
        quarters = self._quarters.setdefault(account_id, {})
        quarters[quarter] = quarters.get(quarter, 0.0) + 1
        oldest_shown = _quarter_name(_quarter_start(seen_at, "previous"))
        for old in [q for q in quarters if q < oldest_shown] + sorted(quarters)[:-QUARTERS_KEPT]:
            quarters.pop(old, None)

    def _login_known(self, v: Verdict, event_ts: float) -> bool:
        logins = self._logins.get(v.account_id)
        if not logins or v.kind != "console_login":
            return False
        i = bisect.bisect_left(logins, (event_ts, v.event_id))
        return i < len(logins) and logins[i] == (event_ts, v.event_id)

    def _remember(self, event_id: str, event_ts: float, seen_ts: float) -> None:
        self._seen[event_id] = event_ts
        # A clock-skewed future eventTime must not push every other id out of retention.
        self._high_water = max(self._high_water, min(event_ts, seen_ts))
        self._since_prune += 1
        if len(self._seen) > self._max_ids or self._since_prune >= _PRUNE_EVERY:
            self._prune_ids()

    def _prune_ids(self) -> None:
        self._since_prune = 0
        horizon = self._high_water - self._retention
        kept = {k: ts for k, ts in self._seen.items() if ts >= horizon}
        if len(kept) > self._max_ids:
            # Drop a tenth more than needed so pruning does not run on every insert.
            keep = max(1, self._max_ids - self._max_ids // 10)
            kept = dict(sorted(kept.items(), key=lambda item: item[1])[-keep:])
        self._seen = kept

    # --- queries ---------------------------------------------------------------------

    def logins_90d(self, account_id: str, now: datetime) -> int:
        """Successful root console logins with now - 90 days < eventTime <= now."""
        _require_aware(now, "now")
        end = now.timestamp()
        with self._lock:
            logins = self._logins.get(account_id, [])
            lo = bisect.bisect_right(logins, (end - LOGIN_WINDOW.total_seconds(), "\U0010ffff"))
            hi = bisect.bisect_right(logins, (end, "\U0010ffff"))
            return hi - lo

    def logins_in_quarter(self, account_id: str, quarter: str, now: datetime) -> int:
        """Successful root console logins in the `current` or `previous` calendar quarter of `now` (UTC)."""
        start = _quarter_start(now, quarter)
        with self._lock:
            return int(self._quarters.get(account_id, {}).get(_quarter_name(start), 0))

    def quarter_complete(self, quarter: str, now: datetime) -> bool:
        """True when every known account's login history reaches back to the quarter's start
        (never before any account is known: no evidence is not a complete count)."""
        start = _quarter_start(now, quarter).timestamp()
        with self._lock:
            return bool(self._accounts) and all(self._history_from.get(a, math.inf) <= start for a in self._accounts)

    def seen_event_ids(self) -> int:
        with self._lock:
            return len(self._seen)

    # --- metrics ---------------------------------------------------------------------

    def metric_families(self, now: datetime | None = None) -> list[Any]:
        """Fresh metric families for every activity metric in README.md (Metrics)."""
        now = now or datetime.now(UTC)
        with self._lock:
            return [self.family(name, now) for name in FAMILIES]

    def family_version(self, name: str) -> int:
        """Moves whenever family `name` (one of FAMILIES) may have changed, but for the passing of time."""
        return self._family_versions[name]

    def family(self, name: str, now: datetime | None = None) -> Any:
        """One family of FAMILIES, fresh."""
        if name in _COUNTERS:
            metric, doc, labels, attribute = _COUNTERS[name]
            with self._lock:
                values = getattr(self, attribute)
                if name == "events_duplicate":
                    values = {(k,): v for k, v in values.items()}
                elif name == "api_calls_by_event_source":
                    # Kept per account (state file), shown per organization: hundreds of
                    # services times every account is no per-account series (issue 16).
                    by_source: _Counter = {}
                    for (_, source), count in values.items():
                        _inc(by_source, (_label(source, _EVENT_SOURCE),), count)
                    values = by_source
                return _counter(metric, doc, labels, values)
        now = now or datetime.now(UTC)
        with self._lock:
            if name == "last_activity":
                last = gauge("aws_root_last_activity_timestamp_seconds",
                             "eventTime of the latest root record seen for the account.", labels=["account_id"])
                last.rows = [((account,), ts) for account, ts in sorted(self._last_activity.items())]
                return last
            if name == "last_event":
                info = gauge("aws_root_last_event_info",
                             "Always 1: the latest root record of the account (its time is aws_root_last_activity_timestamp_seconds).",
                             labels=["account_id", "event_name", "event_source", "source_ip", "mfa", "outcome"])
                for account, e in sorted(self._last_event.items()):
                    info.add_metric([account, _label(e.event_name, _EVENT_NAME), _label(e.event_source, _EVENT_SOURCE),
                                     _source_ip(e.source_ip), e.mfa, e.outcome], 1.0)
                return info
            if name == "console_logins_90d":
                logins = gauge(
                    "aws_root_console_logins_90d",
                    "Exact count of successful root console logins in the trailing 90 days (a sliding window, not a calendar quarter), from CloudTrail history.",
                    labels=["account_id"],
                )
                for account in sorted(self._accounts | set(self._logins)):
                    logins.add_metric([account], float(self.logins_90d(account, now)))
                return logins
            if name == "console_logins_quarter":
                quarterly = gauge(
                    "aws_root_console_logins_quarter",
                    "Successful root console logins in the current and previous calendar quarter (UTC), "
                    "from CloudTrail records kept in the state file.",
                    labels=["account_id", "quarter"],
                )
                for account in sorted(self._accounts | set(self._quarters)):
                    for quarter in QUARTER_LABELS:
                        quarterly.add_metric([account, quarter], float(self.logins_in_quarter(account, quarter, now)))
                return quarterly
            if name == "console_logins_quarter_complete":
                complete = gauge(
                    "aws_root_console_logins_quarter_complete",
                    "1 when the quarterly login counts cover the whole quarter for every account "
                    "(the records read reach back to its start).",
                    labels=["quarter"],
                )
                for quarter in QUARTER_LABELS:
                    complete.add_metric([quarter], float(self.quarter_complete(quarter, now)))
                return complete
            if name == "event_delay":
                delay = HistogramMetricFamily("aws_root_exporter_event_delay_seconds",
                                              "Delay between a root record's eventTime and its processing by the exporter.",
                                              labels=["source"])
                for source, hist in sorted(self._delay.items()):
                    cumulative, buckets = 0.0, []
                    for bound, count in zip((*DELAY_BUCKETS, math.inf), hist.buckets, strict=True):
                        cumulative += count
                        buckets.append((floatToGoString(bound), cumulative))
                    delay.add_metric([source], buckets, hist.total)
                return delay
        raise KeyError(f"unknown activity family {name!r}")

    def collect(self) -> list[Any]:
        """prometheus_client Collector protocol: `registry.register(store)` works as is."""
        return self.metric_families()

    # --- state file ------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot (see `from_state`)."""
        with self._lock:
            return {
                "version": STATE_VERSION,
                "counting_from": self.counting_from.isoformat(),
                "high_water": None if self._high_water == -math.inf else self._high_water,
                "accounts": sorted(self._accounts),
                "counters": {
                    "console_logins": _rows(self._console_logins),
                    "signin_events": _rows(self._signin_events),
                    "api_calls": _rows(self._api_calls),
                    "api_calls_by_event_source": _rows(self._api_by_source),
                    "assumed_root_calls": _rows(self._assumed_root),
                    "assume_root_calls": _rows(self._assume_root),
                    "recovery_signals": _rows(self._signals),
                    "events_duplicate": [[k, v] for k, v in sorted(self._duplicates.items())],
                    "events_rejected": _rows(self._rejected),
                },
                "event_delay": {
                    source: {"bounds": list(DELAY_BUCKETS), "buckets": list(h.buckets), "sum": h.total, "count": h.count}
                    for source, h in sorted(self._delay.items())
                },
                "last_event": {
                    account: {"time": e.time, "event_name": e.event_name, "event_source": e.event_source,
                              "source_ip": e.source_ip, "mfa": e.mfa, "outcome": e.outcome}
                    for account, e in sorted(self._last_event.items())
                },
                "console_logins_90d": {account: [[ts, eid] for ts, eid in items] for account, items in sorted(self._logins.items())},
                "console_logins_quarter": {
                    "history_from": dict(sorted(self._history_from.items())),
                    "counts": {account: dict(sorted(q.items())) for account, q in sorted(self._quarters.items())},
                },
                "seen_event_ids": dict(self._seen),
                "checkpoints": dict(sorted(self._checkpoints.items())),
                "assume_root_keys": self.assume_root_keys.to_state(),
                "pending": [
                    {"verdict": p.verdict.to_json(), "source": p.source, "due": p.due}
                    for p in sorted(self._pending.values(), key=lambda p: p.due)
                ],
            }

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        dedup_retention: timedelta = DEFAULT_DEDUP_RETENTION,
        max_event_ids: int = DEFAULT_MAX_EVENT_IDS,
        where: str = "state",
    ) -> EventStore:
        """Rebuild a store from `to_state()` output; raises StateFileError naming `where`."""
        if not isinstance(state, Mapping):
            raise StateFileError(f"{where}: not a JSON object")
        version = state.get("version")
        if version in _MIGRATABLE_VERSIONS and not isinstance(version, bool):
            state = _migrate(state, where)
        elif version != STATE_VERSION or isinstance(version, bool):
            readable = ", ".join(str(v) for v in (*_MIGRATABLE_VERSIONS, STATE_VERSION))
            raise StateFileError(f"{where}: unsupported version {version!r} (this exporter reads versions {readable})")
        try:
            counting_from = datetime.fromisoformat(state["counting_from"])
            store = cls(counting_from, backfill_grace=timedelta(0), dedup_retention=dedup_retention, max_event_ids=max_event_ids)
            store._load(state)
        except StateFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise StateFileError(f"{where}: invalid content ({problem})") from None
        return store

    def _load(self, state: Mapping[str, Any]) -> None:
        high_water = state["high_water"]
        self._high_water = -math.inf if high_water is None else float(high_water)
        self.register_accounts(_strings(state["accounts"], "accounts"))
        counters = state["counters"]
        for name, target, arity in (
            ("console_logins", self._console_logins, 4),
            ("signin_events", self._signin_events, 3),
            ("api_calls", self._api_calls, 4),
            ("api_calls_by_event_source", self._api_by_source, 2),
            ("assumed_root_calls", self._assumed_root, 2),
            ("assume_root_calls", self._assume_root, 3),
            ("recovery_signals", self._signals, 3),
            ("events_rejected", self._rejected, 2),
        ):
            # Rows at 0 are the zero series that files before issue 16 kept for every account.
            target.update((key, value) for key, value in _parse_rows(counters[name], name, arity).items() if value)
        self._duplicates.update({k[0]: v for k, v in _parse_rows(counters["events_duplicate"], "events_duplicate", 1).items()})
        for source, h in state["event_delay"].items():
            if list(h["bounds"]) != list(DELAY_BUCKETS):
                continue  # buckets changed between versions: start this histogram afresh
            buckets = [_number(b, "event_delay") for b in h["buckets"]]
            if len(buckets) != len(DELAY_BUCKETS) + 1:
                raise ValueError(f"event_delay.{source} has {len(buckets)} buckets")
            self._delay[str(source)] = _Histogram(buckets, _number(h["sum"], "event_delay"), _number(h["count"], "event_delay"))
        for account, e in state["last_event"].items():
            event = _LastEvent(float(e["time"]), *(str(e[k]) for k in ("event_name", "event_source", "source_ip", "mfa", "outcome")))
            self._last_event[str(account)] = event
            self._last_activity[str(account)] = event.time
        for account, items in state["console_logins_90d"].items():
            self._logins[str(account)] = sorted((float(ts), str(eid)) for ts, eid in items)
        self._seen = {str(k): float(v) for k, v in state["seen_event_ids"].items()}
        self._checkpoints = {str(k): str(v) for k, v in state["checkpoints"].items()}
        self._load_quarters(state.get("console_logins_quarter"))
        self.assume_root_keys = AssumeRootKeys.from_state(state["assume_root_keys"])
        for item in state["pending"]:
            verdict = Verdict.from_json(item["verdict"])
            _require_source(item["source"])
            self._pending[verdict.event_id] = _Pending(verdict, item["source"], _number(item["due"], "pending"))

    def _load_quarters(self, quarterly: Any) -> None:
        """The optional `console_logins_quarter` key (added without a version bump). A file
        without it is rebuilt from the 90-day login list, whose records are taken as complete
        from 90 days before the later of `counting_from` and the newest eventTime seen (the
        list keeps 90 days; a fresh store read up to 90 days of history before it counted)."""
        if quarterly is None:
            for account, logins in self._logins.items():
                quarters = self._quarters.setdefault(account, {})
                for ts, _ in logins:
                    quarter = _quarter_name(datetime.fromtimestamp(ts, UTC))
                    quarters[quarter] = quarters.get(quarter, 0.0) + 1
            newest = max(self.counting_from.timestamp(), self._high_water)
            since = newest - LOGIN_WINDOW.total_seconds()
            self._history_from = dict.fromkeys(self._accounts | set(self._logins), since)
            return
        if not isinstance(quarterly, Mapping):
            raise ValueError("console_logins_quarter is not an object of history_from and counts")
        history_from = quarterly["history_from"]
        counts = quarterly["counts"]
        if not isinstance(history_from, Mapping) or not isinstance(counts, Mapping):
            raise ValueError("console_logins_quarter is not an object of history_from and counts")
        self._history_from.update({str(a): _timestamp(ts, "console_logins_quarter.history_from") for a, ts in history_from.items()})
        for account, quarters in counts.items():
            if not isinstance(quarters, Mapping) or not all(isinstance(q, str) and _QUARTER.match(q) for q in quarters):
                raise ValueError(f"console_logins_quarter.counts.{account} is not an object of quarters like 2026-Q1")
            kept = sorted(quarters)[-QUARTERS_KEPT:]
            self._quarters[str(account)] = {q: _number(quarters[q], "console_logins_quarter.counts") for q in kept}

    def save(self, path: str | Path) -> None:
        """Write the state atomically: a temp file in the same directory, fsync, rename."""
        path = Path(path)
        data = json.dumps(self.to_state(), separators=(",", ":")).encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # The rename itself must reach the disk, or a crash can bring the old file back.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        dedup_retention: timedelta = DEFAULT_DEDUP_RETENTION,
        max_event_ids: int = DEFAULT_MAX_EVENT_IDS,
    ) -> EventStore:
        """Read a state file; raises StateFileError naming the path on any problem."""
        where = f"state file {str(path)!r}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            state = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateFileError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}); fix or delete it") from None
        return cls.from_state(state, dedup_retention=dedup_retention, max_event_ids=max_event_ids, where=where)

    @classmethod
    def open(
        cls,
        path: str | Path | None,
        started_at: datetime,
        *,
        backfill_grace: timedelta = DEFAULT_BACKFILL_GRACE,
        dedup_retention: timedelta = DEFAULT_DEDUP_RETENTION,
        max_event_ids: int = DEFAULT_MAX_EVENT_IDS,
    ) -> EventStore:
        """The stored state when `path` exists (a bad file raises StateFileError, never a
        silent fresh start), else a fresh store for an exporter started at `started_at`."""
        if path is not None and Path(path).exists():
            return cls.load(path, dedup_retention=dedup_retention, max_event_ids=max_event_ids)
        return cls(started_at, backfill_grace=backfill_grace, dedup_retention=dedup_retention, max_event_ids=max_event_ids)


def _migrate(state: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An older state as the current version (see STATE_VERSION)."""
    counters = state.get("counters")
    if not isinstance(counters, Mapping) or not isinstance(counters.get("console_logins"), list):
        raise StateFileError(f"{where}: invalid content (missing counters.console_logins)")
    if state.get("version") == 1:
        # Every console_logins row (account, outcome, mfa, value) gains approved="false"
        # before its value: version 1 did not record whether a login was inside a
        # break-glass window, and "false" is the value that keeps its alerts paging.
        migrated = []
        for row in counters["console_logins"]:
            if not isinstance(row, list) or len(row) != 4:
                raise StateFileError(f"{where}: invalid content (counters.console_logins has a bad row {row!r:.80})")
            migrated.append([*row[:3], "false", row[3]])
        counters = {**counters, "console_logins": migrated}
    # Before version 3 no AssumeRoot key was learned, no record held, no signal counted.
    counters = {**counters, "recovery_signals": counters.get("recovery_signals", [])}
    return {
        **state,
        "version": STATE_VERSION,
        "counters": counters,
        "assume_root_keys": state.get("assume_root_keys", {}),
        "pending": state.get("pending", []),
    }


def _shared(v: Verdict) -> str:
    # One namespace with eventIDs: a sharedEventID is a GUID like them, hence the prefix.
    return "shared:" + v.shared_event_id


QUARTER_LABELS = ("current", "previous")


def _quarter_name(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def _quarter_start(now: datetime, quarter: str) -> datetime:
    """The first second (UTC) of the `current` or `previous` calendar quarter of `now`."""
    _require_aware(now, "now")
    now = now.astimezone(UTC)
    start = datetime(now.year, 3 * ((now.month - 1) // 3) + 1, 1, tzinfo=UTC)
    if quarter == "current":
        return start
    if quarter == "previous":
        before = start - timedelta(days=1)
        return datetime(before.year, 3 * ((before.month - 1) // 3) + 1, 1, tzinfo=UTC)
    raise ValueError(f"quarter must be one of {', '.join(QUARTER_LABELS)}, got {quarter!r}")


def _timestamp(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} holds {value!r:.40}, not a timestamp")
    return float(value)


def _inc(counter: _Counter, key: tuple[str, ...], by: float = 1.0) -> None:
    counter[key] = counter.get(key, 0.0) + by


def _counter(name: str, doc: str, labels: list[str], values: Mapping[tuple[str, ...], float]) -> Family:
    family = counter(name, doc, labels=labels)
    family.rows = sorted(values.items())
    return family


def _rows(counter: Mapping[tuple[str, ...], float]) -> list[list[Any]]:
    return [[*key, value] for key, value in sorted(counter.items())]


# Values from records go into labels only in a known shape (issue 16): a record can carry
# anything, and a label value is a series. Anything else reads `other`.
_EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,127}")
_EVENT_SOURCE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}\.amazonaws\.com")


def _label(value: str, shape: re.Pattern[str]) -> str:
    return value if shape.fullmatch(value) else "other"


def _source_ip(value: str) -> str:
    """An IP address, an AWS service's name (a call made by a service) or `AWS Internal`."""
    if value == "AWS Internal" or _EVENT_SOURCE.fullmatch(value):
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return "other"


def _parse_rows(rows: Any, name: str, arity: int) -> _Counter:
    if not isinstance(rows, list):
        raise ValueError(f"counters.{name} is not a list")
    parsed: _Counter = {}
    for row in rows:
        if not isinstance(row, list) or len(row) != arity + 1 or not all(isinstance(x, str) for x in row[:arity]):
            raise ValueError(f"counters.{name} has a bad row {row!r:.80}")
        parsed[tuple(row[:arity])] = _number(row[arity], f"counters.{name}")
    return parsed


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} holds {value!r:.40}, not a count")
    return float(value)


def _strings(values: Any, name: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} is not a list of strings")
    return values


def _require_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
