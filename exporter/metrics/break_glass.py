"""The configured break-glass windows as metrics, so an alert can name the approving ticket.

    aws_root_break_glass_window_active{account_id, ticket}                   1 while now is inside [start, end]
    aws_root_break_glass_window_start_timestamp_seconds{account_id, ticket}  start
    aws_root_break_glass_window_end_timestamp_seconds{account_id, ticket}    end

One series per configured window in each family (the setting bounds the cardinality).
Windows of the same account with the same ticket (an extended window, or several windows
without a ticket) are one series: the earliest start, the latest end, active while any of
them is. An empty ticket is an empty label value, i.e. a series without a `ticket` label.

The windows are static, but `active` moves with time: the section's key is the number of
window starts and ends already passed, so it is rendered again exactly when one is crossed.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterable, Sequence

from exporter.config.settings import BreakGlassWindow, Settings
from exporter.engine.state import Section
from exporter.metrics.textformat import Family, gauge

PREFIX = "aws_root_break_glass_window_"
LABELS = ["account_id", "ticket"]


def _merged(windows: Sequence[BreakGlassWindow]) -> dict[tuple[str, str], list[tuple[float, float]]]:
    by_key: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for w in windows:
        by_key.setdefault((w.account_id, w.ticket), []).append((w.start.timestamp(), w.end.timestamp()))
    return dict(sorted(by_key.items()))


def window_families(windows: Sequence[BreakGlassWindow], now: float) -> list[Family]:
    active = gauge(
        PREFIX + "active",
        "1 while now is inside the approved break-glass window (setting break_glass_windows), else 0; one series per window.",
        labels=LABELS,
    )
    start = gauge(PREFIX + "start_timestamp_seconds", "Start of the approved break-glass window.", labels=LABELS)
    end = gauge(PREFIX + "end_timestamp_seconds", "End of the approved break-glass window (inclusive).", labels=LABELS)
    for key, spans in _merged(windows).items():
        values = list(key)
        # Same test as the classifier's: start <= t <= end.
        active.add_metric(values, int(any(s <= now <= e for s, e in spans)))
        start.add_metric(values, min(s for s, _ in spans))
        end.add_metric(values, max(e for _, e in spans))
    return [active, start, end]


def window_key(windows: Sequence[BreakGlassWindow], clock: Callable[[], float] = time.time) -> Callable[[], Hashable]:
    """Moves when now passes a window's start (active from start) or end (inactive after end)."""
    starts = sorted(w.start.timestamp() for w in windows)
    ends = sorted(w.end.timestamp() for w in windows)

    def key() -> Hashable:
        now = clock()
        return bisect_right(starts, now), bisect_left(ends, now)

    return key


def window_section(windows: Sequence[BreakGlassWindow], clock: Callable[[], float] = time.time) -> Section:
    frozen = tuple(windows)

    def families() -> Iterable[Family]:
        return window_families(frozen, clock())

    moved = window_key(frozen, clock)
    # The windows themselves are part of the key: a reload that replaces this section with
    # other windows must be rendered even when the same number of boundaries has passed.
    return Section("break_glass_windows", lambda: (frozen, moved()), families)


def settings_window_section(settings: Settings, clock: Callable[[], float] = time.time) -> Section:
    """`window_section` of the windows `settings` holds now: a reload that assigns new
    windows to the running settings is rendered at the next scrape."""
    current: list[Section] = []

    def section() -> Section:
        windows = tuple(settings.break_glass_windows)
        if not current or current[0].key()[0] != windows:
            current[:] = [window_section(windows, clock)]
        return current[0]

    return Section("break_glass_windows", lambda: section().key(), lambda: section().families())
