"""In-memory store of root activity: deduplication, counters, 90-day logins, quarters, held records.

`EventStore` takes `Verdict`s from `classify()` (any source: LookupEvents polling,
EventBridge -> SQS, the S3 organization trail) and keeps everything the activity metrics
of README.md (Metrics) need. It does no I/O except `save()`/`load()`, needs no event loop, and
is thread-safe (one lock), so a scrape thread may render its families while the pollers
ingest.

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

Monitoring tamper records (`exporter.activity.tamper.TamperVerdict`, any principal, see
README "Monitoring tamper records") -> `aws_root_monitoring_tamper_events_total` by
(account_id, event_name, outcome), created by the first one (`ingest_tamper`). They are
deduplicated by eventID like root records, in a namespace of their own (`tamper:<eventID>`):
a Root record that tampers counts once as root activity and once as tampering. One without
an eventTime counts as seen when it arrives (fail closed).

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

The state file is `exporter.activity.state_file`; the counters are declared once in
`exporter.activity.counters`; `exporter.metrics.activity` renders the families.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from exporter.activity import state_file
from exporter.activity.assume_root_keys import AssumeRootKeys, IssuedKey
from exporter.activity.classify import Verdict
from exporter.activity.tamper import TamperVerdict
from exporter.activity.counters import (
    COUNTERS,
    LOGIN_WINDOW,
    QUARTERS_KEPT,
    SOURCES,
    Histogram,
    LastEvent,
    Pending,
    Tally,
    quarter_name,
)

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

# Every family, in exposition order: the counters, then the rest.
FAMILIES: tuple[str, ...] = (*(c.key for c in COUNTERS), "last_activity", "last_event", "console_logins_90d",
                              "console_logins_quarter", "console_logins_quarter_complete", "event_delay")

# Rendered with the accounts' names (exporter.metrics.tamper), so not one of FAMILIES; its
# version moves like theirs.
TAMPER_FAMILY = "tamper_events"

# The families that hold a series for every known account: the login counts (0 is a
# statement, "no root login in the window"). The event counters are not among them: each
# series appears with its first event, and the alert rules count an appearance as an
# increase (alerts/promql.py, increase_by); zero series for every label combination
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
        self._counters: dict[str, Tally] = {c.key: {} for c in COUNTERS}
        self._counters["events_duplicate"].update({(source,): 0.0 for source in SOURCES})
        self.assume_root_keys = AssumeRootKeys()
        self._pending: dict[str, Pending] = {}
        self._delay: dict[str, Histogram] = {source: Histogram.empty() for source in SOURCES}
        self._last_event: dict[str, LastEvent] = {}
        self._logins: dict[str, list[tuple[float, str]]] = {}
        self._quarters: dict[str, dict[str, float]] = {}  # account -> "2026-Q1" -> successful logins
        self._history_from: dict[str, float] = {}  # account -> earliest eventTime its logins are known from
        self._seen: dict[str, float] = {}
        self._high_water = -math.inf
        self._since_prune = 0
        self._checkpoints: dict[str, str] = {}
        self._tamper: Tally = {}  # (account_id, event_name, outcome) -> count
        self._family_versions = dict.fromkeys((*FAMILIES, TAMPER_FAMILY), 0)

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
        `malformed_record` (not a CloudTrail record at all), `malformed_message` (an SQS
        body or object that holds no usable record), `fetch_failed` (an S3 object could not
        be read), `malformed_root_record` (classify raised MalformedRecord: a record that
        would be root activity but cannot be used)."""
        _require_source(source)
        if not _REASON.match(reason):
            raise ValueError(f"reason must be a short snake_case word, got {reason!r}")
        with self._lock:
            _inc(self._counters["events_rejected"], (source, reason))
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
                self._delay.setdefault(source, Histogram.empty()).observe(
                    max(0.0, (seen_at - verdict.event_time).total_seconds())
                )
            self._update_gauges(verdict, event_ts)
            if verdict.kind == "console_login" and verdict.outcome == "success" and not verdict.assumed_root:
                self._count_quarter(verdict.account_id, verdict.event_time, seen_at)
            return True

    def ingest_tamper(self, verdict: TamperVerdict, source: str, seen_at: datetime, *, count_duplicate: bool = True) -> bool:
        """Count one tamper verdict; False when its eventID was already counted as tampering.
        `count_duplicate` False: the caller already counted this record's duplicate (a Root
        record that also tampers), so one record shows as one duplicate."""
        _require_source(source)
        _require_aware(seen_at, "seen_at")
        key = "tamper:" + verdict.event_id
        when = verdict.event_time or seen_at
        with self._lock:
            if key in self._seen:
                if count_duplicate:
                    self._duplicate(source)
                return False
            self._remember(key, when.timestamp(), seen_at.timestamp())
            if when >= self.counting_from:
                _inc(self._tamper, (verdict.account_id, verdict.event_name, verdict.outcome))
                self._touch(TAMPER_FAMILY)
            return True

    def tamper_counts(self) -> Tally:
        """A copy of the tamper counter: (account_id, event_name, outcome) -> count."""
        with self._lock:
            return dict(self._tamper)

    def _known(self, v: Verdict, event_ts: float) -> bool:
        return (
            v.event_id in self._seen
            or (bool(v.shared_event_id) and _shared(v) in self._seen)
            or self._login_known(v, event_ts)
        )

    def _duplicate(self, source: str) -> None:
        _inc(self._counters["events_duplicate"], (source,))
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
            self._pending[verdict.event_id] = Pending(verdict, source, (seen_at + wait).timestamp())
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
            _inc(self._counters["recovery_signals"], (v.account_id, v.recovery_signal, v.outcome))
            moved = (*moved, "recovery_signals")
        return moved

    def _count_kind(self, v: Verdict) -> tuple[str, ...]:
        if v.kind == "recovery_signal":
            return ()
        if v.kind == "assume_root_call":
            _inc(self._counters["assume_root_calls"], (v.account_id, v.task_policy or "other", v.outcome))
            return ("assume_root_calls",)
        if v.assumed_root:
            _inc(self._counters["assumed_root_calls"], (v.account_id, v.outcome))
            return ("assumed_root_calls",)
        if v.kind == "console_login":
            _inc(self._counters["console_logins"], (v.account_id, v.outcome, v.mfa, _BOOL[v.approved], v.mfa_kind or "unknown"))
            return ("console_logins",)
        if v.kind == "signin_other":
            _inc(self._counters["signin_events"], (v.account_id, v.signin_event or "other", v.outcome))
            return ("signin_events",)
        _inc(self._counters["api_calls"], (v.account_id, v.category or "administrative", v.outcome, _BOOL[v.approved]))
        _inc(self._counters["api_calls_by_event_source"], (v.account_id, v.event_source))
        return ("api_calls", "api_calls_by_event_source")

    def _update_gauges(self, v: Verdict, event_ts: float) -> None:
        if v.kind in ("assume_root_call", "recovery_signal") or v.assumed_root:
            return
        last = self._last_event.get(v.account_id)
        if last is None or event_ts > last.time:
            self._last_event[v.account_id] = LastEvent(event_ts, v.event_name, v.event_source, v.source_ip, v.mfa, v.outcome)
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
        quarter = quarter_name(event_time)
        if quarter > quarter_name(_quarter_start(seen_at, "current") + timedelta(days=93)):
            return
        quarters = self._quarters.setdefault(account_id, {})
        quarters[quarter] = quarters.get(quarter, 0.0) + 1
        oldest_shown = quarter_name(_quarter_start(seen_at, "previous"))
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
            return int(self._quarters.get(account_id, {}).get(quarter_name(start), 0))

    def quarter_complete(self, quarter: str, now: datetime) -> bool:
        """True when every known account's login history reaches back to the quarter's start
        (never before any account is known: no evidence is not a complete count)."""
        start = _quarter_start(now, quarter).timestamp()
        with self._lock:
            return bool(self._accounts) and all(self._history_from.get(a, math.inf) <= start for a in self._accounts)

    def seen_event_ids(self) -> int:
        with self._lock:
            return len(self._seen)

    def counter(self, key: str) -> Tally:
        """A copy of counter `key` (a `CounterSpec.key` of COUNTERS): label values -> count."""
        with self._lock:
            return dict(self._counters[key])

    def last_events(self) -> dict[str, LastEvent]:
        """Each account's latest root record, but for AssumeRoot sessions and recovery signals."""
        with self._lock:
            return dict(self._last_event)

    def logins_90d_per_account(self, now: datetime) -> dict[str, int]:
        """`logins_90d` of every known account and of every account with a login kept."""
        with self._lock:
            return {account: self.logins_90d(account, now) for account in self._accounts | set(self._logins)}

    def logins_per_quarter(self, now: datetime) -> dict[str, dict[str, int]]:
        """`logins_in_quarter` of each QUARTER_LABELS, for every known account and every
        account with quarterly counts."""
        with self._lock:
            return {
                account: {quarter: self.logins_in_quarter(account, quarter, now) for quarter in QUARTER_LABELS}
                for account in self._accounts | set(self._quarters)
            }

    def delay_histograms(self) -> dict[str, Histogram]:
        """A copy of the delay histogram of each source."""
        with self._lock:
            return {source: Histogram(list(h.buckets), h.total, h.count) for source, h in self._delay.items()}

    def family_version(self, name: str) -> int:
        """Moves whenever family `name` (one of FAMILIES, or TAMPER_FAMILY) may have changed, but for the passing of time."""
        return self._family_versions[name]

    # --- state file (exporter.activity.state_file) -------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot (see `from_state`)."""
        with self._lock:
            return state_file.to_state(self)

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
        return state_file.from_state(state, cls._restoring(dedup_retention, max_event_ids), where)

    def save(self, path: str | Path) -> None:
        """Write the state file atomically."""
        state_file.save(self.to_state(), path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        dedup_retention: timedelta = DEFAULT_DEDUP_RETENTION,
        max_event_ids: int = DEFAULT_MAX_EVENT_IDS,
    ) -> EventStore:
        """Read a state file; raises StateFileError naming the path on any problem."""
        return state_file.load(path, cls._restoring(dedup_retention, max_event_ids))

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

    @classmethod
    def _restoring(cls, dedup_retention: timedelta, max_event_ids: int) -> Callable[[datetime], EventStore]:
        """A maker of the empty store a state file fills: it keeps the stored `counting_from`."""
        def new_store(counting_from: datetime) -> EventStore:
            return cls(counting_from, backfill_grace=timedelta(0), dedup_retention=dedup_retention, max_event_ids=max_event_ids)
        return new_store



def _shared(v: Verdict) -> str:
    # One namespace with eventIDs: a sharedEventID is a GUID like them, hence the prefix.
    return "shared:" + v.shared_event_id


QUARTER_LABELS = ("current", "previous")


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



def _inc(counter: Tally, key: tuple[str, ...]) -> None:
    counter[key] = counter.get(key, 0.0) + 1



def _require_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
