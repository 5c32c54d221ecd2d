"""Classify one CloudTrail record as tampering with the exporter's sight, or not.

`classify_tamper(record)` is a pure function: no I/O, no clock, no logging, never raises. It
returns a `TamperVerdict` for a call, by ANY principal (root too), that can blind a
CloudTrail-based monitor, and `None` for everything else. A denied or failed call counts
too (`outcome` `failure`): someone tried. The first test is a set lookup on `eventName`, so
running it on every record of an organization trail costs next to nothing.

What counts (the calls of `TAMPER_EVENTS`, parameter names from botocore's service models
`cloudtrail`, `events`, `sqs` and `organizations`, as CloudTrail writes them in
`requestParameters`):

* CloudTrail `StopLogging`, `DeleteTrail`: always. EventBridge gets `AWS API Call via
  CloudTrail` events only where a trail is logging (EventBridge User Guide, "Events from
  AWS services"), and the organization trail's S3 files stop too.
* CloudTrail `UpdateTrail` that sets any of `isMultiRegionTrail` (the trail logs its home
  region only), `includeGlobalServiceEvents` (IAM, STS and sign-in records, where root
  activity is, are global service events: CloudTrail User Guide, "Global service events")
  or `isOrganizationTrail` (every member account drops out of the trail) to false. Other
  UpdateTrail parameters are not tampering here: a new `s3BucketName`, `snsTopicName` or
  `kmsKeyId` cannot be told from the same value sent again (the console sends every field
  on each save), and whether the trail still delivers is what the configuration checks
  read. An UpdateTrail that names only the trail changes nothing.
* CloudTrail `PutEventSelectors` whose selectors no longer record every management event,
  read AND write (CloudTrail API Reference, EventSelector, AdvancedEventSelector,
  AdvancedFieldSelector). Basic selectors: the read/write types of the selectors with
  `includeManagementEvents` (default true) must together be `All` (`readWriteType` default
  `All`; a `ReadOnly` and a `WriteOnly` selector together count as All). Advanced
  selectors: the selectors with `eventCategory` Equals `Management` must together cover
  read and write (a `readOnly` Equals `true`/`false` field narrows one to reads or writes);
  a management selector with any other narrowing field counts for nothing (fail closed),
  except `eventSource` NotEquals `kms.amazonaws.com` / `rdsdata.amazonaws.com`, the only
  exclusion AWS allows for management events (as `excludeManagementEventSources` is for
  basic selectors): KMS and RDS Data API records are not where root sign-ins, IAM calls or
  the canary are. There is no `PutAdvancedEventSelectors` API: advanced selectors arrive
  as `PutEventSelectors` with `advancedEventSelectors`.
* EventBridge `DisableRule`, `DeleteRule`, `RemoveTargets` (`events.amazonaws.com`) of a
  rule of the monitoring's (a CloudFormation stack deleting the forwarder is a service
  acting, and counts all the same), and SQS `PurgeQueue`, `DeleteQueue`, and
  `SetQueueAttributes` whose `attributes` hold `Policy` (an empty policy removes it) of a
  queue of the monitoring's: see "Scope" below.
* Organizations `LeaveOrganization`, `RemoveAccountFromOrganization`, and
  `DisableAWSServiceAccess` whose `servicePrincipal` is `cloudtrail.amazonaws.com`
  (trusted access off: the organization trail stops covering member accounts).

Look-alikes are `None`: another service's call of the same name (WAF or Recycle Bin
`DeleteRule`, MediaConvert `DeleteQueue`), `StartLogging`, `CreateTrail`, `Describe*` /
`Get*` / `List*`, selectors that keep every management event, `SetQueueAttributes` without
`Policy`, `DisableAWSServiceAccess` for another service.

Account (`account_id`): the account whose monitoring the call affects, which is the
account whose trail recorded it (`recipientAccountId`), then the caller's
(`userIdentity.accountId`); for `RemoveAccountFromOrganization` the removed account
(`requestParameters.accountId`). A cross-account call (an SQS PurgeQueue a queue policy
allows) writes one copy per account: each copy counts for its own account.

Scope: which rules and queues are the monitoring's (`TamperScope`, from the settings). An
organization that uses EventBridge and SQS changes its own rules and queues every day
(CDK, Terraform): those calls cannot blind the monitor and must not page. With a scope:

* a rule counts when its name is `forwarder_rule_name` (the forwarder stack's rule and the
  central stack's rule on the default bus share it), on any bus; or when it is on a bus
  other than `default` in the account of `eventbridge_queue_url`: the central stack makes
  the queue and the central bus together, and its rule on that bus has a name
  CloudFormation generates. `DisableRule` and `DeleteRule` name the rule in `name`,
  `RemoveTargets` in `rule`, the bus in `eventBusName` (a name or an ARN; absent: the
  default bus), as botocore's `events` model names them.
* a queue counts when its account and name are those of `eventbridge_queue_url` or
  `s3_trail_queue_url`. `queueUrl` is matched by its path (`/<account>/<name>`), not its
  host: one queue has several URLs (`sqs.<region>.amazonaws.com`,
  `<region>.queue.amazonaws.com`, `queue.amazonaws.com`, a VPC or a local endpoint), and
  AWS's own example records write `sqs.<region>.amazon.com`.
* a record whose rule name, bus or queue URL is missing or is not of the model's form
  counts (fail closed), and so does a custom-bus rule change whose account is unknown.
* CloudTrail and Organizations calls are not narrowed: any logging trail may be the one
  that covers a monitored region (an organization trail, a member's own trail), and
  there is one organization.

Without a scope (`None`: the settings are unknown, e.g. `aws-root-exporter classify`
without `--config`), every rule and queue counts: nothing proves a change benign.

Fail closed: a tamper record with no usable `eventID` gets an id from its content (as the
root classifier does), one without a parsable `eventTime` has `event_time` None (the store
counts it as seen when it arrives), one without a 12-digit account is counted for
`unknown`. An unusable tamper record is still someone blinding the monitor.

    >>> v = classify_tamper({"eventID": "e1", "eventTime": "2024-07-31T13:06:24Z",
    ...   "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging",
    ...   "recipientAccountId": "111122223333", "requestParameters": {"name": "org-trail"},
    ...   "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/x"}})
    >>> (v.account_id, v.event_name, v.outcome, v.detail)
    ('111122223333', 'StopLogging', 'success', 'trail org-trail')
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from exporter.activity.records import parse_event_time

if TYPE_CHECKING:
    from exporter.config.settings import Settings

Outcome = Literal["success", "failure"]

CLOUDTRAIL = "cloudtrail.amazonaws.com"
EVENTS = "events.amazonaws.com"
SQS = "sqs.amazonaws.com"
ORGANIZATIONS = "organizations.amazonaws.com"
UNKNOWN_ACCOUNT = "unknown"

# By event source, the calls that may blind the monitor, in the order the README lists them.
TAMPER_EVENTS: dict[str, tuple[str, ...]] = {
    CLOUDTRAIL: ("StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors"),
    EVENTS: ("DisableRule", "DeleteRule", "RemoveTargets"),
    SQS: ("PurgeQueue", "DeleteQueue", "SetQueueAttributes"),
    ORGANIZATIONS: ("LeaveOrganization", "RemoveAccountFromOrganization", "DisableAWSServiceAccess"),
}
TAMPER_EVENT_NAMES: frozenset[str] = frozenset(name for names in TAMPER_EVENTS.values() for name in names)

# UpdateTrail flags whose false value narrows what the trail records.
_TRAIL_FLAGS = ("isMultiRegionTrail", "includeGlobalServiceEvents", "isOrganizationTrail")
# The management event sources AWS lets a trail leave out (EventSelector.ExcludeManagementEventSources).
_EXCLUDABLE_SOURCES = frozenset({"kms.amazonaws.com", "rdsdata.amazonaws.com"})
_READ, _WRITE = "read", "write"
_ACCOUNT_ID = re.compile(r"^\d{12}$")
# botocore's `events` model: RuleName, and EventBusNameOrArn (the ARN's prefix is optional).
_RULE_NAME = re.compile(r"[.\-_A-Za-z0-9]{1,64}")
_BUS = re.compile(r"(?:arn:aws[\w-]*:events:[a-z0-9-]+:\d{12}:event-bus/)?([/.\-_A-Za-z0-9]+)")
DEFAULT_BUS = "default"
# Any scheme and host (see "Scope"), then /<account>/<queue name> (SQS: up to 80 of
# letters, digits, - and _, FIFO queues end in .fifo).
_QUEUE_URL = re.compile(r"[A-Za-z][\w+.-]*://[^/?#]+/(\d{12})/([\w-]{1,80}(?:\.fifo)?)/?")


@dataclass(frozen=True, slots=True)
class TamperVerdict:
    """One call that can blind the monitor. `account_id`, `event_name` and `outcome` are
    bounded (label values); the rest is copied from the record for the log line."""

    account_id: str
    event_name: str
    outcome: Outcome
    event_id: str
    event_time: datetime | None
    event_source: str
    region: str
    principal_arn: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the classify CLI's line and the log line)."""
        data = asdict(self)
        data["event_time"] = None if self.event_time is None else self.event_time.isoformat().replace("+00:00", "Z")
        return data


