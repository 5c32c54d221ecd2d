"""The posture sweep: discover accounts, collect each one concurrently, publish a snapshot.

Sweeps run on their own timer, never on a scrape. One account's failure is recorded with a
reason and never stops the others; a sweep still running is never started twice.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Generic, TypeVar

from exporter.aws.client import EXPIRED_CODES, Aws, AwsError, classify_error
from exporter.config.settings import AccountMode, Settings
from exporter.discovery.accounts import Account, Discovery, discover
from exporter.engine.runner import CollectorRunner, Outcome, attempt
from exporter.engine.state import CollectorStatus, ExporterState, Snapshot
from exporter.posture.collect import MFA_HARDWARE_WAIVER, RootPosture, collect_with_assume_root, collect_with_report
from exporter.posture.organization_features import OrganizationFeatures, read_organization_features
from exporter.posture.recovery import TRUSTED_ACCESS_DISABLED, Recovery, SecurityContact, domain_allowed, read_security_contact
from exporter.scp.check import SCP, ScpResult, collect_scp
from exporter.scp.evaluate import FenceState

log = logging.getLogger(__name__)

POSTURE = "posture"
DISCOVERY = "discovery"
ORG_FEATURES = "organization_features"
# Failures to read a security alternate contact are counted under this collector (the
# control is then unknown); it has no success series of its own (series budget).
SECURITY_CONTACT = "security_contact"
# With no AWS credentials a sweep is tried again after 5 s, then 10, 20, 40 and every 60 s
# (never later than the normal interval): credentials that show up soon after the start (the
# EKS Pod Identity agent starting on a new node, a config file mounted late) are used within
# a minute, not one posture interval later. A sweep without credentials sends no request.
CREDENTIALS_RETRY_FIRST_SECONDS = 5.0
CREDENTIALS_RETRY_MAX_SECONDS = 60.0

T = TypeVar("T")


class SweepRunning(RuntimeError):
    """A sweep was asked for while one is still running; overlapping sweeps are refused."""


class PostureSweeper:
    def __init__(self, aws: Aws, settings: Settings, state: ExporterState, clock: Callable[[], float] = time.time) -> None:
        self.aws = aws
        self.settings = settings
        self.state = state
        self.clock = clock
        self.runner = CollectorRunner(state)
        self._running = False
        self._own_account: str | None = None

    @property
    def running(self) -> bool:
        """A sweep started and not returned (its snapshot may already be published)."""
        return self._running

    async def sweep(self) -> Snapshot:
        if self._running:
            raise SweepRunning("a posture sweep is already running")
        self._running = True
        try:
            return await self._sweep()
        finally:
            self._running = False

    async def run(self) -> None:
        """Sweep forever, `posture_interval_seconds` apart (start to start); sooner, with
        backoff, while the exporter has no AWS credentials (see `credentials_retry_delay`)."""
        retries = 0
        while True:
            started = time.monotonic()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the exporter; it shows in the logs
                log.exception("posture sweep failed")
            if self.aws.credentials_missing:
                retries += 1
                delay = credentials_retry_delay(retries, self.settings.posture_interval_seconds)
                log.info("no AWS credentials: next posture sweep sooner", extra={"retry_in_seconds": delay})
                await asyncio.sleep(delay)
                continue
            retries = 0
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(self.settings.posture_interval_seconds - elapsed, 1.0))

    async def _sweep(self) -> Snapshot:
        started = time.monotonic()
        previous = self.state.snapshot
        found, discovery, discovery_error = await self._discover(previous)
        accounts = found.accounts
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        # The SCP check reads Organizations only: it runs beside the per-account collection.
        postures, scp = await asyncio.gather(
            asyncio.gather(*(self._collect(account, semaphore, previous) for account in accounts)),
            self._check_scp(found, previous, discovery_error),
        )
        features = await self._organization_features(found, previous)
        sweep = SweepResults(
            discovery=discovery,
            posture=dict(zip(accounts, postures)),
            features=features,
            scp=scp,
            features_required=tuple(self.settings.central_root_access_required),
            waive_mfa_hardware_when_fenced=self.settings.mfa_hardware_waived_when_fenced,
        )
        snapshot = sweep.snapshot(found, previous, time.monotonic() - started)
        self._log_trusted_access(snapshot, previous)
        snapshot = self.state.number(snapshot)
        if self.state.preparers:
            await asyncio.to_thread(self.state.prepare, snapshot)
        snapshot = self.state.publish(snapshot)
        if snapshot.accounts:
            freeze_long_lived()
        failed = sum(1 for s in snapshot.status.values() if not s.success)
        log.info(
            "posture sweep complete",
            extra={"accounts": len(accounts), "failed": failed, "duration_seconds": round(snapshot.sweep_duration or 0.0, 3)},
        )
        return snapshot

    def _log_trusted_access(self, snapshot: Snapshot, previous: Snapshot) -> None:
        """One warning when trusted access for AWS Account Management turns out off (not one per account)."""
        def off(snap: Snapshot) -> int:
            return sum(
                1
                for p in snap.posture.values()
                if p.recovery is not None and p.recovery.security_contact is not None and p.recovery.security_contact.reason == TRUSTED_ACCESS_DISABLED
            )

        accounts = off(snapshot)
        if accounts and not off(previous):
            log.warning(
                "trusted access for AWS Account Management is not enabled in AWS Organizations: security alternate contacts"
                " cannot be read and control security_contact_present is unknown; enable it with"
                " `aws organizations enable-aws-service-access --service-principal account.amazonaws.com`",
                extra={"accounts": accounts},
            )

    async def _discover(self, previous: Snapshot) -> tuple[Discovery, Keyed[Discovery] | None, Exception | None]:
        """This sweep's accounts; on failure the previous list, and the failure on record.

        Discovery is a collector too: when it fails, new members go unmonitored."""
        value, error = await attempt(lambda: discover(self.aws, self.settings), None)
        if error is None:
            assert value is not None
            if value.management_account_id is None:
                return value, None, None
            key = (value.management_account_id, DISCOVERY)
            return value, Keyed(key, Outcome(CollectorStatus(True, time.time()), value)), None
        # With no management account id known yet (discovery never succeeded), the failure
        # is recorded under the exporter's own account: it must show as a failing collector,
        # never as an empty organization that raises no alert.
        account_id = previous.management_account_id or await self._own_account_id()
        key = (account_id, DISCOVERY)
        status = self.runner.failure(
            account_id, DISCOVERY, error, previous.status.get(key), None, "account discovery failed; keeping the last account list"
        )
        kept = Discovery(
            accounts=list(previous.accounts),
            discovered=previous.discovered,
            skipped=dict(previous.skipped),
            skipped_accounts=list(previous.skipped_accounts),
            management_account_id=previous.management_account_id,
        )
        return kept, Keyed(key, Outcome(status)), error

    async def _collect(self, account: Account, semaphore: asyncio.Semaphore, previous: Snapshot) -> Outcome[RootPosture]:
        async with semaphore:
            return await self.runner.run(
                account.account_id,
                POSTURE,
                lambda: self._collect_account(account, previous.posture.get(account.account_id)),
                previous=previous.status.get((account.account_id, POSTURE)),
                timeout=self.settings.account_timeout_seconds,
                failed="posture collection failed",
            )

    async def _check_scp(self, found: Discovery, previous: Snapshot, discovery_error: Exception | None) -> Keyed[ScpResult] | None:
        """The SCP check of this sweep; None when it does not apply (mode, setting, no organization)."""
        if not self.settings.scp_check or self.settings.account_mode is not AccountMode.organization:
            return None
        management_id = found.management_account_id or previous.management_account_id
        if not management_id:
            return None  # discovery never reached the organization: nothing to attach a status to
        key = (management_id, SCP)
        tree = found.organization

        async def check() -> ScpResult:
            if discovery_error is not None:
                raise discovery_error  # the check reads the tree that discovery could not
            assert tree is not None  # organization mode: discovery walked it
            return await collect_scp(self.aws, self.settings, tree, previous.scp)

        outcome = await self.runner.run(
            management_id,
            SCP,
            check,
            previous=previous.status.get(key),
            # One unit of work for the whole organization, time-boxed like one account.
            timeout=self.settings.account_timeout_seconds,
            failed="SCP root-fence check failed; keeping the last result",
        )
        return Keyed(key, outcome)

    async def _collect_account(self, account: Account, previous: RootPosture | None = None) -> RootPosture:
        try:
            posture = await self._collect_account_once(account)
        except AwsError as exc:
            if exc.code not in EXPIRED_CODES:
                raise
            # Aws dropped the refused credentials: one more try with fresh ones.
            posture = await self._collect_account_once(account)
        return replace(posture, recovery=await self._recovery(account, previous))

    async def _recovery(self, account: Account, previous: RootPosture | None) -> Recovery:
        """The recovery controls' inputs; a contact that cannot be read never fails the posture."""
        settings = self.settings
        organization = settings.account_mode is AccountMode.organization
        allowed = settings.allowed_root_email_domains
        contact: SecurityContact | None = None
        # Organization mode reads every account from the management account (or delegated
        # administrator); single mode its own account. Roles mode would need the permission
        # in every member role: not read there.
        if settings.security_contact_check and settings.account_mode is not AccountMode.roles:
            # The contact changes rarely and Security Hub checks it every 12 or 24 h: one read
            # per account per max age, not one per sweep. Kept in the account's posture, so an
            # account that leaves the organization takes its answer with it.
            before = previous.recovery.security_contact if previous is not None and previous.recovery is not None else None
            now = self.clock()
            if before is not None and before.reusable(now, settings.security_contact_max_age_seconds):
                contact = before
            else:
                contact = await read_security_contact(self.aws, account.account_id, own_account=account.role_arn is None, now=now)
                if contact.reason is not None:
                    self._contact_failed(account.account_id, contact, previous)
        return Recovery(
            email_domain=account.root_email_domain or None,
            email_domain_allowed=domain_allowed(account.root_email_domain, allowed) if organization and allowed and account.root_email_domain else None,
            security_contact=contact,
        )

    def _contact_failed(self, account_id: str, contact: SecurityContact, previous: RootPosture | None) -> None:
        """Count and log an unreadable security contact, a warning only when its reason changes.

        Trusted access off fails every member the same way: the sweep says it once instead."""
        assert contact.reason is not None
        reason = "access_denied" if contact.reason == TRUSTED_ACCESS_DISABLED else contact.reason
        self.runner.count(account_id, SECURITY_CONTACT, reason)
        before = previous.recovery.security_contact if previous is not None and previous.recovery is not None else None
        if contact.reason == TRUSTED_ACCESS_DISABLED or (before is not None and before.reason == contact.reason):
            level = logging.DEBUG
        else:
            level = logging.WARNING
        log.log(
            level,
            "reading the security alternate contact failed; control security_contact_present is unknown",
            extra={"account_id": account_id, "collector": SECURITY_CONTACT, "reason": contact.reason, "error": contact.message},
        )

    async def _collect_account_once(self, account: Account) -> RootPosture:
        settings = self.settings
        if settings.assume_root_audit and account.role_arn is not None and not account.management:
            return await collect_with_assume_root(self.aws, account.account_id, account.partition)
        credentials = await self.aws.assume_role(account.role_arn) if account.role_arn else None
        return await collect_with_report(
            self.aws,
            account.account_id,
            credentials,
            settings.credential_report_max_age_seconds,
            settings.credential_report_wait_seconds,
            account.partition,
        )

    async def _organization_features(self, found: Discovery, previous: Snapshot) -> Keyed[OrganizationFeatures] | None:
        if self.settings.account_mode is not AccountMode.organization or not found.management_account_id:
            return None
        key = (found.management_account_id, ORG_FEATURES)

        outcome = await self.runner.run(
            found.management_account_id,
            ORG_FEATURES,
            lambda: read_organization_features(self.aws),
            previous=previous.status.get(key),
            timeout=None,
            failed="reading centralized root access features failed",
        )
        return Keyed(key, outcome)

    async def _own_account_id(self) -> str:
        """The exporter's own account (sts:GetCallerIdentity, remembered); "" when even STS fails."""
        if self._own_account is None:
            try:
                sts = await self.aws.client("sts")
                self._own_account = str((await self.aws.call(sts, "GetCallerIdentity"))["Account"])
            except Exception as exc:
                reason = classify_error(exc)
                # Without credentials the one line of Aws says it all, on every retry.
                level = logging.DEBUG if reason == "no_credentials" else logging.WARNING
                log.log(level, "cannot read the exporter's own account id", extra={"reason": reason, "error": str(exc)})
                return ""
        return self._own_account


