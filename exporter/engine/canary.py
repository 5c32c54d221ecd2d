"""The canary loop: every `canary_interval_seconds`, one `sts:GetCallerIdentity` per collected
account and monitored region, made as the exporter's member role on that region's STS
endpoint (exporter.monitoring.canary says why this call). Its CloudTrail record must come
back through every configured activity source; `ActivityService.take` reports it to the
same `Coverage` (README, Proof of sight).

A canary that fails is counted in `aws_root_exporter_collector_errors_total{collector="canary"}`
and logged like every collector failure, and nothing else: it has no success series (the
series budget) and never pages by itself. Its paths go blind once their bound has passed
without a canary, which is what `AwsRootMonitoringBlind` is for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from exporter.aws.client import Aws
from exporter.config.settings import Settings
from exporter.discovery.accounts import Account
from exporter.engine.runner import CollectorRunner, attempt
from exporter.engine.state import CollectorStatus, ExporterState, Snapshot
from exporter.monitoring.coverage import Coverage, monitored_regions

log = logging.getLogger(__name__)

CANARY = "canary"
# Canaries made at once come back at once: a round at 10,000 accounts put 10,000 messages on
# the EventBridge queue within 2 s, and a root event waited about 100 s behind them (the
# benchmark; the consumer drains about 100 a second). A round is spread at most at this rate
# (a fifth of that), and over at most CANARY_SPREAD of the interval.
CANARIES_PER_SECOND = 20.0
CANARY_SPREAD = 0.8


def canary_accounts(snapshot: Snapshot, settings: Settings) -> list[Account]:
    """The accounts the canary (and LookupEvents) reach with the member role or the exporter's
    own credentials. Under `assume_root_audit`, an account without a role is reached only as
    its root, whose calls are root activity: no canary is made there, and nothing proves it."""
    return [a for a in snapshot.accounts if a.role_arn is not None or not settings.assume_root_audit or a.management]


def canary_paths(snapshot: Snapshot, settings: Settings) -> Iterable[tuple[Account, str]]:
    for account in canary_accounts(snapshot, settings):
        for region in monitored_regions(settings, account.partition):
            yield account, region


class CanaryService:
    def __init__(self, aws: Aws, settings: Settings, state: ExporterState, coverage: Coverage) -> None:
        self.aws = aws
        self.settings = settings
        self.state = state
        self.coverage = coverage
        self.runner = CollectorRunner(state)
        # The last failure per account, so that an unchanged one is logged at debug.
        self._failing: dict[str, CollectorStatus] = {}

    async def run(self) -> None:
        while not self.state.ready.is_set():
            await asyncio.sleep(0.2)
        while True:
            started = time.monotonic()
            await self.round(spread=self._spread())
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(self.settings.canary_interval_seconds - elapsed, 1.0))

    def _spread(self) -> float:
        paths = sum(1 for _ in canary_paths(self.state.snapshot, self.settings))
        return min(paths / CANARIES_PER_SECOND, CANARY_SPREAD * self.settings.canary_interval_seconds)

    async def round(self, spread: float = 0.0) -> None:
        """One canary per account and monitored region (bounded concurrency), the accounts'
        starts spread evenly over `spread` seconds."""
        snapshot = self.state.snapshot
        self.coverage.configure(self.settings.canary_bounds_seconds, self.settings.canary_interval_seconds)
        self.coverage.forget(a.account_id for a in snapshot.accounts)
        self._failing = {k: v for k, v in self._failing.items() if k in {a.account_id for a in snapshot.accounts}}
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        async def one(account: Account, delay: float) -> None:
            if delay > 0:
                await asyncio.sleep(delay)
            regions = monitored_regions(self.settings, account.partition)
            async with semaphore:
                now = time.time()
                for region in regions:
                    self.coverage.attempted(account.account_id, region, now)
                timeout = self.settings.account_timeout_seconds * len(regions)
                _, error = await attempt(lambda: self._canary(account, regions), timeout)
            previous = self._failing.get(account.account_id)
            if error is not None:
                self._failing[account.account_id] = self.runner.failure(
                    account.account_id, CANARY, error, previous, timeout, "canary failed; the account's paths go blind after their bound"
                )
            elif previous is not None:
                del self._failing[account.account_id]
                log.info("collector recovered", extra={"account_id": account.account_id, "collector": CANARY, "after": previous.reason})

        accounts = canary_accounts(snapshot, self.settings)
        await asyncio.gather(*(one(a, spread * n / len(accounts)) for n, a in enumerate(accounts)))

    async def _canary(self, account: Account, regions: list[str]) -> None:
        credentials = await self.aws.assume_role(account.role_arn) if account.role_arn else None
        for region in regions:
            arn = await self.aws.caller_identity(credentials, region)
            self.coverage.made(account.account_id, arn, time.time())
