"""The configuration checks' loop: every `monitoring_checks_interval_seconds`, read through the
member role whether a logging trail and the forwarder rule cover each collected account and
monitored region, and publish the problems (`state.monitoring_problems["checks"]`).

Only the configured queue sources are judged (`eventbridge_queue_url`: trail and rule;
`s3_trail_queue_url`: trail); with neither there is nothing to check and no request is sent.
Each (account, region) is one unit of the one collector runner (collector
`monitoring_checks`): a failed read counts in `aws_root_exporter_collector_errors_total`, is
logged once per reason change, and becomes reason `check_failed` (fail closed). The judging
is exporter.monitoring.checks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from exporter.aws.client import Aws, AwsError, Credentials
from exporter.config.settings import Settings
from exporter.discovery.accounts import Account
from exporter.engine.runner import CollectorRunner
from exporter.engine.state import CollectorStatus, ExporterState
from exporter.monitoring.checks import TRAIL_SOURCES, RegionReading, RuleReading, TrailReading, covers, evaluate, trail_owner
from exporter.monitoring.coverage import monitored_regions
from exporter.monitoring.problems import EVENTBRIDGE, S3_TRAIL, PathProblem

log = logging.getLogger(__name__)

COLLECTOR = "monitoring_checks"
# The producer's key in ExporterState.monitoring_problems.
PRODUCER = "checks"


class MonitoringChecks:
    def __init__(self, aws: Aws, settings: Settings, state: ExporterState) -> None:
        self.aws = aws
        self.settings = settings
        self.state = state
        self.runner = CollectorRunner(state)
        # Last status per (account, region): a repeated failure logs at debug, a recovery at info.
        self._status: dict[tuple[str, str], CollectorStatus] = {}
        # This pass's GetEventSelectors answers read in each trail's own account, by TrailARN.
        self._owner_selectors: dict[str, dict[str, Any]] = {}

    def sources(self) -> tuple[str, ...]:
        """The configured sources a check can judge (LookupEvents needs no trail)."""
        configured = []
        if self.settings.eventbridge_queue_url:
            configured.append(EVENTBRIDGE)
        if self.settings.s3_trail_queue_url:
            configured.append(S3_TRAIL)
        return tuple(configured)

    async def run(self) -> None:
        """Check forever, `monitoring_checks_interval_seconds` apart (start to start), from the first snapshot on."""
        while not self.state.ready.is_set():
            await asyncio.sleep(0.2)
        while True:
            started = time.monotonic()
            await self.check()
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(self.settings.monitoring_checks_interval_seconds - elapsed, 1.0))

    async def check(self) -> tuple[PathProblem, ...]:
        """One pass over every collected account and monitored region; publishes and returns the problems."""
        sources = self.sources()
        readings: list[RegionReading] = []
        if sources:
            semaphore = asyncio.Semaphore(self.settings.concurrency)
            accounts = self.state.snapshot.accounts
            self._owner_selectors = {}
            # The management account first: it owns the organization trail, and its members
            # then take the trail's selectors from its reading (`_selectors`).
            for batch in ([a for a in accounts if a.management], [a for a in accounts if not a.management]):
                units = [(a, region) for a in batch for region in monitored_regions(self.settings, a.partition)]
                readings += await asyncio.gather(*(self._read(a, region, sources, semaphore) for a, region in units))
        previous = self.state.monitoring_problems.get(PRODUCER)
        problems = evaluate(readings, previous or (), time.time())
        if problems != previous:  # the first check publishes even when all is well
            self.state.monitoring_problems[PRODUCER] = problems
            self.state.changed()
        return problems

    async def _read(self, account: Account, region: str, sources: tuple[str, ...], semaphore: asyncio.Semaphore) -> RegionReading:
        key = (account.account_id, region)
        async with semaphore:
            outcome = await self.runner.run(
                account.account_id,
                COLLECTOR,
                lambda: self._read_region(account, region, sources),
                previous=self._status.get(key),
                timeout=self.settings.account_timeout_seconds,
                failed=f"configuration check failed in {region}",
            )
        self._status[key] = outcome.status
        if outcome.value is None:
            return RegionReading(account.account_id, region, failed=outcome.status.reason or "error", sources=sources)
        return outcome.value

    async def _read_region(self, account: Account, region: str, sources: tuple[str, ...]) -> RegionReading:
        credentials = await self.aws.assume_role(account.role_arn) if account.role_arn else None
        trails: tuple[TrailReading, ...] = ()
        if any(source in TRAIL_SOURCES for source in sources):
            trails = await self._trails(account.account_id, region, credentials)
        rule = await self._rule(region, credentials) if EVENTBRIDGE in sources else None
        return RegionReading(account.account_id, region, trails, rule, sources=sources)

    async def _trails(self, account_id: str, region: str, credentials: Credentials | None) -> tuple[TrailReading, ...]:
        """The trails that cover the region, each with its status, and its selectors when it logs."""
        found = []
        async with self.aws.member_client("cloudtrail", credentials, region) as cloudtrail:
            # Shadow trails: multi-region trails of other home regions and the organization trail.
            listed = (await self.aws.call(cloudtrail, "DescribeTrails", includeShadowTrails=True)).get("trailList", [])
            for trail in listed:
                if not covers(trail, account_id, region):
                    continue
                # By ARN: a shadow or organization trail is not found by its name.
                arn = trail["TrailARN"]
                status = await self.aws.call(cloudtrail, "GetTrailStatus", Name=arn)
                selectors: dict[str, Any] = {}
                if status.get("IsLogging") is True:
                    selectors = await self._selectors(cloudtrail, arn, account_id)
                found.append(TrailReading(trail, status, selectors))
        return tuple(found)

    async def _selectors(self, cloudtrail: Any, arn: str, account_id: str) -> dict[str, Any]:
        """The trail's event selectors: read in its owner account when this pass has, else here.

        An organization trail seen from a member account is the management account's trail,
        and reading its configuration from a member is reported to fail (cloud-custodian's
        review of its event-selectors filter, PR #6394: "this api call will fail for an
        organization trail from a different account"; mondoo mql PR #1185 skips such trails
        for the same reason). `GetTrailStatus` by ARN is documented for members and is still
        read in each account. Where the owner was not read (not collected, or its read failed)
        the member asks itself; a failure there is `check_failed` (fail closed).
        """
        owner = trail_owner(arn)
        if owner != account_id and arn in self._owner_selectors:
            return self._owner_selectors[arn]
        selectors: dict[str, Any] = await self.aws.call(cloudtrail, "GetEventSelectors", TrailName=arn)
        if owner == account_id:
            self._owner_selectors[arn] = selectors
        return selectors

    async def _rule(self, region: str, credentials: Credentials | None) -> RuleReading:
        name = self.settings.forwarder_rule_name
        async with self.aws.member_client("events", credentials, region) as events:
            try:
                description = await self.aws.call(events, "DescribeRule", Name=name)
            except AwsError as exc:
                if exc.code == "ResourceNotFoundException":
                    return RuleReading(None)
                raise
            # One page tells whether there is a target.
            targets = (await self.aws.call(events, "ListTargetsByRule", Rule=name)).get("Targets", [])
        return RuleReading(description, tuple(targets))