def credentials_retry_delay(retries: int, interval: float) -> float:
    """Seconds before sweep retry number `retries` (1, 2, ...) while credentials are missing."""
    # The exponent is bounded: retries count up for as long as the credentials are missing.
    delay = CREDENTIALS_RETRY_FIRST_SECONDS * 2 ** min(retries - 1, 16)
    return min(delay, CREDENTIALS_RETRY_MAX_SECONDS, interval)


@dataclass(frozen=True, slots=True)
class Keyed(Generic[T]):
    """A collector's outcome under its (account id, collector) key."""

    key: tuple[str, str]
    outcome: Outcome[T]


@dataclass(frozen=True, slots=True)
class SweepResults:
    """Every collector's outcome of one sweep, before it becomes a `Snapshot`."""

    discovery: Keyed[Discovery] | None
    posture: dict[Account, Outcome[RootPosture]]
    features: Keyed[OrganizationFeatures] | None
    scp: Keyed[ScpResult] | None
    features_required: tuple[str, ...] = ()
    waive_mfa_hardware_when_fenced: bool = False

    def snapshot(self, found: Discovery, previous: Snapshot, duration: float) -> Snapshot:
        """The new snapshot: what succeeded now, and what was last known for what failed."""
        posture: dict[str, RootPosture] = {}
        status: dict[tuple[str, str], CollectorStatus] = {}
        for account, outcome in self.posture.items():
            status[(account.account_id, POSTURE)] = outcome.status
            if outcome.value is not None:
                posture[account.account_id] = outcome.value
            elif account.account_id in previous.posture:
                posture[account.account_id] = previous.posture[account.account_id]
        known = {account.account_id for account in self.posture}
        for key, value in previous.status.items():
            if key[1] == ORG_FEATURES and key[0] in known:
                status.setdefault(key, value)
        for keyed in (self.discovery, self.features, self.scp):
            if keyed is not None:
                status[keyed.key] = keyed.outcome.status
        features = self.features.outcome.value if self.features is not None else None
        scp = None
        if self.scp is not None:
            scp = self.scp.outcome.value or previous.scp
        posture = waive_mfa_hardware(posture, scp if self.waive_mfa_hardware_when_fenced else None)
        return Snapshot(
            accounts=tuple(found.accounts),
            posture=MappingProxyType(posture),
            status=MappingProxyType(status),
            discovered=found.discovered,
            skipped=MappingProxyType(dict(found.skipped)),
            skipped_accounts=tuple(found.skipped_accounts),
            organization_features=features if features is not None else previous.organization_features,
            organization_features_required=self.features_required,
            management_account_id=found.management_account_id,
            discovery_error=None if self.discovery is None or self.discovery.outcome.status.success else self.discovery.outcome.status.reason,
            sweep_duration=duration,
            completed_at=time.time(),
            scp=scp,
        )


