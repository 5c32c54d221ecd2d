"""The event store's state file: its JSON format, versions, migration and atomic writes.

A restart keeps every counter, the deduplication memory, the 90-day logins, the quarterly
counts, the AssumeRoot keys and the held records (see `exporter.activity.store`). The
functions here read and write `EventStore`'s fields: they are the store's persistence, kept
apart from its counting. The store calls them (`EventStore.save`, `load`, `open`,
`to_state`, `from_state`); this module never imports the store.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.activity.assume_root_keys import AssumeRootKeys
from exporter.activity.classify import Verdict
from exporter.activity.counters import (
    COUNTERS,
    DELAY_BUCKETS,
    LOGIN_WINDOW,
    QUARTER,
    QUARTERS_KEPT,
    SOURCES,
    Histogram,
    LastEvent,
    Pending,
    Tally,
    quarter_name,
)

# Version 2: `console_logins` rows carry `approved` (account, outcome, mfa, approved).
# Version 3: `assume_root_keys`, `pending` and the `recovery_signals` counter.
# Version 4: `console_logins` rows end with `mfa_kind` (account, outcome, mfa, approved, mfa_kind).
# Version 5: `tamper_events` rows (account_id, event_name, outcome, count): monitoring tamper records.
# Older files are migrated on load (version 1 logins were counted without a window check:
# approved="false"; before version 3 no key or held record existed; before version 4 the
# factor was not kept; before version 5 no tamper record was counted), so an upgrade keeps
# every counter.
STATE_VERSION = 5
_MIGRATABLE_VERSIONS = (1, 2, 3, 4)
_TAMPER_LABELS = 3  # account_id, event_name, outcome


class StateFileError(Exception):
    """The state file cannot be used; the message names the file and the problem."""


def to_state(store: Any) -> dict[str, Any]:
    """A JSON-serialisable snapshot of an `EventStore`; the caller holds its lock."""
    return {
        "version": STATE_VERSION,
        "counting_from": store.counting_from.isoformat(),
        "high_water": None if store._high_water == -math.inf else store._high_water,
        "accounts": sorted(store._accounts),
        "counters": {c.key: _rows(store._counters[c.key]) for c in COUNTERS},
        "event_delay": {
            source: {"bounds": list(DELAY_BUCKETS), "buckets": list(h.buckets), "sum": h.total, "count": h.count}
            for source, h in sorted(store._delay.items())
        },
        "last_event": {
            account: {"time": e.time, "event_name": e.event_name, "event_source": e.event_source,
                      "source_ip": e.source_ip, "mfa": e.mfa, "outcome": e.outcome}
            for account, e in sorted(store._last_event.items())
        },
        "console_logins_90d": {account: [[ts, eid] for ts, eid in items] for account, items in sorted(store._logins.items())},
        "console_logins_quarter": {
            "history_from": dict(sorted(store._history_from.items())),
            "counts": {account: dict(sorted(q.items())) for account, q in sorted(store._quarters.items())},
        },
        "seen_event_ids": dict(store._seen),
        "checkpoints": dict(sorted(store._checkpoints.items())),
        "tamper_events": _rows(store._tamper),
        "assume_root_keys": store.assume_root_keys.to_state(),
        "pending": [
            {"verdict": p.verdict.to_json(), "source": p.source, "due": p.due}
            for p in sorted(store._pending.values(), key=lambda p: p.due)
        ],
    }


def from_state(state: Any, new_store: Callable[[datetime], Any], where: str = "state") -> Any:
    """The store `new_store(counting_from)` filled from `to_state()` output; raises
    StateFileError naming `where`."""
    if not isinstance(state, Mapping):
        raise StateFileError(f"{where}: not a JSON object")
    version = state.get("version")
    if version in _MIGRATABLE_VERSIONS and not isinstance(version, bool):
        state = _migrate(state, where)
    elif version != STATE_VERSION or isinstance(version, bool):
        readable = ", ".join(str(v) for v in (*_MIGRATABLE_VERSIONS, STATE_VERSION))
        raise StateFileError(f"{where}: unsupported version {version!r} (this exporter reads versions {readable})")
    try:
        store = new_store(datetime.fromisoformat(state["counting_from"]))
        _fill(store, state)
    except StateFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise StateFileError(f"{where}: invalid content ({problem})") from None
    return store


def _fill(store: Any, state: Mapping[str, Any]) -> None:
    high_water = state["high_water"]
    store._high_water = -math.inf if high_water is None else float(high_water)
    store.register_accounts(_strings(state["accounts"], "accounts"))
    counters = state["counters"]
    for c in COUNTERS:
        # Rows at 0 are the zero series that files before issue 16 kept for every account.
        rows = _parse_rows(counters[c.key], f"counters.{c.key}", len(c.labels))
        store._counters[c.key].update((key, value) for key, value in rows.items() if value)
    for source, h in state["event_delay"].items():
        if list(h["bounds"]) != list(DELAY_BUCKETS):
            continue  # buckets changed between versions: start this histogram afresh
        buckets = [_number(b, "event_delay") for b in h["buckets"]]
        if len(buckets) != len(DELAY_BUCKETS) + 1:
            raise ValueError(f"event_delay.{source} has {len(buckets)} buckets")
        store._delay[str(source)] = Histogram(buckets, _number(h["sum"], "event_delay"), _number(h["count"], "event_delay"))
    for account, e in state["last_event"].items():
        store._last_event[str(account)] = LastEvent(
            float(e["time"]), *(str(e[k]) for k in ("event_name", "event_source", "source_ip", "mfa", "outcome"))
        )
    for account, items in state["console_logins_90d"].items():
        store._logins[str(account)] = sorted((float(ts), str(eid)) for ts, eid in items)
    store._seen = {str(k): float(v) for k, v in state["seen_event_ids"].items()}
    store._checkpoints = {str(k): str(v) for k, v in state["checkpoints"].items()}
    _fill_quarters(store, state.get("console_logins_quarter"))
    store._tamper.update(_parse_rows(state["tamper_events"], "tamper_events", _TAMPER_LABELS))
    store.assume_root_keys = AssumeRootKeys.from_state(state["assume_root_keys"])
    for item in state["pending"]:
        verdict = Verdict.from_json(item["verdict"])
        if item["source"] not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {item['source']!r}")
        store._pending[verdict.event_id] = Pending(verdict, item["source"], _number(item["due"], "pending"))


def _fill_quarters(store: Any, quarterly: Any) -> None:
    """The optional `console_logins_quarter` key (added without a version bump). A file
    without it is rebuilt from the 90-day login list, whose records are taken as complete
    from 90 days before the later of `counting_from` and the newest eventTime seen (the
    list keeps 90 days; a fresh store read up to 90 days of history before it counted)."""
    if quarterly is None:
        for account, logins in store._logins.items():
            quarters = store._quarters.setdefault(account, {})
            for ts, _ in logins:
                quarter = quarter_name(datetime.fromtimestamp(ts, UTC))
                quarters[quarter] = quarters.get(quarter, 0.0) + 1
        newest = max(store.counting_from.timestamp(), store._high_water)
        since = newest - LOGIN_WINDOW.total_seconds()
        store._history_from = dict.fromkeys(store._accounts | set(store._logins), since)
        return
    if not isinstance(quarterly, Mapping):
        raise ValueError("console_logins_quarter is not an object of history_from and counts")
    history_from = quarterly["history_from"]
    counts = quarterly["counts"]
    if not isinstance(history_from, Mapping) or not isinstance(counts, Mapping):
        raise ValueError("console_logins_quarter is not an object of history_from and counts")
    store._history_from.update({str(a): _timestamp(ts, "console_logins_quarter.history_from") for a, ts in history_from.items()})
    for account, quarters in counts.items():
        if not isinstance(quarters, Mapping) or not all(isinstance(q, str) and QUARTER.match(q) for q in quarters):
            raise ValueError(f"console_logins_quarter.counts.{account} is not an object of quarters like 2026-Q1")
        kept = sorted(quarters)[-QUARTERS_KEPT:]
        store._quarters[str(account)] = {q: _number(quarters[q], "console_logins_quarter.counts") for q in kept}


def save(state: Mapping[str, Any], path: str | Path) -> None:
    """Write `state` atomically: a temp file in the same directory, fsync, rename."""
    path = Path(path)
    data = json.dumps(state, separators=(",", ":")).encode()
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


def load(path: str | Path, new_store: Callable[[datetime], Any]) -> Any:
    """Read a state file (see `from_state`); raises StateFileError naming the path on any problem."""
    where = f"state file {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}); fix or delete it") from None
    return from_state(state, new_store, where)


def _migrate(state: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An older state as the current version (see STATE_VERSION)."""
    counters = state.get("counters")
    if not isinstance(counters, Mapping) or not isinstance(counters.get("console_logins"), list):
        raise StateFileError(f"{where}: invalid content (missing counters.console_logins)")
    version = state.get("version")
    if version == 4:
        return {**state, "version": STATE_VERSION, "tamper_events": []}
    if version == 1:
        # Every console_logins row (account, outcome, mfa, value) gains approved="false"
        # before its value: version 1 did not record whether a login was inside a
        # break-glass window, and "false" is the value that keeps its alerts paging.
        migrated = []
        for row in counters["console_logins"]:
            if not isinstance(row, list) or len(row) != 4:
                raise StateFileError(f"{where}: invalid content (counters.console_logins has a bad row {row!r:.80})")
            migrated.append([*row[:3], "false", row[3]])
        counters = {**counters, "console_logins": migrated}
    # Every console_logins row gains mfa_kind before its value: "none" for a login without
    # MFA (that is all the classifier needs to say so), else "unknown" (the factor was not kept).
    with_kind = []
    for row in counters["console_logins"]:
        if not isinstance(row, list) or len(row) != 5:
            raise StateFileError(f"{where}: invalid content (counters.console_logins has a bad row {row!r:.80})")
        with_kind.append([*row[:4], "none" if row[2] == "false" else "unknown", row[4]])
    counters = {**counters, "console_logins": with_kind}
    # Before version 3 no AssumeRoot key was learned, no record held, no signal counted.
    counters = {**counters, "recovery_signals": counters.get("recovery_signals", [])}
    return {
        **state,
        "version": STATE_VERSION,
        "counters": counters,
        "assume_root_keys": state.get("assume_root_keys", {}),
        "pending": state.get("pending", []),
        "tamper_events": [],
    }


def _rows(tally: Tally) -> list[list[Any]]:
    return [[*key, value] for key, value in sorted(tally.items())]


def _parse_rows(rows: Any, name: str, arity: int) -> Tally:
    if not isinstance(rows, list):
        raise ValueError(f"{name} is not a list")
    parsed: Tally = {}
    for row in rows:
        if not isinstance(row, list) or len(row) != arity + 1 or not all(isinstance(x, str) for x in row[:arity]):
            raise ValueError(f"{name} has a bad row {row!r:.80}")
        parsed[tuple(row[:arity])] = _number(row[arity], name)
    return parsed


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} holds {value!r:.40}, not a count")
    return float(value)


def _timestamp(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} holds {value!r:.40}, not a timestamp")
    return float(value)


def _strings(values: Any, name: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} is not a list of strings")
    return values
