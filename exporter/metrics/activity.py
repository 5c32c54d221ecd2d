"""The activity families of the event store: names, HELP, label shapes, one /metrics section each.

`EventStore` (exporter.activity.store) keeps plain counts; this module turns them into
families. The counters are declared once in `exporter.activity.counters.COUNTERS`; the other
families are written out below. A root login re-renders the login families, not every
account's API-call counters.

Sample exposition (`render([family(store, name) for name in FAMILIES])`)::

    # HELP aws_root_console_logins_total Root ConsoleLogin records, by outcome, MFA use, approval (break-glass window) and the factor used (mfa_kind).
    # TYPE aws_root_console_logins_total counter
    aws_root_console_logins_total{account_id="111122223333",approved="false",mfa="false",mfa_kind="none",outcome="success"} 1.0
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

import ipaddress
import math
import re
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from exporter.activity.counters import COUNTERS, DELAY_BUCKETS, CounterSpec
from exporter.activity.store import FAMILIES, QUARTER_LABELS, TIME_DEPENDENT_FAMILIES, EventStore
from exporter.engine.state import Section
from exporter.metrics.textformat import Family, counter, gauge

__all__ = ["FAMILIES", "activity_sections", "family"]

_COUNTERS: dict[str, CounterSpec] = {c.key: c for c in COUNTERS}


@dataclass(frozen=True, slots=True)
class CounterMetric:
    metric: str
    help: str
    # The labels /metrics shows when fewer than the counter's: the others are summed away.
    shown: tuple[str, ...] | None = None


# How each counter of `exporter.activity.counters.COUNTERS` is exposed, by its key.
COUNTER_METRICS: dict[str, CounterMetric] = {
    "console_logins": CounterMetric(
        "aws_root_console_logins_total",
        "Root ConsoleLogin records, by outcome, MFA use, approval (break-glass window) and the factor used (mfa_kind).",
    ),
    "signin_events": CounterMetric(
        "aws_root_signin_events_total",
        "Other root sign-in records (password recovery, password change, MFA check...).",
    ),
    "api_calls": CounterMetric(
        "aws_root_api_calls_total",
        "Root API calls by category, outcome and approval (break-glass window).",
    ),
    # Kept per account (the state file), shown per organization: hundreds of services
    # times every account is no per-account series (issue 16).
    "api_calls_by_event_source": CounterMetric(
        "aws_root_api_calls_by_event_source_total",
        "Root API calls in the organization by the AWS service that recorded them.",
        shown=("event_source",),
    ),
    "assumed_root_calls": CounterMetric(
        "aws_root_assumed_root_calls_total",
        "API calls made inside an sts:AssumeRoot privileged session in the account.",
    ),
    "assume_root_calls": CounterMetric(
        "aws_root_assume_root_calls_total",
        "sts:AssumeRoot calls, by target account and task policy.",
    ),
    "recovery_signals": CounterMetric(
        "aws_root_recovery_signals_total",
        "Changes that make a root usable again (recovery email, centralized root access disabled, root password created).",
    ),
    "events_duplicate": CounterMetric(
        "aws_root_exporter_events_duplicate_total",
        "Records dropped because their eventID was already counted.",
    ),
    "events_rejected": CounterMetric(
        "aws_root_exporter_events_rejected_total",
        "Records or messages that could not be processed, by reason.",
    ),
}
if set(COUNTER_METRICS) != {c.key for c in COUNTERS}:
    raise ImportError("COUNTER_METRICS must name each counter of exporter.activity.counters.COUNTERS once")

# Values from records go into labels only in a known shape (issue 16): a record can carry
# anything, and a label value is a series. Anything else reads `other`.
_EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,127}")
_EVENT_SOURCE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}\.amazonaws\.com")


def family(store: EventStore, name: str, now: datetime | None = None) -> Any:
    """One family of FAMILIES, fresh."""
    if name in _COUNTERS:
        return _counter(_COUNTERS[name], store.counter(name))
    now = now or datetime.now(UTC)
    if name == "last_activity":
        last = gauge("aws_root_last_activity_timestamp_seconds",
                     "eventTime of the latest root record seen for the account.", labels=["account_id"])
        last.rows = [((account,), e.time) for account, e in sorted(store.last_events().items())]
        return last
    if name == "last_event":
        info = gauge("aws_root_last_event_info",
                     "Always 1: the latest root record of the account (its time is aws_root_last_activity_timestamp_seconds).",
                     labels=["account_id", "event_name", "event_source", "source_ip", "mfa", "outcome"])
        for account, e in sorted(store.last_events().items()):
            info.add_metric([account, _label(e.event_name, _EVENT_NAME), _label(e.event_source, _EVENT_SOURCE),
                             _source_ip(e.source_ip), e.mfa, e.outcome], 1.0)
        return info
    if name == "console_logins_90d":
        logins = gauge(
            "aws_root_console_logins_90d",
            "Exact count of successful root console logins in the trailing 90 days (a sliding window, not a calendar quarter), from CloudTrail history.",
            labels=["account_id"],
        )
        for account, count in sorted(store.logins_90d_per_account(now).items()):
            logins.add_metric([account], float(count))
        return logins
    if name == "console_logins_quarter":
        quarterly = gauge(
            "aws_root_console_logins_quarter",
            "Successful root console logins in the current and previous calendar quarter (UTC), "
            "from CloudTrail records kept in the state file.",
            labels=["account_id", "quarter"],
        )
        for account, counts in sorted(store.logins_per_quarter(now).items()):
            for quarter in QUARTER_LABELS:
                quarterly.add_metric([account, quarter], float(counts[quarter]))
        return quarterly
    if name == "console_logins_quarter_complete":
        complete = gauge(
            "aws_root_console_logins_quarter_complete",
            "1 when the quarterly login counts cover the whole quarter for every account "
            "(the records read reach back to its start).",
            labels=["quarter"],
        )
        for quarter in QUARTER_LABELS:
            complete.add_metric([quarter], float(store.quarter_complete(quarter, now)))
        return complete
    if name == "event_delay":
        delay = HistogramMetricFamily("aws_root_exporter_event_delay_seconds",
                                      "Delay between a root record's eventTime and its processing by the exporter.",
                                      labels=["source"])
        for source, hist in sorted(store.delay_histograms().items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*DELAY_BUCKETS, math.inf), hist.buckets, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            delay.add_metric([source], buckets, hist.total)
        return delay
    raise KeyError(f"unknown activity family {name!r}")


def _counter(spec: CounterSpec, values: Mapping[tuple[str, ...], float]) -> Family:
    exposed = COUNTER_METRICS[spec.key]
    if exposed.shown is not None:
        # Only api_calls_by_event_source sums labels away; its event_source is a record's.
        keep = [spec.labels.index(label) for label in exposed.shown]
        shown: dict[tuple[str, ...], float] = {}
        for key, count in values.items():
            row = tuple(_label(key[i], _EVENT_SOURCE) if spec.labels[i] == "event_source" else key[i] for i in keep)
            shown[row] = shown.get(row, 0.0) + count
        values = shown
    family = counter(exposed.metric, exposed.help, labels=exposed.shown or spec.labels)
    family.rows = sorted(values.items())
    return family


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


def _family_key(store: EventStore, name: str) -> Callable[[], Hashable]:
    if name in TIME_DEPENDENT_FAMILIES:
        # The trailing 90-day count and the quarterly counts move with time alone.
        return lambda: (store.family_version(name), int(time.time() // 60))
    return partial(store.family_version, name)


def _one_family(store: EventStore, name: str) -> list[Any]:
    return [family(store, name)]


def activity_sections(store: EventStore) -> list[Section]:
    return [Section(f"activity:{name}", _family_key(store, name), partial(_one_family, store, name)) for name in FAMILIES]
