"""What the event store keeps, declared once for the store, its state file and /metrics.

`COUNTERS` is the one list of activity counters: `EventStore` counts into them by `key`,
`exporter.activity.state_file` writes and reads each as `counters.<key>` rows (label values
in `labels` order, then the value), and `exporter.metrics.activity` exposes each under the
metric name and HELP it keeps for that key (metric names are known only to `metrics`). The
small records here are shared by the same three.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from exporter.activity.classify import Verdict

SOURCES: tuple[str, ...] = ("lookup_events", "eventbridge_sqs", "s3_trail")
DELAY_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
LOGIN_WINDOW = timedelta(days=90)
# Quarters of login counts kept per account at most: the previous, current and next ones
# of the clock (a login seconds after a quarter's end may be read seconds before it), and
# one more for a state file read after a quarter's end.
QUARTERS_KEPT = 4
QUARTER = re.compile(r"^\d{4}-Q[1-4]$")

Tally = dict[tuple[str, ...], float]  # label values -> count


@dataclass(frozen=True, slots=True)
class CounterSpec:
    key: str  # family name (FAMILIES) and state file key
    labels: tuple[str, ...]  # the label values the store keeps, in state file row order


# In exposition order. Their metric names and HELP are `exporter.metrics.activity.COUNTER_METRICS`.
COUNTERS: tuple[CounterSpec, ...] = (
    CounterSpec("console_logins", ("account_id", "outcome", "mfa", "approved", "mfa_kind")),
    CounterSpec("signin_events", ("account_id", "event_name", "outcome")),
    CounterSpec("api_calls", ("account_id", "category", "outcome", "approved")),
    CounterSpec("api_calls_by_event_source", ("account_id", "event_source")),
    CounterSpec("assumed_root_calls", ("account_id", "outcome")),
    CounterSpec("assume_root_calls", ("account_id", "task_policy", "outcome")),
    CounterSpec("recovery_signals", ("account_id", "signal", "outcome")),
    CounterSpec("events_duplicate", ("source",)),
    CounterSpec("events_rejected", ("source", "reason")),
)


@dataclass(frozen=True, slots=True)
class LastEvent:
    time: float
    event_name: str
    event_source: str
    source_ip: str
    mfa: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Pending:
    verdict: Verdict
    source: str
    due: float


@dataclass(slots=True)
class Histogram:
    buckets: list[float]  # per bucket of DELAY_BUCKETS (not cumulative), the last one is +Inf
    total: float = 0.0
    count: float = 0.0

    @classmethod
    def empty(cls) -> Histogram:
        return cls([0.0] * (len(DELAY_BUCKETS) + 1))

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(DELAY_BUCKETS, value)] += 1
        self.total += value
        self.count += 1


def quarter_name(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"