@dataclass(frozen=True, slots=True)
class TamperScope:
    """The EventBridge rules and SQS queues that are the monitoring's own (see "Scope" in the
    module docstring). `queues` holds (account id, queue name) pairs; `central_account` is
    the account of the EventBridge queue, where the central bus is (None: no such queue)."""

    rule_names: frozenset[str]
    queues: frozenset[tuple[str, str]]
    central_account: str | None

    @classmethod
    def of(cls, forwarder_rule_name: str, eventbridge_queue_url: str | None, s3_trail_queue_url: str | None) -> TamperScope:
        """The scope of one configuration: its forwarder rule name and its two queue URLs."""
        events_queue, trail_queue = _queue_id(eventbridge_queue_url), _queue_id(s3_trail_queue_url)
        queues = frozenset(q for q in (events_queue, trail_queue) if q is not None)
        return cls(frozenset({forwarder_rule_name}), queues, events_queue[0] if events_queue else None)

    @classmethod
    def from_settings(cls, settings: Settings) -> TamperScope:
        return cls.of(settings.forwarder_rule_name, settings.eventbridge_queue_url, settings.s3_trail_queue_url)

    def covers(self, event_name: str, params: Mapping[str, Any], account_id: str) -> bool:
        """Whether a tamper call on a rule or queue touches the monitoring's own; True for
        every other tamper call (CloudTrail, Organizations) and for anything unparsable."""
        if event_name in TAMPER_EVENTS[EVENTS]:
            return self._covers_rule(params.get("rule" if event_name == "RemoveTargets" else "name"), params.get("eventBusName"), account_id)
        if event_name in TAMPER_EVENTS[SQS]:
            queue = _queue_id(params.get("queueUrl"))
            return queue is None or queue in self.queues
        return True

    def _covers_rule(self, rule: Any, bus: Any, account_id: str) -> bool:
        if not isinstance(rule, str) or not _RULE_NAME.fullmatch(rule) or rule in self.rule_names:
            return True
        if bus is None:
            return False  # the default bus, and not the forwarder rule
        match = _BUS.fullmatch(bus) if isinstance(bus, str) else None
        if match is None:
            return True
        return match.group(1) != DEFAULT_BUS and account_id in (self.central_account, UNKNOWN_ACCOUNT)


