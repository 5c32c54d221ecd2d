"""A reason the exporter cannot prove it would see root activity on some path.

Canaries (exporter.monitoring.coverage) and configuration checks (exporter.monitoring.checks)
each produce `PathProblem`s; `aws_root_monitoring_blind_since_timestamp_seconds` shows every
one of them, one series per source it blinds, and `AwsRootMonitoringBlind` pages on them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Sources, as the activity engine names them (exporter.engine.activity), plus ALL for a
# problem that blinds every source of the account at once (it left the organization).
LOOKUP = "lookup_events"
EVENTBRIDGE = "eventbridge_sqs"
S3_TRAIL = "s3_trail"
ALL = "all"
SOURCES: tuple[str, ...] = (EVENTBRIDGE, S3_TRAIL, LOOKUP)


@dataclass(frozen=True, slots=True)
class PathProblem:
    account_id: str
    # The region the problem is in; "" when it is not regional (the account left).
    region: str
    # The sources it blinds, each one of SOURCES or ALL.
    sources: tuple[str, ...]
    # A bounded label value (the runbook explains each): canary_missing, trail_not_logging, ...
    reason: str
    # Unix time from which the path counts as blind (first observed, or when the canary was due).
    since: float
