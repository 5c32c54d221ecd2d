"""Configuration checks, judged purely: would a root record in this account and region reach
the configured queue sources, by what CloudTrail and EventBridge say about themselves?

The engine (exporter.engine.monitoring_checks) reads, per account and monitored region,
through the member role: CloudTrail `DescribeTrails` (`includeShadowTrails=True`), then per
trail `GetTrailStatus` and `GetEventSelectors` (by `TrailARN`; a member takes the
organization trail's selectors from its owner's reading), and EventBridge
`DescribeRule` and `ListTargetsByRule` for `forwarder_rule_name` on the default bus. This
module turns those answers (botocore-shaped dicts; field names and enums from botocore's
`cloudtrail` 2013-11-01 and `events` 2015-10-07 models) into `PathProblem`s. What AWS
documents and this relies on:

- EventBridge receives `AWS API Call via CloudTrail` events only where a trail is logging
  ("To record events with a detail-type value of AWS API Call via CloudTrail, a CloudTrail
  trail with logging enabled is required", EventBridge User Guide, "Events from AWS
  services"); the organization trail's S3 files exist only where it logs. No logging trail
  covering the region blinds `eventbridge_sqs` and `s3_trail`: reason `no_logging_trail`.
  `LookupEvents` (event history) needs no trail and is never judged here.
- `DescribeTrails` with `includeShadowTrails` returns "the replication in a Region of a trail
  that was created in a different Region, or in the case of an organization trail, the
  replication of an organization trail in member accounts" (CloudTrail API Reference,
  DescribeTrails). A trail covers a region when `IsMultiRegionTrail` and the region is in
  the partition of its `HomeRegion`, or when `HomeRegion` is the region; a trail of another
  account counts only when `IsOrganizationTrail` (an organization trail logs for members).
- `GetTrailStatus.IsLogging`: "Whether the CloudTrail trail is currently logging". For a
  shadow or organization trail the full ARN must be given (API Reference, GetTrailStatus:
  "If the trail is an organization trail and you are a member account ... you must provide
  the full ARN").
- Management events: basic `EventSelectors` with `IncludeManagementEvents` (default true)
  and `ReadWriteType` `ReadOnly` | `WriteOnly` | `All` (default `All`); or
  `AdvancedEventSelectors` where a management selector has field `eventCategory` `Equals`
  `Management`, an optional `readOnly` `Equals` `true` (reads only) or `false` (writes
  only; absent: both), and for trails `eventSource` only as `NotEquals` `kms.amazonaws.com`
  / `rdsdata.amazonaws.com` (API Reference, AdvancedFieldSelector; EventSelector). The
  exporter needs both: root sign-ins and most root calls are writes, and the canary
  (`sts:GetCallerIdentity`) and read-only root calls are reads. No logging trail covering
  the region records both: reason `management_events_off`. A selector that keeps
  management events only from named sources (`eventSource` `Equals`/`StartsWith`/
  `EndsWith`) does not count: it drops every other source's root records. Read and write
  may come from two different logging trails (either one feeds EventBridge).
- The forwarder rule (`DescribeRule`, `State` in `ENABLED` | `DISABLED` |
  `ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS`): read-only management events reach a rule
  only in state `ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS` (EventBridge User Guide,
  "Receiving read-only management events from AWS services"); `ResourceNotFoundException`
  means no rule (`rule_missing`), `DISABLED` receives nothing (`rule_disabled`), `ENABLED`
  misses read-only calls (`rule_read_only_events_off`), and a rule without targets
  (`ListTargetsByRule`) delivers nowhere (`rule_no_target`). These blind `eventbridge_sqs`.
- A read that failed (denied, throttled, no answer) proves nothing: reason `check_failed`
  for every source the read would have judged (fail closed).

What the checks cannot tell: which trail's bucket feeds `s3_trail_queue_url` (any logging
trail satisfies them) and whether the rule's target is the exporter's bus or queue; the
canary proves both end to end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.aws.partitions import arn_partition, partition_of_region
from exporter.monitoring.problems import EVENTBRIDGE, S3_TRAIL, PathProblem

NO_LOGGING_TRAIL = "no_logging_trail"
MANAGEMENT_EVENTS_OFF = "management_events_off"
RULE_MISSING = "rule_missing"
RULE_DISABLED = "rule_disabled"
RULE_READ_ONLY_EVENTS_OFF = "rule_read_only_events_off"
RULE_NO_TARGET = "rule_no_target"
CHECK_FAILED = "check_failed"
REASONS = (
    NO_LOGGING_TRAIL,
    MANAGEMENT_EVENTS_OFF,
    RULE_MISSING,
    RULE_DISABLED,
    RULE_READ_ONLY_EVENTS_OFF,
    RULE_NO_TARGET,
    CHECK_FAILED,
)
# The sources a trail feeds (EventBridge's CloudTrail events and the trail's S3 files) and
# the one the forwarder rule feeds.
TRAIL_SOURCES = (EVENTBRIDGE, S3_TRAIL)
RULE_SOURCES = (EVENTBRIDGE,)
# RuleState (botocore events model): the one state in which read-only management events arrive.
ALL_MANAGEMENT_EVENTS = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
ENABLED = "ENABLED"
# AdvancedFieldSelector operators that keep only matching values (the others exclude).
_INCLUDING = ("Equals", "StartsWith", "EndsWith")


@dataclass(frozen=True, slots=True)
class TrailReading:
    """One trail: its `DescribeTrails` entry and its `GetTrailStatus` and `GetEventSelectors` answers."""

    description: Mapping[str, Any]
    status: Mapping[str, Any]
    selectors: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RuleReading:
    """The forwarder rule: its `DescribeRule` answer (None: `ResourceNotFoundException`) and targets."""

    description: Mapping[str, Any] | None
    targets: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class RegionReading:
    """What one check read in one account and region; `failed` is the reason a read failed."""

    account_id: str
    region: str
    trails: tuple[TrailReading, ...] = ()
    rule: RuleReading | None = None
    failed: str | None = None
    # The sources this reading judges (the configured queue sources).
    sources: tuple[str, ...] = ()


def trail_owner(arn: str) -> str:
    """The account that owns the trail, from its ARN ("" when the ARN has no account)."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def covers(trail: Mapping[str, Any], account_id: str, region: str) -> bool:
    """Whether the trail records this account's events in `region`."""
    arn = str(trail.get("TrailARN", ""))
    parts = arn.split(":")
    owner = trail_owner(arn)
    if owner != account_id and not trail.get("IsOrganizationTrail"):
        return False
    home = str(trail.get("HomeRegion") or (parts[3] if len(parts) > 3 else ""))
    if trail.get("IsMultiRegionTrail"):
        return (partition_of_region(home) or arn_partition(arn)) == partition_of_region(region)
    return home == region