def tamper_pattern() -> list[dict[str, Any]]:
    """The EventBridge pattern pieces that deliver every record `classify_tamper` may use,
    by any principal: one `{"detail": {"eventSource": [...], "eventName": [...]}}` per
    service. The parameters, and whether a rule or queue is the monitoring's, are judged
    here, not in the rule: the templates carry this pattern whatever their rule and queue
    names, the central rule's name is CloudFormation's, a queue has several URL hosts, and
    a reload may change `forwarder_rule_name` without redeploying every account's rule."""
    return [{"detail": {"eventSource": [source], "eventName": list(names)}} for source, names in TAMPER_EVENTS.items()]


def classify_tamper(record: Any, scope: TamperScope | None = None) -> TamperVerdict | None:
    """The tamper verdict of one CloudTrail record, or None; see the module docstring.
    `scope` None: every rule and queue is the monitoring's (fail closed)."""
    name = record.get("eventName") if isinstance(record, Mapping) else None
    if not isinstance(name, str) or name not in TAMPER_EVENT_NAMES:
        return None
    source = record.get("eventSource")
    if not isinstance(source, str) or name not in TAMPER_EVENTS.get(source, ()):
        return None
    params = record.get("requestParameters")
    params = params if isinstance(params, Mapping) else {}
    detail = _JUDGES[name](params)
    if detail is None:
        return None
    identity = record.get("userIdentity")
    identity = identity if isinstance(identity, Mapping) else {}
    account_id = _account(record, identity, name, params)
    if scope is not None and not scope.covers(name, params, account_id):
        return None
    return TamperVerdict(
        account_id=account_id,
        event_name=name,
        outcome="failure" if any(record.get(k) not in (None, "") for k in ("errorCode", "errorMessage")) else "success",
        event_id=_event_id(record),
        event_time=parse_event_time(record.get("eventTime")),
        event_source=str(source),
        region=_text(record.get("awsRegion")),
        principal_arn=_text(identity.get("arn")) or _text(identity.get("invokedBy")),
        detail=detail,
    )


