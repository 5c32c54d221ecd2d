"""The posture sweep: discover accounts, collect each one concurrently, publish a snapshot.

Sweeps run on their own timer, never on a scrape. One account's failure is recorded with a
reason and never stops the others; a sweep still running is never started twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import MappingProxyType

from exporter.discovery.accounts import Account, Discovery, discover
from exporter.aws.client import EXPIRED_CODES, Aws, AwsError, classify_error
from exporter.posture.credential_report import CredentialReportError
from exporter.posture.collect import RootPosture, collect_with_assume_root, collect_with_report
from exporter.scp.check import check_scp
from exporter.config.settings import AccountMode, Settings
from exporter.engine.state import CollectorStatus, ExporterState, Snapshot

log = logging.getLogger(__name__)

POSTURE = "posture"
DISCOVERY = "discovery"
ORG_FEATURES = "organization_features"
FEATURES = ("RootCredentialsManagement", "RootSessions")


class SweepRunning(RuntimeError):
    """A sweep was asked for while one is still running; overlapping sweeps are refused."""


class PostureSweeper:
    def __init__(self, aws: Aws, settings: Settings, state: ExporterState) -> None:
        self.aws = aws
        self.settings = settings
        self.state = state
        self._running = False
        self._own_account: str | None = None

    async def sweep(self) -> Snapshot:
        if self._running:
            raise SweepRunning("a posture sweep is already running")
        self._running = True
        try:
            return await self._sweep()
        finally:
            self._running = False

    async def run(self) -> None:
        """Sweep forever, `posture_interval_seconds` apart (start to start)."""
        while True:
            started = time.monotonic()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the exporter; it shows in the logs
                log.exception("posture sweep failed")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(self.settings.posture_interval_seconds - elapsed, 1.0))

    async def _sweep(self) -> Snapshot:
        started = time.monotonic()
        previous = self.state.snapshot
        discovery_error = None
        discovery_account = None
        try:
            found = await discover(self.aws, self.settings)
        except Exception as exc:
            reason = discovery_error = classify_error(exc)
            # With no management account id known yet (discovery never succeeded), the
            # failure is recorded under the exporter's own account: it must show as a failing
            # collector, never as an empty organization that raises no alert.
            discovery_account = previous.management_account_id or await self._own_account_id()
            self._count_error(discovery_account, DISCOVERY, reason)
            log.warning("account discovery failed; keeping the last account list", extra={"reason": reason, "error": str(exc)})
            found = Discovery(
                accounts=list(previous.accounts),
                discovered=previous.discovered,
                skipped=dict(previous.skipped),
                management_account_id=previous.management_account_id,
            )
        discovery_duration = time.monotonic() - started
        accounts = found.accounts
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        # The SCP check reads Organizations only: it runs beside the per-account collection.
        results, scp = await asyncio.gather(
            asyncio.gather(*(self._collect(account, semaphore) for account in accounts)),
            check_scp(self.aws, self.settings, found, previous, self._count_error),
        )
        features = await self._organization_features(found)

        posture: dict[str, RootPosture] = {}
        status = {}
        known = {a.account_id for a in accounts}
        for account, (result, collector_status) in zip(accounts, results):
            status[(account.account_id, POSTURE)] = collector_status
            if result is not None:
                posture[account.account_id] = result
            elif account.account_id in previous.posture:
                posture[account.account_id] = previous.posture[account.account_id]
        for key, value in previous.status.items():
            if key[1] == ORG_FEATURES and key[0] in known:
                status.setdefault(key, value)
        if discovery_error is None:
            discovery_account = found.management_account_id
        if discovery_account is not None:
            # Discovery is a collector too: when it fails, new members go unmonitored.
            key = (discovery_account, DISCOVERY)
            before = previous.status.get(key)
            status[key] = (
                CollectorStatus(False, discovery_duration, before.last_success if before else None, discovery_error)
                if discovery_error
                else CollectorStatus(True, discovery_duration, time.time())
            )
        if features is not None:
            status[features[0]] = features[1]
        if scp is not None:
            status[scp.key] = scp.status
        snapshot = Snapshot(
            accounts=tuple(accounts),
            posture=MappingProxyType(posture),
            status=MappingProxyType(status),
            discovered=found.discovered,
            skipped=MappingProxyType(dict(found.skipped)),
            organization_features=features[2] if features and features[2] is not None else previous.organization_features,
            management_account_id=found.management_account_id,
            discovery_error=discovery_error,
            sweep_duration=time.monotonic() - started,
            completed_at=time.time(),
            scp=(scp.result or previous.scp) if scp is not None else None,
        )
        self.state.publish(snapshot)
        failed = sum(1 for s in status.values() if not s.success)
        log.info(
            "posture sweep complete",
            extra={"accounts": len(accounts), "failed": failed, "duration_seconds": round(snapshot.sweep_duration, 3)},
        )
        return snapshot

    async def _collect(self, account: Account, semaphore: asyncio.Semaphore) -> tuple[RootPosture | None, CollectorStatus]:
        previous = self.state.snapshot.status.get((account.account_id, POSTURE))
        last_success = previous.last_success if previous else None
        async with semaphore:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.settings.account_timeout_seconds):
                    posture = await self._collect_account(account)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = "invalid_response" if isinstance(exc, CredentialReportError) else classify_error(exc)
                if isinstance(exc, TimeoutError) and not isinstance(exc, AwsError):
                    message = f"no answer within {self.settings.account_timeout_seconds:g}s"
                else:
                    message = str(exc)
                self._count_error(account.account_id, POSTURE, reason)
                log.warning(
                    "posture collection failed",
                    extra={"account_id": account.account_id, "reason": reason, "error": message},
                )
                return None, CollectorStatus(False, time.monotonic() - started, last_success, reason, message)
            return posture, CollectorStatus(True, time.monotonic() - started, time.time())

    async def _collect_account(self, account: Account) -> RootPosture:
        try:
            return await self._collect_account_once(account)
        except AwsError as exc:
            if exc.code not in EXPIRED_CODES:
                raise
            # Aws dropped the refused credentials: one more try with fresh ones.
            return await self._collect_account_once(account)

    async def _collect_account_once(self, account: Account) -> RootPosture:
        settings = self.settings
        if settings.assume_root_audit and account.role_arn is not None and not account.management:
            return await collect_with_assume_root(self.aws, account.account_id)
        credentials = await self.aws.assume_role(account.role_arn) if account.role_arn else None
        return await collect_with_report(
            self.aws,
            account.account_id,
            credentials,
            settings.credential_report_max_age_seconds,
            settings.credential_report_wait_seconds,
        )

    async def _organization_features(self, found: Discovery) -> tuple[tuple[str, str], CollectorStatus, dict[str, bool] | None] | None:
        if self.settings.account_mode is not AccountMode.organization or not found.management_account_id:
            return None
        key = (found.management_account_id, ORG_FEATURES)
        previous = self.state.snapshot.status.get(key)
        started = time.monotonic()
        try:
            iam = await self.aws.client("iam")
            try:
                response = await self.aws.call(iam, "ListOrganizationsFeatures")
                enabled = set(response.get("EnabledFeatures", []))
            except AwsError as exc:
                # IAM's trusted access to Organizations is off: no feature can be enabled.
                if exc.code != "ServiceAccessNotEnabledException":
                    raise
                enabled = set()
        except Exception as exc:
            reason = classify_error(exc)
            self._count_error(found.management_account_id, ORG_FEATURES, reason)
            log.warning("reading centralized root access features failed", extra={"reason": reason, "error": str(exc)})
            return key, CollectorStatus(False, time.monotonic() - started, previous.last_success if previous else None, reason, str(exc)), None
        return key, CollectorStatus(True, time.monotonic() - started, time.time()), {f: f in enabled for f in FEATURES}

    async def _own_account_id(self) -> str:
        """The exporter's own account (sts:GetCallerIdentity, remembered); "" when even STS fails."""
        if self._own_account is None:
            try:
                sts = await self.aws.client("sts")
                self._own_account = str((await self.aws.call(sts, "GetCallerIdentity"))["Account"])
            except Exception as exc:
                log.warning("cannot read the exporter's own account id", extra={"reason": classify_error(exc), "error": str(exc)})
                return ""
        return self._own_account

    def _count_error(self, account_id: str, collector: str, reason: str) -> None:
        self.state.collector_errors[(account_id, collector, reason)] += 1
        self.state.changed()
