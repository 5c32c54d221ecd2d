"""Where root records come from: CloudTrail LookupEvents, EventBridge via SQS, the S3 trail.

Every source hands raw CloudTrail records to `ActivityService.take()`, which classifies
them with the one pure classifier and feeds the one `EventStore` (dedup by eventID across
all sources). The AWS calls go through `exporter.aws.client.Aws` like every other call.

When to use which (see README): the EventBridge queue is the only path that meets a
5-minute time to alert; LookupEvents needs no AWS-side setup besides the member role and
gives the 90-day history; the organization trail covers every account and region of a
large organization with no per-account polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from exporter.discovery.accounts import Account
from exporter.aws.client import Aws, AwsError
from exporter.aws.partitions import global_region
from exporter.config.settings import Settings
from exporter.engine.runner import CollectorRunner, attempt
from exporter.engine.state import CollectorStatus, ExporterState
from exporter.activity.assume_root_keys import IssuedKey
from exporter.activity.classify import RECOVERY_SIGNALS, MalformedRecord, Verdict, assume_root_evidence, classify
from exporter.activity.records import Record, S3ObjectRef, parse_cloudtrail_object, parse_sqs_message
from exporter.activity.store import EventStore
from exporter.activity.tamper import TamperScope, TamperVerdict, classify_tamper
from exporter.monitoring.canary import EVENT_NAME as CANARY_EVENT_NAME
from exporter.monitoring.canary import is_canary, record_account
from exporter.monitoring.coverage import Coverage, monitored_regions

log = logging.getLogger(__name__)

LOOKUP = "lookup_events"
EVENTBRIDGE = "eventbridge_sqs"
S3_TRAIL = "s3_trail"
# At most 2 LookupEvents requests per second per account and region (AWS's limit): a
# little over half a second between requests keeps any 1-second window at 2 or fewer.
LOOKUP_SPACING_SECONDS = 0.55
# One ReceiveMessage attempt may take its long poll (sqs_wait_seconds) plus this long (the
# SQS client's read timeout): past it the attempt counts as hung and is retried; when every
# attempt hangs the poll fails with reason `timeout` and the loop backs off. (Before, the
# read timeout was 30 s whatever the long poll: with a short poll a hung receive went
# unnoticed for 30 s per attempt.) Messages a lost answer carried come back after their
# visibility timeout.
SQS_RECEIVE_GRACE_SECONDS = 10.0
# Records by IAM principals (not root) that the classifier uses, read from the management
# account: the AssumeRoot calls that vouch for privileged-task sessions, and the
# recovery-path changes (root CreateLoginProfile is a Root record, found by Username=root).
MANAGEMENT_EVENT_NAMES: tuple[str, ...] = (
    "AssumeRoot",
    *(name for (_, name), signal in RECOVERY_SIGNALS.items() if signal != "root_password_created"),
)


class RateLimiter:
    """One call at a time per key, each starting `spacing` seconds after the previous one ended.

    Spacing the starts is not enough: a request held up on its way out (a busy event loop,
    a slow connection) can reach AWS right behind the next one, and AWS counts arrivals.
    A request sent only after the previous answer came back arrived after that one did.
    """

    def __init__(self, spacing: float) -> None:
        self.spacing = spacing
        self._next: dict[Any, float] = {}
        self._locks: dict[Any, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def slot(self, key: Any) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            delay = self._next.get(key, 0.0) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                yield
            finally:
                self._next[key] = time.monotonic() + self.spacing


# The scope of the running configuration, built once per (forwarder_rule_name, queue URLs):
# a reload assigns the fields of the one Settings object in place, so its identity says nothing.
_tamper_scope = functools.lru_cache(maxsize=4)(TamperScope.of)


def _queue_region(url: str, default: str) -> str:
    match = re.match(r"^https?://sqs\.([a-z0-9-]+)\.amazonaws\.com", url)
    return match.group(1) if match else default


def _queue_account(url: str) -> str:
    match = re.search(r"/(\d{12})/[^/]+$", url)
    return match.group(1) if match else ""


class ActivityService:
    def __init__(self, aws: Aws, settings: Settings, state: ExporterState, store: EventStore, coverage: Coverage | None = None) -> None:
        self.aws = aws
        self.settings = settings
        self.state = state
        self.store = store
        # Where the canaries that come back are reported; None when canaries are off.
        self.coverage = coverage
        # Per account and region, until when LookupEvents has read the canaries (in memory:
        # after a restart only the canaries that can still prove anything are read).
        self._canary_checkpoints: dict[tuple[str, str], datetime] = {}
        self.limiter = RateLimiter(LOOKUP_SPACING_SECONDS)
        self.runner = CollectorRunner(state)
        state.listeners.append(self._accounts_known)
        aws.assume_root_listeners.append(self._own_assume_root_session)

    def _accounts_known(self, accounts: Iterable[Account]) -> None:
        self.store.register_accounts(a.account_id for a in accounts)

    def _own_assume_root_session(self, account_id: str, task_policy_arn: str, credentials: Any) -> None:
        # The exporter's own audit session: its records in the member account are
        # privileged tasks even when no source delivers the AssumeRoot record.
        issued = IssuedKey(account_id, task_policy_arn.rsplit("/", 1)[-1], credentials.expiration.timestamp())
        for released in self.store.learn_key(credentials.access_key_id, issued, datetime.now(timezone.utc)):
            self._log(released, "held")

    # -- the one way in ------------------------------------------------------------------

    def take(self, record: Mapping[str, Any], source: str, location: str = "") -> Verdict | None:
        """Classify and store one record; a malformed record is counted, never raised.

        A successful AssumeRoot record teaches the store the key it issued (and releases
        the records held for it); a Root record that could be such a session but whose
        AssumeRoot record is not known yet is held for `assume_root_evidence_wait_seconds`
        (see README, What counts as root activity)."""
        seen_at = datetime.now(timezone.utc)
        # The exporter's own canary: proof the path delivers, never root activity nor rejected.
        if self.coverage is not None and is_canary(record, self.coverage.known_arns(), self.settings.role_session_name):
            self._canary_seen(record, source, seen_at)
            return None
        evidence = assume_root_evidence(record)
        if evidence is not None:
            for released in self.store.learn_key(*evidence, seen_at):
                self._log(released, source)
        # Any principal; a set lookup on eventName first, so every record of the trail may pass.
        # Rules and queues count only when they are this configuration's (README, Monitoring
        # tamper records): an organization's own EventBridge and SQS changes must not page.
        settings = self.settings
        scope = _tamper_scope(settings.forwarder_rule_name, settings.eventbridge_queue_url, settings.s3_trail_queue_url)
        tamper = classify_tamper(record, scope)
        try:
            verdict = classify(record, self.settings.break_glass_windows, self.store.assume_root_keys)
        except MalformedRecord as exc:
            # A record that would be root activity but cannot be used: fail closed, it pages.
            self.store.reject(source, "malformed_root_record")
            log.warning("malformed CloudTrail record", extra={"source": source, "location": location, "reason": str(exc)})
            verdict = None
        if tamper is not None:
            self._take_tamper(tamper, source, seen_at, also_root=verdict is not None)
        if verdict is None:
            return None
        wait = timedelta(seconds=self.settings.assume_root_evidence_wait_seconds)
        if verdict.awaiting_key is not None and wait > timedelta(0):
            self.store.hold(verdict, source, seen_at, wait)
            return verdict
        if self.store.ingest(verdict, source, seen_at):
            self._log(verdict, source)
        return verdict

    def _take_tamper(self, tamper: TamperVerdict, source: str, seen_at: datetime, also_root: bool) -> None:
        # The root path counts the duplicate of a Root record that also tampers.
        if self.store.ingest_tamper(tamper, source, seen_at, count_duplicate=not also_root):
            when = tamper.event_time or seen_at
            # One line per tamper record for the SIEM, with every verdict field.
            log.warning("monitoring tamper", extra={**tamper.to_json(), "source": source, "counted": when >= self.store.counting_from})

    def _canary_seen(self, record: Mapping[str, Any], source: str, seen_at: datetime) -> None:
        assert self.coverage is not None
        try:
            event_time = datetime.fromisoformat(str(record["eventTime"]).replace("Z", "+00:00")).timestamp()
        except (KeyError, ValueError):
            log.debug("canary record without a usable eventTime", extra={"source": source, "event_id": record.get("eventID")})
            return
        self.coverage.seen(record_account(record), str(record.get("awsRegion", "")), source, str(record.get("eventID", "")), event_time, seen_at.timestamp())

    def release_held(self) -> None:
        """Count as root use the held records whose AssumeRoot evidence did not come in time."""
        for verdict in self.store.release_due(datetime.now(timezone.utc)):
            self._log(verdict, "held")

    def _log(self, verdict: Verdict, source: str) -> None:
        # One line per root record for the SIEM, with every verdict field.
        log.warning(
            "root activity",
            extra={**verdict.to_json(), "source": source, "counted": verdict.event_time >= self.store.counting_from},
        )

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        tasks = []
        if self.settings.lookup_events_enabled:
            tasks.append(self._lookup_loop())
        if self.settings.eventbridge_queue_url:
            tasks.append(self._sqs_loop(self.settings.eventbridge_queue_url, EVENTBRIDGE))
        if self.settings.s3_trail_queue_url:
            tasks.append(self._sqs_loop(self.settings.s3_trail_queue_url, S3_TRAIL))
        if self.settings.state_file is not None:
            tasks.append(self._save_loop())
        tasks.append(self._release_loop())
        try:
            await asyncio.gather(*tasks)
        finally:
            if self.settings.state_file is not None:
                await asyncio.to_thread(self.store.save, self.settings.state_file)

    async def _release_loop(self) -> None:
        # A tenth of the wait (at least every second, at most every 10 s) bounds how late a
        # held record is counted past its wait.
        period = min(max(self.settings.assume_root_evidence_wait_seconds / 10, 1.0), 10.0)
        while True:
            self.release_held()
            await asyncio.sleep(period)

    async def _save_loop(self) -> None:
        assert self.settings.state_file is not None
        while True:
            await asyncio.sleep(self.settings.state_save_interval_seconds)
            try:
                await asyncio.to_thread(self.store.save, self.settings.state_file)
            except OSError as exc:
                log.error("cannot write the state file", extra={"path": str(self.settings.state_file), "error": str(exc)})

    def _settle(self, key: tuple[str, str], status: CollectorStatus) -> None:
        previous = self.state.live_status.get(key)
        self.state.live_status[key] = status
        if status.success and previous is not None and previous.success:
            # Steady success (an empty SQS receive every few seconds) must not force a
            # re-render of every account's health series; its times show with the next
            # change, or within the minute (the health section's key).
            return
        # After the status is in place: a scrape that sees the new version sees the status.
        self.state.changed()

    # -- LookupEvents ----------------------------------------------------------------------

    async def _lookup_loop(self) -> None:
        while not self.state.ready.is_set():
            await asyncio.sleep(0.2)
        while True:
            started = time.monotonic()
            await self.poll_lookup_events()
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(self.settings.lookup_events_interval_seconds - elapsed, 1.0))

    async def poll_lookup_events(self) -> None:
        """One LookupEvents pass over every account and region, then one over their canaries
        (bounded concurrency). Two passes, not one per account: LookupEvents allows each account
        and region 2 requests a second, so an account's second request waits
        LOOKUP_SPACING_SECONDS, and waiting while holding one of the `concurrency` slots made a
        cycle at 10,000 accounts take about 200 s instead of 20 (benchmark, docs/performance.md).
        A whole pass lies between an account's two requests now."""
        snapshot = self.state.snapshot
        accounts = [a for a in snapshot.accounts if a.role_arn is not None or not self.settings.assume_root_audit or a.management]
        await self._each(accounts, lambda a: self._lookup_account(a, management=a.account_id == snapshot.management_account_id), self._lookup_regions)
        if self.coverage is not None:
            await self._each(accounts, self._lookup_account_canaries, self._canary_regions)

    async def _each(self, accounts: list[Account], work: Callable[[Account], Awaitable[None]], regions: Callable[[Account], list[str]]) -> None:
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        async def one(account: Account) -> None:
            key = (account.account_id, LOOKUP)
            async with semaphore:
                outcome = await self.runner.run(
                    account.account_id,
                    LOOKUP,
                    lambda: work(account),
                    previous=self.state.live_status.get(key),
                    timeout=self.settings.account_timeout_seconds * len(regions(account)),
                    failed="activity collection failed",
                )
            self._settle(key, outcome.status)

        await asyncio.gather(*(one(a) for a in accounts))

    async def _lookup_account(self, account: Account, management: bool) -> None:
        credentials = await self.aws.assume_role(account.role_arn) if account.role_arn else None
        for region in self._lookup_regions(account):
            async with self.aws.member_client("cloudtrail", credentials, region) as client:
                key = f"{LOOKUP}:{account.account_id}:{region}"
                poll_started = datetime.now(timezone.utc)
                checkpoint = self.store.get_checkpoint(key)
                if checkpoint:
                    start = datetime.fromisoformat(checkpoint) - timedelta(seconds=self.settings.lookup_events_overlap_seconds)
                else:
                    start = poll_started - timedelta(days=self.settings.lookup_events_history_days)
                # Root records by user name, then filtered on userIdentity.type by the classifier
                # (an IAM user literally named "root" matches the lookup but is not root).
                attributes = [{"AttributeKey": "Username", "AttributeValue": "root"}]
                await self._lookup(client, account.account_id, region, attributes, start, poll_started)
                if management:
                    # AssumeRoot calls and the recovery-path changes are made by IAM principals
                    # of the management account; LookupEvents takes one event name per call.
                    for event_name in MANAGEMENT_EVENT_NAMES:
                        attributes = [{"AttributeKey": "EventName", "AttributeValue": event_name}]
                        await self._lookup(client, account.account_id, region, attributes, start, poll_started)
                if not checkpoint:
                    self.store.note_history(account.account_id, start)
                self.store.set_checkpoint(key, poll_started.isoformat())

    async def _lookup_account_canaries(self, account: Account) -> None:
        credentials = await self.aws.assume_role(account.role_arn) if account.role_arn else None
        for region in self._canary_regions(account):
            async with self.aws.member_client("cloudtrail", credentials, region) as client:
                await self._lookup_canaries(client, account.account_id, region)

    def _canary_regions(self, account: Account) -> list[str]:
        return monitored_regions(self.settings, account.partition) if self.coverage is not None else []

    async def _lookup_canaries(self, client: Any, account_id: str, region: str) -> None:
        """The canaries in the account and region's event history (by event name: the lookup
        takes one attribute, and `take` keeps only the exporter's). Never further back than a
        canary can still prove its path (Coverage.limit)."""
        assert self.coverage is not None
        now = datetime.now(timezone.utc)
        window = timedelta(seconds=self.coverage.limit(LOOKUP))
        start = now - window
        checkpoint = self._canary_checkpoints.get((account_id, region))
        if checkpoint is not None:
            start = max(start, checkpoint - timedelta(seconds=self.settings.lookup_events_overlap_seconds))
        attributes = [{"AttributeKey": "EventName", "AttributeValue": CANARY_EVENT_NAME}]
        await self._lookup(client, account_id, region, attributes, start, now)
        self._canary_checkpoints[(account_id, region)] = now

    def _lookup_regions(self, account: Account) -> list[str]:
        """The configured regions, else the one where the account's partition records root
        sign-ins and IAM calls (GovCloud roots cannot sign in to the console at all: there
        only their API calls are found)."""
        return self.settings.lookup_events_regions or [global_region(account.partition)]

    async def _lookup(self, client: Any, account_id: str, region: str, attributes: list[dict[str, str]], start: datetime, end: datetime) -> None:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"LookupAttributes": attributes, "StartTime": start, "EndTime": end, "MaxResults": 50}
            if token:
                params["NextToken"] = token
            async with self.limiter.slot((account_id, region)):
                page = await self.aws.call(client, "LookupEvents", **params)
            for event in page.get("Events", []):
                raw = event.get("CloudTrailEvent")
                try:
                    record = json.loads(raw) if isinstance(raw, str) else None
                except ValueError:
                    record = None
                if not isinstance(record, dict):
                    self.store.reject(LOOKUP, "malformed_record")
                    continue
                self.take(record, LOOKUP, f"LookupEvents {account_id} {region}")
            token = page.get("NextToken")
            if not token:
                return

    # -- SQS: EventBridge events and S3 trail notifications ---------------------------------

    async def _sqs_loop(self, queue_url: str, source: str) -> None:
        key = (_queue_account(queue_url), source)
        region = _queue_region(queue_url, self.aws.region)
        failures = 0

        async def poll() -> int:
            # Inside the attempt: without credentials there is no client yet, and that is a
            # failure of this source to back off from, not a crash of the loop.
            sqs = await self.aws.client("sqs", region, read_timeout=self.settings.sqs_wait_seconds + SQS_RECEIVE_GRACE_SECONDS)
            return await self.poll_queue(sqs, queue_url, source)

        while True:
            _, error = await attempt(poll, None)
            if error is None:
                failures = 0
                self._settle(key, CollectorStatus(True, time.time()))
                continue
            previous = self.state.live_status.get(key)
            self._settle(key, self.runner.failure(key[0], source, error, previous, None, "activity collection failed"))
            failures += 1
            # Back off on a failing queue, up to a minute, so errors do not spin.
            await asyncio.sleep(min(2 ** min(failures, 6), 60))

    async def poll_queue(self, sqs: Any, queue_url: str, source: str) -> int:
        """Receive one batch; delete each message once processed (or proven unusable)."""
        response = await self.aws.call(
            sqs,
            "ReceiveMessage",
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.settings.sqs_wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        done: list[dict[str, str]] = []
        for message in response.get("Messages", []):
            try:
                finished = await self._process_message(message, source)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # anything unexpected: leave it for redelivery
                log.warning("SQS message processing failed", extra={"source": source, "message_id": message.get("MessageId"), "error": str(exc)})
                finished = False
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            if not finished and receives >= self.settings.sqs_max_receives:
                # A message that keeps failing must not block the queue forever.
                self.store.reject(source, "poison")
                log.error("dropping a message that failed repeatedly", extra={"source": source, "message_id": message.get("MessageId"), "receives": receives})
                finished = True
            if finished:
                done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
        if done:
            if self.settings.state_file is not None:
                # What these messages added must be on disk before SQS forgets them.
                await asyncio.to_thread(self.store.save, self.settings.state_file)
            await self.aws.call(sqs, "DeleteMessageBatch", QueueUrl=queue_url, Entries=done)
        return len(response.get("Messages", []))

    async def _process_message(self, message: Mapping[str, Any], source: str) -> bool:
        """True when the message is fully processed (or can never be); False to retry later."""
        parsed = parse_sqs_message(str(message.get("Body", "")), str(message.get("MessageId", "")))
        for error in parsed.errors:
            self.store.reject(source, "malformed_message")
            log.warning("unusable SQS message", extra={"source": source, "location": error.location, "reason": error.reason})
        for record in parsed.records:
            self.take(record.data, source, record.location)
        ok = True
        for ref in parsed.objects:
            ok = await self._fetch_trail_file(ref, source) and ok
        return ok

    async def _fetch_trail_file(self, ref: S3ObjectRef, source: str) -> bool:
        s3 = await self.aws.client("s3")
        try:
            response = await self.aws.call(s3, "GetObject", Bucket=ref.bucket, Key=ref.key)
            async with response["Body"] as stream:
                data = await stream.read()
        except AwsError as exc:
            self.store.reject(source, "fetch_failed")
            log.warning("cannot read a trail log file", extra={"object": str(ref), "reason": exc.reason, "error": str(exc)})
            return False
        for item in parse_cloudtrail_object(data, ref):
            if isinstance(item, Record):
                self.take(item.data, source, item.location)
            else:
                self.store.reject(source, "malformed_record")
                log.warning("malformed trail log content", extra={"location": item.location, "reason": item.reason})
        return True