# --- what each call must carry to count: a short detail for the log, or None -------------


def _trail(params: Mapping[str, Any]) -> str | None:
    return f"trail {_text(params.get('name')) or '?'}"


def _update_trail(params: Mapping[str, Any]) -> str | None:
    off = [flag for flag in _TRAIL_FLAGS if _is_false(params.get(flag))]
    return f"trail {_text(params.get('name')) or '?'}: {', '.join(f'{flag}=false' for flag in off)}" if off else None


def _event_selectors(params: Mapping[str, Any]) -> str | None:
    trail = _text(params.get("trailName")) or "?"
    advanced = params.get("advancedEventSelectors")
    if isinstance(advanced, list):
        covered = set().union(*(_advanced_coverage(s) for s in advanced)) if advanced else set()
    else:
        basic = params.get("eventSelectors")
        if not isinstance(basic, list):
            return None  # neither kind: the call cannot change what the trail records
        covered = set().union(*(_basic_coverage(s) for s in basic)) if basic else set()
    missing = {_READ, _WRITE} - covered
    if not missing:
        return None
    what = "management events off" if missing == {_READ, _WRITE} else f"{' and '.join(sorted(missing))} management events off"
    return f"trail {trail}: {what}"


def _basic_coverage(selector: Any) -> set[str]:
    if not isinstance(selector, Mapping) or _is_false(selector.get("includeManagementEvents", True)):
        return set()
    kind = selector.get("readWriteType", "All")
    return {"All": {_READ, _WRITE}, "ReadOnly": {_READ}, "WriteOnly": {_WRITE}}.get(kind, set()) if isinstance(kind, str) else set()


