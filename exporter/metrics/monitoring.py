"""Proof of sight on /metrics: coverage per source and region, the blind paths, canary delays.

Two sections: the coverage families change when a path changes state (a canary came back,
a bound passed, an account came or went, a check found a problem), the delay histogram
with every canary observed. A healthy quiet member account has no series of its own here.

    # HELP aws_root_monitoring_accounts Collected accounts per configured activity source and monitored region, by whether a canary proves the path (proven), none is due yet (pending) or it is blind.
    # TYPE aws_root_monitoring_accounts gauge
    aws_root_monitoring_accounts{region="us-east-1",source="eventbridge_sqs",state="proven"} 41.0
    aws_root_monitoring_accounts{region="us-east-1",source="eventbridge_sqs",state="pending"} 0.0
    aws_root_monitoring_accounts{region="us-east-1",source="eventbridge_sqs",state="blind"} 1.0
    # HELP aws_root_monitoring_blind_since_timestamp_seconds Since when the exporter cannot prove it would see root activity of the account through the source in the region, and why; absent while the path is proven or pending.
    # TYPE aws_root_monitoring_blind_since_timestamp_seconds gauge
    aws_root_monitoring_blind_since_timestamp_seconds{account_id="210000000004",account_name="prod-data",reason="canary_missing",region="us-east-1",source="eventbridge_sqs"} 1.7651e+09
    # HELP aws_root_monitoring_canary_delay_seconds Time from a canary call (its CloudTrail eventTime) until the exporter took its record from the source: the measured time to detect.
    # TYPE aws_root_monitoring_canary_delay_seconds histogram
    aws_root_monitoring_canary_delay_seconds_bucket{le="5.0",source="eventbridge_sqs"} 0.0
    ...
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Iterable
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from exporter.config.settings import Settings
from exporter.engine.canary import canary_paths
from exporter.engine.state import ExporterState, Section
from exporter.engine.sweep import POSTURE
from exporter.metrics.textformat import Family, gauge
from exporter.monitoring.coverage import DELAY_BUCKETS, STATES, Coverage
from exporter.monitoring.problems import ALL, PathProblem

NO_ACCOUNTS_COLLECTED = "no_accounts_collected"


class MonitoringFamilies:
    def __init__(self, state: ExporterState, settings: Settings, coverage: Coverage | None) -> None:
        self.state = state
        self.settings = settings
        self.coverage = coverage
        # When the exporter was first found collecting no account at all (None: it collects some).
        self._none_collected_since: float | None = None

    def sections(self) -> list[Section]:
        sections = [Section("monitoring:coverage", self.coverage_key, self.coverage_families)]
        if self.coverage is not None:
            coverage = self.coverage
            sections.append(Section("monitoring:canary_delay", coverage.delay_key, self.delay_families))
        return sections

    def coverage_key(self) -> Hashable:
        coverage = self.coverage.key(time.time()) if self.coverage is not None else None
        # Each producer replaces its whole tuple: comparing them is cheap while problems are few.
        return coverage, self.state.snapshot.sweeps, tuple(self.state.monitoring_problems.items())

    def coverage_families(self) -> Iterable[Family]:
        now = time.time()
        snapshot = self.state.snapshot
        accounts = gauge(
            "aws_root_monitoring_accounts",
            "Collected accounts per configured activity source and monitored region, by whether a canary proves the path (proven), none is due yet (pending) or it is blind.",
            labels=["source", "region", "state"],
        )
        blind = gauge(
            "aws_root_monitoring_blind_since_timestamp_seconds",
            "Since when the exporter cannot prove it would see root activity of the account through the source in the region, and why; absent while the path is proven or pending.",
            labels=["account_id", "account_name", "source", "region", "reason"],
        )
        problems: list[PathProblem] = []
        if self.coverage is not None:
            paths = [(account.account_id, region) for account, region in canary_paths(snapshot, self.settings)]
            counts, problems = self.coverage.evaluate(paths, now)
            for source in self.coverage.sources:
                for region in sorted({region for _, region in paths}):
                    for found in STATES:
                        accounts.add_metric([source, region, found], counts.get((source, region, found), 0))
        for produced in self.state.monitoring_problems.values():
            problems.extend(produced)
        names = {account.account_id: account.name for account in snapshot.accounts}
        since: dict[tuple[str, str, str, str], float] = {}
        for problem in problems:
            for source in problem.sources:
                key = (problem.account_id, source, problem.region, problem.reason)
                since[key] = min(since.get(key, math.inf), problem.since)
        none_since = self._none_collected(now)
        if none_since is not None:
            since[("", ALL, "", NO_ACCOUNTS_COLLECTED)] = none_since
        for (account_id, source, region, reason), value in sorted(since.items()):
            blind.add_metric([account_id, names.get(account_id, ""), source, region, reason], value)
        return [accounts, blind]

    def _none_collected(self, now: float) -> float | None:
        """Since when no account could be collected (no credentials, discovery failing, an
        empty organization after the first sweep); None while some account is."""
        snapshot = self.state.snapshot
        collected = any(status.success for (_, collector), status in snapshot.status.items() if collector == POSTURE)
        if snapshot.sweeps == 0 or collected:
            self._none_collected_since = None
        elif self._none_collected_since is None:
            self._none_collected_since = snapshot.completed_at or now
        return self._none_collected_since

    def delay_families(self) -> list[Any]:
        assert self.coverage is not None
        delay = HistogramMetricFamily(
            "aws_root_monitoring_canary_delay_seconds",
            "Time from a canary call (its CloudTrail eventTime) until the exporter took its record from the source: the measured time to detect.",
            labels=["source"],
        )
        for source, hist in self.coverage.delays().items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*DELAY_BUCKETS, math.inf), hist.buckets, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            delay.add_metric([source], buckets, hist.total)
        return [delay]


def monitoring_sections(state: ExporterState, settings: Settings, coverage: Coverage | None) -> list[Section]:
    return MonitoringFamilies(state, settings, coverage).sections()
