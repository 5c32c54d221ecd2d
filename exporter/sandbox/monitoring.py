"""The sandbox's monitoring plumbing, as docs/deployment.md deploys it, and delivery through it.

Seeded through moto's backends: an organization trail in the management account
(multi-region, logging, management events read and write) or, with `monitoring.trail:
per_account`, a trail per account and monitored region; in every account and monitored
region the forwarder rule (`aws-root-exporter-forwarder`, the generated
`eventbridge_pattern()`, state ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS) targeting the
central bus of the management account, whose rule sends to the root-activity queue.

A CloudTrail record is delivered the way AWS delivers it (EventBridge User Guide, "Events
from AWS services"): to LookupEvents history always; as an event on the default bus of its
account and region, matched by moto's rule matching, only while a trail records it there
(logging, with management events of its kind); in a trail file in the organization bucket,
announced on the notification queue, likewise. Each path after the scenario's delay, from a
scheduler thread stopped with the sandbox.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from exporter.config.settings import Settings
from exporter.sandbox.actions import ACTIONS

log = logging.getLogger("exporter.sandbox")

FORWARDER_RULE = Settings.model_fields["forwarder_rule_name"].default
CENTRAL_BUS = "aws-root-activity"
CENTRAL_RULE = "aws-root-activity-central"
ORGANIZATION_TRAIL = "organization-trail"
ACCOUNT_TRAIL = "management-events"
ALL_MANAGEMENT_EVENTS = [{"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": []}]


class Scheduler:
    """Runs callables at monotonic times on one thread; `clear()` forgets what is pending."""

    def __init__(self) -> None:
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sandbox-delivery", daemon=True)
        self._thread.start()

    def at(self, delay: float, action: Callable[[], None]) -> None:
        with self._condition:
            heapq.heappush(self._queue, (time.monotonic() + max(delay, 0.0), next(self._order), action))
            self._condition.notify()

    def clear(self) -> None:
        with self._condition:
            self._queue.clear()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._queue.clear()
            self._condition.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._condition.wait(None if not self._queue else self._queue[0][0] - time.monotonic())
                if self._stopped:
                    return
                _, _, action = heapq.heappop(self._queue)
            try:
                action()
            except Exception:  # one failed delivery must not end the others
                log.exception("sandbox delivery failed")


class Monitoring:
    def __init__(self, sandbox: Any) -> None:  # exporter.sandbox.server.Sandbox, which builds this
        self.sandbox = sandbox
        self.scheduler = Scheduler()

    @property
    def regions(self) -> list[str]:
        return self.sandbox.scenario.monitored_regions

    # -- the deployment ----------------------------------------------------------------------

    def seed(self) -> None:
        from moto.cloudtrail.models import cloudtrail_backends
        from moto.events.models import events_backends

        from exporter.activity.classify import eventbridge_pattern
        from exporter.sandbox import moto_ext
        from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID

        self.scheduler.clear()
        sandbox, scenario = self.sandbox, self.sandbox.scenario
        home = sandbox.region
        bucket = sandbox.trail_bucket
        pattern = json.dumps(eventbridge_pattern())
        if scenario.monitoring.trail == "organization":
            trail = cloudtrail_backends[MANAGEMENT_ACCOUNT_ID][home].create_trail(
                ORGANIZATION_TRAIL, bucket, None, None, True, True, True, True, None, None, None, []  # type: ignore[arg-type]
            )
            trail.put_event_selectors(ALL_MANAGEMENT_EVENTS, [])
            if scenario.monitoring.organization_trail == "logging":
                trail.start_logging()
        central = events_backends[MANAGEMENT_ACCOUNT_ID][home]
        bus = central.create_event_bus(CENTRAL_BUS)
        central.put_permission(
            CENTRAL_BUS, "events:PutEvents", "*", "OrganizationAccountsForwardRootActivity",
            {"Type": "StringEquals", "Key": "aws:PrincipalOrgID", "Value": sandbox.organization_id}, None,  # type: ignore[arg-type]
        )
        queue_arn = f"arn:{sandbox.partition}:sqs:{home}:{MANAGEMENT_ACCOUNT_ID}:{sandbox.events_queue_url.rsplit('/', 1)[-1]}"
        # Read-only events reach a rule only in this state, on a custom bus too (EventBridge
        # User Guide, "Receiving read-only management events"): the canary is read-only.
        central.put_rule(CENTRAL_RULE, event_bus_arn=CENTRAL_BUS, event_pattern=pattern, state=moto_ext.ENABLED_WITH_READ_ONLY)
        central.put_targets(CENTRAL_RULE, CENTRAL_BUS, [{"Id": "root-activity-queue", "Arn": queue_arn}])
        for account in scenario.all_accounts:
            own = account.monitoring
            applies = set(own.regions or self.regions)
            for region in self.regions:
                if scenario.monitoring.trail == "per_account":
                    trail = cloudtrail_backends[account.id][region].create_trail(
                        ACCOUNT_TRAIL, bucket, None, None, region == home, False, True, False, None, None, None, []  # type: ignore[arg-type]
                    )
                    trail.put_event_selectors(ALL_MANAGEMENT_EVENTS, [])
                    if not (region in applies and own.trail == "stopped"):
                        trail.start_logging()
                forwarder = own.forwarder if region in applies else "enabled"
                if forwarder == "missing":
                    continue
                state = {"enabled": moto_ext.ENABLED_WITH_READ_ONLY, "disabled": "DISABLED", "read_only_off": "ENABLED"}[forwarder]
                backend = events_backends[account.id][region]
                backend.put_rule(FORWARDER_RULE, event_pattern=pattern, state=state)
                backend.put_targets(FORWARDER_RULE, "default", [{"Id": "central-bus", "Arn": bus.arn}])
        for account in scenario.accounts:
            if account.monitoring.organization == "removed":
                self._leave(account.id)

    # -- delivery ------------------------------------------------------------------------------

    def deliver(self, record: dict[str, Any], *, lookup: bool = True, eventbridge: bool = True, s3: bool = True,
                delays: dict[str, float] | None = None) -> None:
        """Deliver a CloudTrail record through each path that records it now, after `delays`
        (seconds by source; none: at once)."""
        from exporter.sandbox import moto_ext

        delays = delays or {}
        account = str(record.get("recipientAccountId") or (record.get("userIdentity") or {}).get("accountId"))
        region = str(record.get("awsRegion") or self.sandbox.region)
        read_only = record.get("readOnly") is True
        if lookup:
            visible = datetime.now(timezone.utc) + timedelta(seconds=delays.get("lookup_events", 0.0))
            moto_ext.add_cloudtrail_record(account, region, record, visible_at=visible)
        if not self._modelled(account, region):
            self._unmodelled(record, account, region, eventbridge=eventbridge, s3=s3)
            return
        # Whether a trail records it is decided when the call is made, not when it arrives.
        trails = moto_ext.trail_delivers(account, region, read_only)
        if eventbridge and trails:
            from exporter.sandbox.records import eventbridge_envelope

            envelope = eventbridge_envelope(record)
            self._later(delays.get("eventbridge_sqs", 0.0), lambda: moto_ext.route_event(account, region, "default", envelope))
        organization = [t for t in trails if t.is_org_trail]
        if s3 and trails:
            self._later(delays.get("s3_trail", 0.0), lambda: self.sandbox.write_trail_file([record], account, region, organization=bool(organization)))

    def _modelled(self, account: str, region: str) -> bool:
        """Whether the sandbox deploys monitoring where the record was made: an account of the
        scenario, in a monitored region."""
        return region in self.regions and any(a.id == account for a in self.sandbox.scenario.all_accounts)

    def _unmodelled(self, record: dict[str, Any], account: str, region: str, *, eventbridge: bool, s3: bool) -> None:
        """A record of an account or region the scenario does not monitor (tests feed public
        fixtures of foreign accounts and regions): put on the paths as it is, as if a trail and
        a rule there had delivered it, in AWS's envelope."""
        from moto.sqs import sqs_backends

        from exporter.sandbox.records import eventbridge_envelope
        from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID

        if eventbridge:
            queue = self.sandbox.events_queue_url.rsplit("/", 1)[-1]
            sqs_backends[MANAGEMENT_ACCOUNT_ID][self.sandbox.region].send_message(queue, json.dumps(eventbridge_envelope(record)))
        if s3:
            self.sandbox.write_trail_file([record], account, region)

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        if delay <= 0:
            action()
        else:
            self.scheduler.at(delay, action)

    def canary(self, caller: dict[str, Any]) -> None:
        """The record of a GetCallerIdentity made to the sandbox, delivered after the scenario's delays."""
        from exporter.sandbox.records import caller_identity_record

        if not self.sandbox.scenario.monitoring.canaries:
            return
        role_id = None
        if caller.get("role_arn"):
            role_id = self._role_id(str(caller["account"]), str(caller["role_arn"]))
        record = caller_identity_record(caller, self.sandbox.partition, role_id=role_id)
        self.deliver(record, delays=self.sandbox.scenario.monitoring.delays.model_dump())

    def _role_id(self, account: str, role_arn: str) -> str | None:
        from moto.iam import iam_backends

        try:
            return str(iam_backends[account][self.sandbox.partition].get_role_by_arn(role_arn).id)
        except Exception:
            return None  # no such role in moto (the exporter's member role is not seeded): a stable made-up id

    # -- blinding ------------------------------------------------------------------------------

    def act(self, action: str, account: str, region: str | None = None) -> dict[str, Any]:
        """Make one of `ACTIONS` in (account, region) and deliver the record of the call."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        region = region or self.sandbox.region
        if region not in self.regions and action not in ("purge-queue", "remove-account", "restore-account"):
            raise ValueError(f"region {region} is not monitored by the running scenario; its regions are {', '.join(self.regions)}")
        return getattr(self, "_" + action.replace("-", "_"))(account, region)

    def _record(self, account: str, source: str, name: str, parameters: dict[str, Any], region: str) -> dict[str, Any]:
        from exporter.sandbox.records import management_call_record

        record = management_call_record(account, source, name, parameters, region=region, partition=self.sandbox.partition)
        self.deliver(record, delays=self.sandbox.scenario.monitoring.delays.model_dump())
        return record

    def _trails(self, account: str, region: str) -> list[Any]:
        from exporter.sandbox import moto_ext

        trails = moto_ext.covering_trails(account, region)
        own = [t for t in trails if t.account_id == account and not t.is_org_trail]
        if not (own or trails):
            raise ValueError(f"no trail records {account} in {region}")
        return own or trails

    def _stop_trail(self, account: str, region: str) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for trail in self._trails(account, region):
            # Recorded before logging stops: the StopLogging record itself still goes out.
            record = self._record(trail.account_id, "cloudtrail.amazonaws.com", "StopLogging", {"name": trail.arn}, trail.region_name)
            trail.stop_logging()
        return record

    def _start_trail(self, account: str, region: str) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for trail in self._trails(account, region):
            trail.start_logging()
            record = self._record(trail.account_id, "cloudtrail.amazonaws.com", "StartLogging", {"name": trail.arn}, trail.region_name)
        return record

    def _rule(self, account: str, region: str) -> Any:
        from moto.events.models import events_backends

        rule = events_backends[account][region].event_buses["default"].rules.get(FORWARDER_RULE)
        if rule is None:
            raise ValueError(f"{account} has no {FORWARDER_RULE} rule in {region}")
        return rule

    def _disable_rule(self, account: str, region: str) -> dict[str, Any]:
        record = self._record(account, "events.amazonaws.com", "DisableRule", {"name": FORWARDER_RULE}, region)
        self._rule(account, region).disable()
        return record

    def _set_state(self, account: str, region: str, state: str) -> dict[str, Any]:
        rule = self._rule(account, region)
        record = self._record(account, "events.amazonaws.com", "PutRule", {"name": FORWARDER_RULE, "state": state,
                                                                              "eventPattern": json.dumps(rule.event_pattern.get_pattern())}, region)
        rule.state = state
        return record

    def _rule_read_only_off(self, account: str, region: str) -> dict[str, Any]:
        return self._set_state(account, region, "ENABLED")

    def _enable_rule(self, account: str, region: str) -> dict[str, Any]:
        from exporter.sandbox import moto_ext

        return self._set_state(account, region, moto_ext.ENABLED_WITH_READ_ONLY)

    def _purge_queue(self, account: str, region: str) -> dict[str, Any]:
        from moto.sqs import sqs_backends

        from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID

        url = self.sandbox.events_queue_url
        record = self._record(MANAGEMENT_ACCOUNT_ID, "sqs.amazonaws.com", "PurgeQueue", {"queueUrl": url}, self.sandbox.region)
        sqs_backends[MANAGEMENT_ACCOUNT_ID][self.sandbox.region].purge_queue(url.rsplit("/", 1)[-1])
        return record

    def _remove_account(self, account: str, region: str) -> dict[str, Any]:
        from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID

        if account == MANAGEMENT_ACCOUNT_ID:
            raise ValueError("the management account cannot leave its organization")
        record = self._record(MANAGEMENT_ACCOUNT_ID, "organizations.amazonaws.com", "RemoveAccountFromOrganization",
                              {"accountId": account}, self.sandbox.region)
        self._leave(account)
        return record

    def _leave(self, account: str) -> None:
        from moto.organizations.models import organizations_backends

        from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID

        org = organizations_backends[MANAGEMENT_ACCOUNT_ID][self.sandbox.partition]
        if any(a.id == account for a in org.accounts):
            self._removed[account] = org.get_account_by_id(account)
            org.remove_account_from_organization(AccountId=account)

    @property
    def _removed(self) -> dict[str, Any]:
        from moto.organizations.models import organizations_backends

        from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID

        # Kept on moto's backend, so that moto's reset forgets it with the organization.
        backend = organizations_backends[MANAGEMENT_ACCOUNT_ID][self.sandbox.partition]
        if not hasattr(backend, "sandbox_removed"):
            backend.sandbox_removed = {}  # type: ignore[attr-defined]
        return backend.sandbox_removed  # type: ignore[no-any-return]

    def _restore_account(self, account: str, region: str) -> dict[str, Any]:
        from moto.organizations.models import organizations_backends

        from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID

        removed = self._removed.pop(account, None)
        if removed is None:
            raise ValueError(f"account {account} has not left the organization")
        org = organizations_backends[MANAGEMENT_ACCOUNT_ID][self.sandbox.partition]
        org.accounts.append(removed)
        organizations_backends.master_accounts[account] = (MANAGEMENT_ACCOUNT_ID, self.sandbox.partition)
        return self._record(account, "organizations.amazonaws.com", "AcceptHandshake", {"handshakeId": "h-sandbox"}, self.sandbox.region)