def _advanced_coverage(selector: Any) -> set[str]:
    fields = selector.get("fieldSelectors") if isinstance(selector, Mapping) else None
    if not isinstance(fields, list):
        return set()
    covered = {_READ, _WRITE}
    management = False
    for field in fields:
        if not isinstance(field, Mapping):
            return set()
        name = field.get("field")
        operators = {k: v for k, v in field.items() if k != "field"}
        if name == "eventCategory" and operators == {"equals": ["Management"]}:
            management = True
        elif name == "readOnly" and set(operators) == {"equals"} and isinstance(operators["equals"], list):
            values = {str(v).lower() for v in operators["equals"]}
            covered &= ({_READ} if "true" in values else set()) | ({_WRITE} if "false" in values else set())
        elif name == "eventSource" and set(operators) == {"notEquals"} and _strings(operators["notEquals"]) <= _EXCLUDABLE_SOURCES:
            continue
        else:
            return set()  # any other narrowing: fail closed, this selector vouches for nothing
    return covered if management else set()


def _leave(_: Mapping[str, Any]) -> str | None:
    return "the account leaves the organization"


def _rule(params: Mapping[str, Any]) -> str | None:
    rule = _text(params.get("name")) or _text(params.get("rule")) or "?"
    return f"rule {rule} on bus {_text(params.get('eventBusName')) or DEFAULT_BUS}"


def _queue(params: Mapping[str, Any]) -> str | None:
    return f"queue {_text(params.get('queueUrl')) or '?'}"


def _queue_policy(params: Mapping[str, Any]) -> str | None:
    attributes = params.get("attributes")
    if not isinstance(attributes, Mapping) or "Policy" not in attributes:
        return None
    return f"queue {_text(params.get('queueUrl')) or '?'}: Policy {'removed' if not attributes['Policy'] else 'changed'}"


def _removed_account(params: Mapping[str, Any]) -> str | None:
    return f"account {_text(params.get('accountId')) or '?'} removed"


def _service_access(params: Mapping[str, Any]) -> str | None:
    return "trusted access for cloudtrail.amazonaws.com off" if params.get("servicePrincipal") == CLOUDTRAIL else None


_JUDGES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "StopLogging": _trail,
    "DeleteTrail": _trail,
    "UpdateTrail": _update_trail,
    "PutEventSelectors": _event_selectors,
    "DisableRule": _rule,
    "DeleteRule": _rule,
    "RemoveTargets": _rule,
    "PurgeQueue": _queue,
    "DeleteQueue": _queue,
    "SetQueueAttributes": _queue_policy,
    "LeaveOrganization": _leave,
    "RemoveAccountFromOrganization": _removed_account,
    "DisableAWSServiceAccess": _service_access,
}
if set(_JUDGES) != TAMPER_EVENT_NAMES:
    raise ImportError("every tamper event needs exactly one judge")


# --- the record's bookkeeping, failing closed ---------------------------------------------


def _account(record: Mapping[str, Any], identity: Mapping[str, Any], name: str, params: Mapping[str, Any]) -> str:
    candidates = [record.get("recipientAccountId"), identity.get("accountId")]
    if name == "RemoveAccountFromOrganization":
        candidates.insert(0, params.get("accountId"))
    for value in candidates:
        if isinstance(value, str) and _ACCOUNT_ID.match(value):
            return value
    return UNKNOWN_ACCOUNT


def _event_id(record: Mapping[str, Any]) -> str:
    value = record.get("eventID")
    if isinstance(value, str) and value:
        return value
    return "content-sha256:" + hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _queue_id(url: Any) -> tuple[str, str] | None:
    match = _QUEUE_URL.fullmatch(url) if isinstance(url, str) else None
    return (match.group(1), match.group(2)) if match else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> set[str]:
    """The strings of a JSON list; anything else (or a list holding other things) is not a
    set of event sources, and gives one that matches nothing allowed."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return set(value)
    return {"?"}


def _is_false(value: Any) -> bool:
    # CloudTrail writes JSON booleans; a record re-serialised by a tool may carry "false".
    return value is False or (isinstance(value, str) and value.lower() == "false")
