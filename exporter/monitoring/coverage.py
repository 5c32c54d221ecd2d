"""Coverage: for every collected account, monitored region and configured source, whether
the exporter has proven that it would see a root record there now. Pure: the clock is passed
in, and nothing here calls AWS.

The canary loop (exporter.engine.canary) tells `Coverage` when it tried a canary in an
account and region and as whom; the activity sources tell it when a canary record came back
through them. A path (account, region, source) is then

- `proven`: a canary came back through the source with an eventTime within the last
  `bound + 2 x canary_interval_seconds` (the bound is the source's, `canary_bounds_seconds`;
  one lost canary is tolerated, LOST_CANARIES_TOLERATED);
- `pending`: none came back yet, and the first attempt is younger than `bound + 2 x interval`
  (just started, or the account was just added); or no canary was tried in the account and
  region yet, whatever older canary was read back;
- `blind`: otherwise, from the moment the last canary (or the first attempt) plus
  `bound + 2 x interval` passed: reason `canary_missing`. A canary that cannot fail by policy
  stops only when the exporter cannot reach the account (its role broke), and then nothing
  proves the path either: it goes blind after its bound, which is the point. On the
  EventBridge source, an identity that the forwarder pattern cannot match (not an
  assumed-role session named `role_session_name`) is blind at once, reason
  `canary_not_forwarded`, until a canary does come through.

README.md, Proof of sight, says what the states mean to an operator and why the bounds are
what they are.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.aws.partitions import global_region
from exporter.monitoring.canary import forwarded
from exporter.monitoring.problems import EVENTBRIDGE, LOOKUP, S3_TRAIL, SOURCES, PathProblem

PROVEN = "proven"
PENDING = "pending"
BLIND = "blind"
STATES = (PROVEN, PENDING, BLIND)
CANARY_MISSING = "canary_missing"
CANARY_NOT_FORWARDED = "canary_not_forwarded"
# aws_root_monitoring_canary_delay_seconds: from seconds (EventBridge) to an hour (a trail
# file far later than AWS's "about 5 minutes").
DELAY_BUCKETS: tuple[float, ...] = (5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)
# Canaries that may be lost in a row without the path counting as blind: EventBridge delivers
# CloudTrail events best effort, and one lost event must not page (the next canary comes one
# interval later). A path is blind once its source's bound has passed after the canary due
# after that one: bound + 2 x canary_interval_seconds after the last canary seen.
LOST_CANARIES_TOLERATED = 1


def monitored_regions(settings: Any, partition: str) -> list[str]:
    """The regions in which root activity must be seen for an account of `partition`."""
    return list(settings.monitored_regions or settings.lookup_events_regions or [global_region(partition)])


def configured_sources(settings: Any) -> tuple[str, ...]:
    """The activity sources whose settings are on, in SOURCES order."""
    on = {EVENTBRIDGE: bool(settings.eventbridge_queue_url), S3_TRAIL: bool(settings.s3_trail_queue_url), LOOKUP: settings.lookup_events_enabled}
    return tuple(source for source in SOURCES if on[source])


@dataclass(frozen=True, slots=True)
class PathState:
    state: str
    # When the path became blind (blind only).
    since: float | None = None
    reason: str | None = None


@dataclass(slots=True)
class DelayHistogram:
    """Counts per bucket of DELAY_BUCKETS (not cumulative; the last one is +Inf)."""

    buckets: list[int]
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(DELAY_BUCKETS, value)] += 1
        self.total += value


class Coverage:
    """What canaries were tried, as whom, and which came back through which source.

    Written by the asyncio loop, read by the HTTP threads (`key`, `evaluate`): a lock guards it.
    """

    def __init__(self, sources: Iterable[str], bounds: Mapping[str, float], interval: float, session_name: str) -> None:
        self.sources = tuple(sources)
        self.session_name = session_name
        self._bounds = dict(bounds)
        self._interval = interval
        self._lock = threading.Lock()
        # First canary attempt per (account, region): a path never seen is due from there.
        self._started: dict[tuple[str, str], float] = {}
        # Latest eventTime of a canary that came back, per (account, region, source).
        self._seen: dict[tuple[str, str, str], float] = {}
        # The identity each account's canaries are made as, and since when.
        self._identity: dict[str, tuple[str, float]] = {}
        self._arns: set[str] = set()
        self._delays = {source: DelayHistogram([0] * (len(DELAY_BUCKETS) + 1)) for source in self.sources}
        # Canary records already observed per source (an overlapping LookupEvents poll reads
        # each one again): event id -> eventTime, pruned as they age.
        self._observed: dict[tuple[str, str], float] = {}
        self._observed_pruned_at = 0
        # Moves when any path's state changes; the deadlines heap turns the passing of time
        # into such changes without looking at every path.
        self._version = 0
        self._deadlines: list[tuple[float, tuple[str, str, str]]] = []
        self._delay_version = 0

    # -- configuration (a reload may change the bounds and the interval) -------------------

    def configure(self, bounds: Mapping[str, float], interval: float) -> None:
        with self._lock:
            if dict(bounds) == self._bounds and interval == self._interval:
                return
            self._bounds, self._interval = dict(bounds), interval
            self._deadlines = []
            for account, region in self._started:
                for source in self.sources:
                    self._push((account, region, source))
            self._version += 1

    # -- what the canary loop and the activity sources report -------------------------------

    def attempted(self, account_id: str, region: str, now: float) -> None:
        """A canary is being tried in the account and region (whether or not it succeeds)."""
        with self._lock:
            if (account_id, region) in self._started:
                return
            self._started[(account_id, region)] = now
            for source in self.sources:
                self._push((account_id, region, source))
            self._version += 1

    def made(self, account_id: str, arn: str, now: float) -> None:
        """A canary was made in the account as `arn` (GetCallerIdentity's answer)."""
        with self._lock:
            known = self._identity.get(account_id)
            if known is None or known[0] != arn:
                self._identity[account_id] = (arn, now)
                self._arns = {arn for arn, _ in self._identity.values()}
                self._version += 1

    def known_arns(self) -> set[str]:
        """The identities canaries were made as. The set itself, not a copy (every record an
        activity source takes is checked against it): read it in the loop that writes it."""
        return self._arns

    def seen(self, account_id: str, region: str, source: str, event_id: str, event_time: float, arrival: float) -> bool:
        """A canary record came back through `source`; False when it was observed already
        (its delay is observed once per record and source)."""
        with self._lock:
            if source not in self._delays or (source, event_id) in self._observed:
                return False
            self._observed[(source, event_id)] = event_time
            self._prune_observed(arrival)
            self._delays[source].observe(max(arrival - event_time, 0.0))
            self._delay_version += 1
            path = (account_id, region, source)
            if event_time <= self._seen.get(path, float("-inf")):
                return True
            before = self._state(path, arrival)
            self._seen[path] = event_time
            self._push(path)
            if self._state(path, arrival) != before:
                self._version += 1
            return True

    def forget(self, account_ids: Iterable[str]) -> None:
        """Keep only these accounts (the published snapshot's): one that left is forgotten."""
        keep = set(account_ids)
        with self._lock:
            started = {k: v for k, v in self._started.items() if k[0] in keep}
            seen = {k: v for k, v in self._seen.items() if k[0] in keep}
            identity = {k: v for k, v in self._identity.items() if k in keep}
            if (len(started), len(seen), len(identity)) != (len(self._started), len(self._seen), len(self._identity)):
                self._started, self._seen, self._identity = started, seen, identity
                self._arns = {arn for arn, _ in identity.values()}
                self._version += 1

    # -- what /metrics reads ---------------------------------------------------------------

    def key(self, now: float) -> Hashable:
        """Moves when a path's state changes (by a report or by time passing): cheap, read
        on every scrape."""
        with self._lock:
            while self._deadlines and self._deadlines[0][0] <= now:
                deadline, path = heapq.heappop(self._deadlines)
                if self._deadline(path) == deadline:
                    self._version += 1
            return self._version

    def delay_key(self) -> Hashable:
        return self._delay_version

    def delays(self) -> dict[str, DelayHistogram]:
        with self._lock:
            return {source: DelayHistogram(list(h.buckets), h.total) for source, h in self._delays.items()}

    def state(self, account_id: str, region: str, source: str, now: float) -> PathState:
        with self._lock:
            return self._state((account_id, region, source), now)

    def evaluate(self, paths: Iterable[tuple[str, str]], now: float) -> tuple[dict[tuple[str, str, str], int], list[PathProblem]]:
        """For (account, region) pairs: accounts per (source, region, state), and a
        PathProblem per blind path."""
        counts: dict[tuple[str, str, str], int] = {}
        problems: list[PathProblem] = []
        with self._lock:
            for account_id, region in paths:
                for source in self.sources:
                    found = self._state((account_id, region, source), now)
                    counts[(source, region, found.state)] = counts.get((source, region, found.state), 0) + 1
                    if found.state == BLIND:
                        assert found.reason is not None and found.since is not None
                        problems.append(PathProblem(account_id, region, (source,), found.reason, found.since))
        return counts, problems

    def limit(self, source: str) -> float:
        """How long after its last canary (or its first attempt) a path of `source` stays
        proven (or pending)."""
        with self._lock:
            return self._limit(source)

    # -- inside the lock -------------------------------------------------------------------

    def _limit(self, source: str) -> float:
        return self._bounds[source] + (1 + LOST_CANARIES_TOLERATED) * self._interval

    def _deadline(self, path: tuple[str, str, str]) -> float | None:
        # From the later of the last canary seen and the first attempt: a canary read back
        # from before a restart, or from before the account left and came back, must not
        # make the path due before a new canary could come back.
        times = [t for t in (self._seen.get(path), self._started.get(path[:2])) if t is not None]
        return max(times) + self._limit(path[2]) if times else None

    def _push(self, path: tuple[str, str, str]) -> None:
        deadline = self._deadline(path)
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, path))

    def _state(self, path: tuple[str, str, str], now: float) -> PathState:
        deadline = self._deadline(path)
        if path in self._seen and deadline is not None and now < deadline:
            return PathState(PROVEN)
        identity = self._identity.get(path[0])
        if path[2] == EVENTBRIDGE and identity is not None and not forwarded(identity[0], self.session_name):
            return PathState(BLIND, identity[1], CANARY_NOT_FORWARDED)
        # Blind only once a canary was tried: the LookupEvents pass may read back a canary
        # from before the account left (or the exporter restarted) before the canary loop
        # reaches the account, and that old canary's age is no canary missing.
        if deadline is None or now < deadline or path[:2] not in self._started:
            return PathState(PENDING)
        return PathState(BLIND, deadline, CANARY_MISSING)

    def _prune_observed(self, now: float) -> None:
        if len(self._observed) < 2 * self._observed_pruned_at + 1024:
            return
        # A record older than every bound plus an hour is past any overlapping re-read.
        horizon = now - max(self._bounds.values(), default=0.0) - self._interval - 3600
        self._observed = {k: t for k, t in self._observed.items() if t >= horizon}
        self._observed_pruned_at = len(self._observed)