def waive_mfa_hardware(posture: dict[str, RootPosture], scp: ScpResult | None) -> dict[str, RootPosture]:
    """Each posture with the `mfa_hardware` waiver set where `scp` (None: the waiver is off)
    fences the account's root, and cleared elsewhere: a posture kept from an earlier sweep
    (its account failed now) carries the waiver of the fence as it is now, never of then.

    Only `fenced` waives: `unknown`, `not_fenced` and `not_applicable` (the management
    account, to which no SCP applies) keep the control as measured. Applied here, where the
    posture and the fence of one sweep meet, so /metrics, `audit` and the alert read the
    same control result."""
    waived: dict[str, RootPosture] = {}
    for account_id, p in posture.items():
        fenced = scp is not None and scp.fence(account_id).state is FenceState.fenced
        waivers = {"mfa_hardware": MFA_HARDWARE_WAIVER} if fenced else {}
        waived[account_id] = p if p.waivers == waivers else replace(p, waivers=MappingProxyType(waivers))
    return waived


def freeze_long_lived() -> None:
    """Freeze (`gc.freeze`) what is alive after the first sweep that collected an account.

    What is alive then lives as long as the process: modules, botocore's service models (about
    60,000 OrderedDicts), clients, the HTTP server. A full collection walked them all, about
    85 ms at 1,000 accounts on the benchmark machine, holding the GIL, and a sweep's
    allocations set one off every second or two: a scrape that arrived then waited for it
    (docs/performance.md, What made it fast). Frozen, a full collection takes a few ms. Objects
    frozen here are still freed when their last reference goes; only a reference cycle among
    them outlives its use, once. Once per process, whichever sweeper gets there first.
    """
    global _frozen
    if _frozen:
        return  # once per process: the garbage collector is the process's, not one exporter's
    _frozen = True
    gc.collect()
    gc.freeze()


_frozen = False