def management_events(selectors: Mapping[str, Any]) -> tuple[bool, bool]:
    """(records read, records write) management events, from a `GetEventSelectors` answer."""
    read = write = False
    advanced = selectors.get("AdvancedEventSelectors") or []
    if advanced:
        for selector in advanced:
            r, w = _advanced(selector.get("FieldSelectors") or [])
            read, write = read or r, write or w
        return read, write
    for selector in selectors.get("EventSelectors") or []:
        if not selector.get("IncludeManagementEvents", True):
            continue
        kind = selector.get("ReadWriteType", "All")
        read = read or kind in ("ReadOnly", "All")
        write = write or kind in ("WriteOnly", "All")
    return read, write


def _advanced(fields: Iterable[Mapping[str, Any]]) -> tuple[bool, bool]:
    by_field = {f.get("Field"): f for f in fields}
    category = by_field.get("eventCategory") or {}
    if "Management" not in (category.get("Equals") or []):
        return False, False
    source = by_field.get("eventSource") or {}
    if any(source.get(op) for op in _INCLUDING):
        return False, False
    read_only = (by_field.get("readOnly") or {}).get("Equals")
    if not read_only:
        return True, True
    values = {str(v).lower() for v in read_only}
    return "true" in values, "false" in values


def trail_reason(reading: RegionReading) -> str | None:
    """The trail problem of the region, None when a logging trail records read and write management events."""
    logging = [
        t for t in reading.trails if t.status.get("IsLogging") is True and covers(t.description, reading.account_id, reading.region)
    ]
    if not logging:
        return NO_LOGGING_TRAIL
    read = write = False
    for trail in logging:
        r, w = management_events(trail.selectors)
        read, write = read or r, write or w
    return None if read and write else MANAGEMENT_EVENTS_OFF


def rule_reasons(rule: RuleReading) -> list[str]:
    """The forwarder rule's problems (empty when it is in place)."""
    if rule.description is None:
        return [RULE_MISSING]
    reasons = []
    state = rule.description.get("State")
    if state == ENABLED:
        reasons.append(RULE_READ_ONLY_EVENTS_OFF)
    elif state != ALL_MANAGEMENT_EVENTS:
        # DISABLED, or a state this model does not know: nothing proven arrives (fail closed).
        reasons.append(RULE_DISABLED)
    if not rule.targets:
        reasons.append(RULE_NO_TARGET)
    return reasons


def evaluate(readings: Iterable[RegionReading], previous: Iterable[PathProblem] = (), now: float = 0.0) -> tuple[PathProblem, ...]:
    """Every problem of these readings; `since` carried over from `previous` while a problem
    (same account, region, reason) persists, else `now`. Problems of one account, region and
    reason are merged into one (their sources joined): one blind series each."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for reading in readings:
        trail_sources = tuple(s for s in reading.sources if s in TRAIL_SOURCES)
        rule_sources = tuple(s for s in reading.sources if s in RULE_SOURCES)
        if reading.failed is not None:
            _add(found, reading, CHECK_FAILED, reading.sources)
            continue
        if trail_sources:
            reason = trail_reason(reading)
            if reason is not None:
                _add(found, reading, reason, trail_sources)
        if rule_sources and reading.rule is not None:
            for reason in rule_reasons(reading.rule):
                _add(found, reading, reason, rule_sources)
    since = {(p.account_id, p.region, p.reason): p.since for p in previous}
    return tuple(
        PathProblem(account, region, tuple(s for s in (EVENTBRIDGE, S3_TRAIL) if s in sources), reason, since.get((account, region, reason), now))
        for (account, region, reason), sources in sorted(found.items())
    )


def _add(found: dict[tuple[str, str, str], set[str]], reading: RegionReading, reason: str, sources: Iterable[str]) -> None:
    found.setdefault((reading.account_id, reading.region, reason), set()).update(sources)
