"""Classify one CloudTrail record as root activity, or not.

`classify(record, windows)` is a pure function: no I/O, no clock, no logging. It returns a
`Verdict` for root activity and for `sts:AssumeRoot` calls, `None` for everything else,
and raises `MalformedRecord` (a `ValueError`) only for a record that would be root
activity but cannot be used (no `eventID`, no parsable `eventTime`, no account id...).
An irrelevant record is `None` even when incomplete, so a trail full of other principals'
records never inflates `aws_root_exporter_events_rejected_total`.

Rules (see /work/shared/reference/aws-root-facts.md sections 1, 2 and 4, and README.md,
"What counts as root activity"):

* Root activity: `userIdentity.type == "Root"` and `eventType != "AwsServiceEvent"`, never
  by user name (an IAM user called `root` is `IAMUser`). `userIdentity.invokedBy` excludes
  the record only when it names an AWS service acting in the account (`*.amazonaws.com`):
  `signin.amazonaws.com` means the request came from the AWS console, a person signed in
  as root, and `AWS Internal` is what AWS writes when the console's own back end relays a
  person's request; both stay root activity (a null or empty value counts as absent).
* Account: `userIdentity.accountId`, the account whose root acted (for a cross-account
  call CloudTrail writes one copy per account, both with this account id), then
  `recipientAccountId`. `shared_event_id` carries `sharedEventID` so the store counts the
  pair of copies once.
* Kind: `signin.amazonaws.com` `ConsoleLogin` is `console_login`; any other sign-in record
  is `signin_other` with a bounded `signin_event`; everything else is `api_call`. A
  non-root `sts.amazonaws.com` `AssumeRoot` record is `assume_root_call`, attributed to the
  TARGET account (`"unknown"` when the request names none). The classifier cannot know
  which account is the management account, and a delegated administrator may call
  AssumeRoot too, so every non-root caller counts. A non-root record that reopens a root's
  recovery path (`RECOVERY_SIGNALS`) is `recovery_signal`.
* Outcome of a sign-in record: `responseElements[eventName]` (`"Success"`/`"Failure"`),
  then the error fields.
* `mfa_kind` (console logins only, `None` otherwise): the factor the root signed in with,
  from `additionalEventData.MFAIdentifier`, the device's serial (AWS CloudTrail User Guide,
  sign-in examples): an IAM ARN whose resource starts `u2f/` is `u2f` (a FIDO security key
  or a passkey), `mfa/` is `totp` (a virtual device); a bare serial of letters and digits is
  `totp` too, because AWS names a hardware device by its serial and a virtual one by its
  ARN (IAM API `ListMFADevices`, STS `GetSessionToken` `SerialNumber`: "GAHT12345678"), and
  FIDO keys have `u2f/` ARNs, so a bare serial is a hardware TOTP token. `none` when the
  login used no MFA (`mfa` false); `unknown` when MFA was used or may have been but the
  identifier is missing or of another form. Case-insensitive, as AWS varies case.
* `assumed_root` (an action inside a centralized-root-access privileged session, not a
  person holding root credentials) needs positive evidence:
    1. the record's `userIdentity.accessKeyId` was issued, for this account, by an
       `AssumeRoot` record already seen (`assume_root_keys`), or
    2. the Root record itself carries `sessionContext.assumedRoot: "true"`.
  A root GetSessionToken or console session also has an `ASIA` key and a
  `sessionContext`; without evidence the record is root use. When the record could still
  be an AssumeRoot session whose `AssumeRoot` record is late (an `ASIA` key, not a console
  session, an action a root-task policy allows), `awaiting_key` names the key: the
  service may hold it for a bounded wait before counting it as root use.
* `category` (api calls only): `break_glass` for the root-only tasks, else `read_only`
  (`readOnly` true, or a Get/List/Describe/Head name when `readOnly` is missing), else
  `administrative`.
* `approved`: the record's `eventTime` is inside a configured window for the verdict's
  account (start and end inclusive). Never approved outside a window.

Example:

    >>> from exporter.activity.classify import classify
    >>> v = classify({"eventID": "e1", "eventTime": "2026-01-01T10:00:00Z",
    ...   "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
    ...   "eventType": "AwsConsoleSignIn", "recipientAccountId": "111122223333",
    ...   "userIdentity": {"type": "Root", "accountId": "111122223333"},
    ...   "responseElements": {"ConsoleLogin": "Success"},
    ...   "additionalEventData": {"MFAUsed": "YES"}})
    >>> (v.kind, v.outcome, v.mfa, v.mfa_kind)
    ('console_login', 'success', 'true', 'unknown')
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from exporter.activity.assume_root_keys import AssumeRootKeys, IssuedKey, issued_key
from exporter.activity.records import parse_event_time
from exporter.activity.tamper import tamper_pattern
from exporter.config.settings import BreakGlassWindow
from exporter.monitoring.canary import canary_pattern

Kind = Literal["console_login", "signin_other", "api_call", "assume_root_call", "recovery_signal"]
Outcome = Literal["success", "failure"]
Mfa = Literal["true", "false", "unknown"]
MfaKind = Literal["u2f", "totp", "none", "unknown"]
Category = Literal["break_glass", "read_only", "administrative"]

KINDS: tuple[str, ...] = ("console_login", "signin_other", "api_call", "assume_root_call", "recovery_signal")
OUTCOMES: tuple[str, ...] = ("success", "failure")
MFA_VALUES: tuple[str, ...] = ("true", "false", "unknown")
# Strongest first: the order in which a required sign-in factor accepts them.
MFA_KINDS: tuple[str, ...] = ("u2f", "totp", "none", "unknown")
CATEGORIES: tuple[str, ...] = ("break_glass", "read_only", "administrative")
SIGNIN_EVENTS: tuple[str, ...] = (
    "PasswordRecoveryRequested",
    "PasswordUpdated",
    "CheckMfa",
    "ExternalIdPDirectoryLogin",
    "GetSigninToken",
    "other",
)
TASK_POLICIES: tuple[str, ...] = (
    "IAMAuditRootUserCredentials",
    "IAMCreateRootUserPassword",
    "IAMDeleteRootUserCredentials",
    "S3UnlockBucketPolicy",
    "SQSUnlockQueuePolicy",
    "other",
)
UNKNOWN_ACCOUNT = "unknown"
ACCOUNT = "account.amazonaws.com"
# Changes that make a root usable again (a new recovery email, centralized root access
# switched off, a root password re-created), by (eventSource, eventName) -> signal label.
RECOVERY_SIGNALS: dict[tuple[str, str], str] = {
    (ACCOUNT, "StartPrimaryEmailUpdate"): "primary_email_update_started",
    (ACCOUNT, "AcceptPrimaryEmailUpdate"): "primary_email_updated",
    ("iam.amazonaws.com", "DisableOrganizationsRootCredentialsManagement"): "root_credentials_management_disabled",
    ("iam.amazonaws.com", "DisableOrganizationsRootSessions"): "root_sessions_disabled",
    ("iam.amazonaws.com", "CreateLoginProfile"): "root_password_created",
}
SIGNALS: tuple[str, ...] = tuple(RECOVERY_SIGNALS.values())


def eventbridge_pattern() -> dict[str, Any]:
    """The EventBridge rule pattern that delivers every record the classifier uses: Root
    records, the AssumeRoot calls that vouch for privileged-task sessions, and the
    recovery signals made by IAM principals (root `CreateLoginProfile` is a Root record);
    every record `exporter.activity.tamper.classify_tamper` may use, by any principal; and
    the exporter's own canaries (exporter.monitoring.canary), which prove the rule and
    its path deliver (README, Proof of sight)."""
    by_source: dict[str, list[str]] = {}
    for (source, name), signal in RECOVERY_SIGNALS.items():
        if signal != "root_password_created":
            by_source.setdefault(source, []).append(name)
    return {
        "$or": [
            {"detail": {"userIdentity": {"type": ["Root"]}}},
            {"detail": {"eventSource": [STS], "eventName": ["AssumeRoot"]}},
            *({"detail": {"eventSource": [source], "eventName": names}} for source, names in sorted(by_source.items())),
            *tamper_pattern(),
            canary_pattern(),
        ]
    }

SIGNIN = "signin.amazonaws.com"
STS = "sts.amazonaws.com"
IAM = "iam.amazonaws.com"
S3 = "s3.amazonaws.com"
SQS = "sqs.amazonaws.com"

_ACCOUNT_ID = re.compile(r"^\d{12}$")
# An MFA device ARN: arn:<partition>:iam::<account>:<u2f|mfa>/<name>.
_MFA_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:(u2f|mfa)/\S+$", re.IGNORECASE)
# A hardware token's serial as AWS prints it (GAHT12345678, GAKT12345678): letters and digits.
_HARDWARE_SERIAL = re.compile(r"^[A-Z0-9]{6,64}$", re.IGNORECASE)
_ARN_ACCOUNT = re.compile(r"^arn:aws[\w-]*:[\w-]*::(\d{12}):")
_READ_ONLY_PREFIXES = ("Get", "List", "Describe", "Head")

# Actions the five AWS-managed root-task policies allow, as CloudTrail event names. Only
# these can be an AssumeRoot session's work, so only these are worth holding while an
# AssumeRoot record may still be on its way; anything else is root use at once.
_ROOT_TASK_ACTIONS: frozenset[tuple[str, str]] = frozenset(
    [(IAM, name) for name in (
        "GetAccountSummary", "GetUser", "GetLoginProfile", "ListAccessKeys",
        "GetAccessKeyLastUsed", "ListSigningCertificates", "ListMFADevices",
        "CreateLoginProfile", "DeleteLoginProfile", "DeleteAccessKey",
        "DeleteSigningCertificate", "DeactivateMFADevice",
    )]
    + [(S3, name) for name in ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy", "ListBuckets")]
    + [(SQS, name) for name in ("GetQueueAttributes", "SetQueueAttributes", "ListQueues")]
    + [(STS, "GetCallerIdentity")]
)

# Root-only tasks that a record identifies without looking at its parameters. The
# billing / tax / support activations are left out on purpose: their event names are
# unverified, and guessing would mark ordinary administrative use as expected.
_BREAK_GLASS_ANY_SOURCE = frozenset({"CloseAccount", "EmailUpdated", "PasswordUpdated", "PasswordRecoveryRequested"})
_BREAK_GLASS_PLAIN: frozenset[tuple[str, str]] = frozenset(
    {
        ("account.amazonaws.com", "PutAccountName"),
        (S3, "DeleteBucketPolicy"),
        (S3, "PutBucketPolicy"),
        (SQS, "SetQueueAttributes"),
        (SQS, "RemovePermission"),
    }
)
# IAM acts on the caller's own credentials when these calls name no user: made as root,
# they manage root's access keys (documented), and by the same rule root's signing
# certificates and password, which likewise only root (or an AssumeRoot session) can touch.
_ROOT_OWN_CREDENTIAL_TASKS = frozenset(
    {
        "CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey",
        "UploadSigningCertificate", "UpdateSigningCertificate", "DeleteSigningCertificate",
        "CreateLoginProfile", "UpdateLoginProfile", "DeleteLoginProfile",
    }
)
_ROOT_MFA_TASKS = frozenset({"EnableMFADevice", "DeactivateMFADevice", "ResyncMFADevice"})
_ROOT_MFA_USER = "AWS ROOT USER"


class MalformedRecord(ValueError):
    """A record that would be root activity but cannot be used; the message says why."""

    def __init__(self, reason: str, event_id: str | None = None):
        super().__init__(reason if event_id is None else f"{reason} (eventID {event_id})")
        self.reason = reason
        self.event_id = event_id


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one root (or AssumeRoot) record means. Every string field is a bounded value
    fit for a label, except `event_id`, `event_name`, `event_source`, `source_ip`,
    `region` and `error_code`, which are copied from the record."""

    event_id: str
    account_id: str
    event_time: datetime
    event_name: str
    event_source: str
    kind: Kind
    outcome: Outcome
    mfa: Mfa
    category: Category | None
    assumed_root: bool
    approved: bool
    source_ip: str
    signin_event: str | None
    task_policy: str | None
    region: str
    error_code: str
    shared_event_id: str = ""
    awaiting_key: str | None = None
    recovery_signal: str | None = None
    mfa_kind: MfaKind | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the classify CLI's output line)."""
        data = asdict(self)
        data["event_time"] = self.event_time.isoformat().replace("+00:00", "Z")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """The inverse of `to_json` (the state file's pending records); ValueError on bad data."""
        if not isinstance(data, Mapping):
            raise ValueError("a verdict is not an object")
        fields = dict(data)
        try:
            fields["event_time"] = datetime.fromisoformat(str(fields["event_time"]))
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad verdict ({exc})") from None


def classify(
    record: Mapping[str, Any],
    windows: Sequence[BreakGlassWindow] = (),
    assume_root_keys: AssumeRootKeys | None = None,
) -> Verdict | None:
    """Classify one CloudTrail record; see the module docstring for the rules.
    `assume_root_keys`: the keys issued by AssumeRoot records seen so far (none when None)."""
    if not isinstance(record, Mapping):
        raise MalformedRecord(f"record is a {type(record).__name__}, not a JSON object")
    identity = record.get("userIdentity")
    if not isinstance(identity, Mapping):
        if record.get("eventType") in ("AwsCloudTrailInsight", "AwsServiceEvent"):
            return None  # records that may lack an identity and are never root activity
        raise MalformedRecord("userIdentity is missing or not an object", _event_id_hint(record))
    identity_type = identity.get("type")
    event_source = record.get("eventSource")
    event_name = record.get("eventName")

    if event_source == STS and event_name == "AssumeRoot" and identity_type != "Root":
        return _assume_root_call(record, identity, windows)
    if identity_type != "Root":
        named = isinstance(event_source, str) and isinstance(event_name, str)
        signal = RECOVERY_SIGNALS.get((event_source, event_name)) if named else None
        # Root CreateLoginProfile is a Root record; an IAM user's new password is nothing here.
        if signal is not None and signal != "root_password_created":
            return _recovery_signal(record, identity, windows)
        return None
    if _service_invoked(identity.get("invokedBy")):
        return None
    if record.get("eventType") == "AwsServiceEvent":
        return None
    return _root_activity(record, identity, windows, assume_root_keys)


def assume_root_evidence(record: Any) -> tuple[str, IssuedKey] | None:
    """The access key a successful, non-root `sts:AssumeRoot` record issued, with its target
    account and task policy. Read also from a record `classify` rejects (AWS's own example
    in "Track privileged tasks" has no eventID): the evidence is the credentials, not the
    record's bookkeeping."""
    if not isinstance(record, Mapping):
        return None
    identity = record.get("userIdentity")
    if not isinstance(identity, Mapping) or identity.get("type") == "Root":
        return None
    if record.get("eventSource") != STS or record.get("eventName") != "AssumeRoot" or _has_error(record):
        return None
    params = record.get("requestParameters")
    params = params if isinstance(params, Mapping) else {}
    target = _target_account(params.get("targetPrincipal"))
    if target == UNKNOWN_ACCOUNT:
        return None
    return issued_key(record, target, _task_policy(params.get("taskPolicyArn")))


def _service_invoked(invoked_by: Any) -> bool:
    """True when `invokedBy` names an AWS service acting in the account (Auto Scaling, ELB,
    CloudFormation...): that is not a person. The console (`signin.amazonaws.com`),
    `AWS Internal` and anything unrecognised stay root activity: hiding a person is worse
    than reporting a service."""
    if not isinstance(invoked_by, str) or not invoked_by:
        return False
    return invoked_by != SIGNIN and invoked_by.endswith(".amazonaws.com")


def _recovery_signal(record: Mapping[str, Any], identity: Mapping[str, Any], windows: Sequence[BreakGlassWindow]) -> Verdict:
    event_id, event_time = _id_and_time(record)
    event_source, event_name = str(record["eventSource"]), str(record["eventName"])
    params = record.get("requestParameters")
    params = params if isinstance(params, Mapping) else {}
    # The account API names the member whose email changes; without it, the caller's own.
    target = params.get("accountId", params.get("AccountId"))
    account_id = target if isinstance(target, str) and _ACCOUNT_ID.match(target) else _account_id(record, identity)
    if account_id is None:
        raise MalformedRecord("a recovery signal without a 12-digit account id", event_id)
    return _verdict(
        record, identity, windows, event_id, event_time, account_id, event_source, event_name,
        kind="recovery_signal",
        outcome=_api_outcome(record),
        recovery_signal=RECOVERY_SIGNALS[(event_source, event_name)],
    )


def _assume_root_call(record: Mapping[str, Any], identity: Mapping[str, Any], windows: Sequence[BreakGlassWindow]) -> Verdict:
    event_id, event_time = _id_and_time(record)
    params = record.get("requestParameters")
    params = params if isinstance(params, Mapping) else {}
    target = _target_account(params.get("targetPrincipal"))
    return _verdict(
        record, identity, windows, event_id, event_time, target, STS, "AssumeRoot",
        kind="assume_root_call",
        outcome=_api_outcome(record),
        task_policy=_task_policy(params.get("taskPolicyArn")),
    )


def _root_activity(
    record: Mapping[str, Any],
    identity: Mapping[str, Any],
    windows: Sequence[BreakGlassWindow],
    keys: AssumeRootKeys | None,
) -> Verdict:
    event_id, event_time = _id_and_time(record)
    event_source = record.get("eventSource")
    event_name = record.get("eventName")
    if not isinstance(event_source, str) or not event_source:
        raise MalformedRecord("eventSource is missing or not a string", event_id)
    if not isinstance(event_name, str) or not event_name:
        raise MalformedRecord("eventName is missing or not a string", event_id)
    account_id = _account_id(record, identity)
    if account_id is None:
        raise MalformedRecord("neither userIdentity.accountId nor recipientAccountId is a 12-digit account id", event_id)

    signin_event: str | None = None
    category: Category | None = None
    if event_source == SIGNIN and event_name == "ConsoleLogin":
        kind: Kind = "console_login"
        outcome = _signin_outcome(record, event_name)
    elif event_source == SIGNIN:
        kind = "signin_other"
        outcome = _signin_outcome(record, event_name)
        signin_event = event_name if event_name in SIGNIN_EVENTS else "other"
    else:
        kind = "api_call"
        outcome = _api_outcome(record)
        category = _category(record, event_source, event_name)

    assumed_root, awaiting_key = _assumed_root(record, identity, account_id, event_source, event_name, keys)
    signal = RECOVERY_SIGNALS.get((event_source, event_name))
    if signal == "root_password_created" and not _no_user_name(record):
        signal = None  # root gave an IAM user a password: administrative, not root's own
    return _verdict(
        record, identity, windows, event_id, event_time, account_id, event_source, event_name,
        kind=kind,
        outcome=outcome,
        category=category,
        assumed_root=assumed_root,
        signin_event=signin_event,
        awaiting_key=awaiting_key,
        recovery_signal=signal,
        mfa_kind=_mfa_kind(record, identity) if kind == "console_login" else None,
    )


def _verdict(
    record: Mapping[str, Any],
    identity: Mapping[str, Any],
    windows: Sequence[BreakGlassWindow],
    event_id: str,
    event_time: datetime,
    account_id: str,
    event_source: str,
    event_name: str,
    **specific: Any,
) -> Verdict:
    """A verdict with the fields every kind reads the same way from the record; `specific`
    gives the kind and what only that kind knows."""
    fields: dict[str, Any] = dict(category=None, assumed_root=False, signin_event=None, task_policy=None)
    fields.update(specific)
    return Verdict(
        event_id=event_id,
        account_id=account_id,
        event_time=event_time,
        event_name=event_name,
        event_source=event_source,
        mfa=_mfa(record, identity),
        approved=_approved(account_id, event_time, windows),
        source_ip=_text(record.get("sourceIPAddress")),
        region=_text(record.get("awsRegion")),
        error_code=_text(record.get("errorCode")),
        shared_event_id=_text(record.get("sharedEventID")),
        **fields,
    )


def _event_id_hint(record: Mapping[str, Any]) -> str | None:
    value = record.get("eventID")
    return value if isinstance(value, str) and value else None


def _id_and_time(record: Mapping[str, Any]) -> tuple[str, datetime]:
    event_id = record.get("eventID")
    if event_id is None or event_id == "":
        # AWS's own documentation examples (the AssumeRoot call in "Track privileged tasks")
        # omit eventID. Dropping such a record would hide root use, so it gets an id from its
        # content: the same record delivered twice still counts once.
        event_id = "content-sha256:" + hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
    elif not isinstance(event_id, str):
        raise MalformedRecord("eventID is not a string")
    return event_id, _event_time(record.get("eventTime"), event_id)


def _event_time(value: Any, event_id: str) -> datetime:
    parsed = parse_event_time(value)
    if parsed is not None:
        return parsed
    if isinstance(value, str):
        raise MalformedRecord(f"eventTime {value[:40]!r} is not an ISO 8601 time", event_id)
    raise MalformedRecord("eventTime is missing or not a string", event_id)


def _account_id(record: Mapping[str, Any], identity: Mapping[str, Any]) -> str | None:
    # The acting account first: a cross-account call's copy in the resource owner's trail
    # names that owner as recipientAccountId, yet it was the other account's root.
    for value in (identity.get("accountId"), record.get("recipientAccountId")):
        if isinstance(value, str) and _ACCOUNT_ID.match(value):
            return value
    return None


def _target_account(value: Any) -> str:
    if isinstance(value, str):
        if _ACCOUNT_ID.match(value):
            return value
        match = _ARN_ACCOUNT.match(value)
        if match:
            return match.group(1)
    # A rejected call may carry no usable target; it is still an AssumeRoot attempt.
    return UNKNOWN_ACCOUNT


def _task_policy(value: Any) -> str:
    # The API takes a PolicyDescriptorType ({"arn": ...}); accept a bare ARN string too.
    if isinstance(value, Mapping):
        value = value.get("arn")
    if isinstance(value, str):
        name = value.rsplit("/", 1)[-1]
        if name in TASK_POLICIES:
            return name
    return "other"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _has_error(record: Mapping[str, Any]) -> bool:
    return any(record.get(key) not in (None, "") for key in ("errorCode", "errorMessage"))


def _api_outcome(record: Mapping[str, Any]) -> Outcome:
    return "failure" if _has_error(record) else "success"


def _signin_outcome(record: Mapping[str, Any], event_name: str) -> Outcome:
    # Every sign-in record states its outcome under its own name ({"ConsoleLogin":
    # "Failure"}, {"PasswordUpdated": "Failure"}), sometimes with no errorCode at all.
    response = record.get("responseElements")
    if isinstance(response, Mapping):
        value = response.get(event_name)
        if isinstance(value, str):
            if value.lower() == "success":
                return "success"
            if value.lower() == "failure":
                return "failure"
    return _api_outcome(record)


def _mfa(record: Mapping[str, Any], identity: Mapping[str, Any]) -> Mfa:
    extra = record.get("additionalEventData")
    if isinstance(extra, Mapping):
        used = extra.get("MFAUsed")
        # AWS's root example says "YES", IAM users get "Yes".
        if isinstance(used, str) and used.lower() in ("yes", "no"):
            return "true" if used.lower() == "yes" else "false"
    context = identity.get("sessionContext")
    attributes = context.get("attributes") if isinstance(context, Mapping) else None
    if isinstance(attributes, Mapping):
        value = attributes.get("mfaAuthenticated")
        if value is True or value is False:
            return "true" if value else "false"
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return "true" if value.lower() == "true" else "false"
    return "unknown"


def _mfa_kind(record: Mapping[str, Any], identity: Mapping[str, Any]) -> MfaKind:
    extra = record.get("additionalEventData")
    identifier = extra.get("MFAIdentifier") if isinstance(extra, Mapping) else None
    if isinstance(identifier, str) and identifier.strip():
        identifier = identifier.strip()
        arn = _MFA_ARN.match(identifier)
        if arn:
            return "u2f" if arn.group(1).lower() == "u2f" else "totp"
        if _HARDWARE_SERIAL.match(identifier):
            return "totp"
        return "unknown"
    # No identifier: a login without MFA says so; anything else cannot name its factor.
    return "none" if _mfa(record, identity) == "false" else "unknown"


def _assumed_root(
    record: Mapping[str, Any],
    identity: Mapping[str, Any],
    account_id: str,
    event_source: str,
    event_name: str,
    keys: AssumeRootKeys | None,
) -> tuple[bool, str | None]:
    """(privileged-task action, key whose AssumeRoot record is still awaited)."""
    context = identity.get("sessionContext")
    if isinstance(context, Mapping) and _is_true(context.get("assumedRoot")):
        return True, None
    key = identity.get("accessKeyId")
    if keys is not None and keys.lookup(key, account_id) is not None:
        return True, None
    could_be_task = (
        isinstance(key, str)
        and key.startswith("ASIA")
        and not _is_true(record.get("sessionCredentialFromConsole"))
        and identity.get("invokedBy") in (None, "")
        and event_source != SIGNIN
        and (event_source, event_name) in _ROOT_TASK_ACTIONS
    )
    return False, key if could_be_task else None


def _no_user_name(record: Mapping[str, Any]) -> bool:
    params = record.get("requestParameters")
    return not isinstance(params, Mapping) or params.get("userName") in (None, "")


def _category(record: Mapping[str, Any], event_source: str, event_name: str) -> Category:
    if _is_break_glass(record, event_source, event_name):
        return "break_glass"
    read_only = record.get("readOnly")
    if isinstance(read_only, bool):
        return "read_only" if read_only else "administrative"
    if isinstance(read_only, str) and read_only.lower() in ("true", "false"):
        return "read_only" if read_only.lower() == "true" else "administrative"
    return "read_only" if event_name.startswith(_READ_ONLY_PREFIXES) else "administrative"


def _is_break_glass(record: Mapping[str, Any], event_source: str, event_name: str) -> bool:
    if event_name in _BREAK_GLASS_ANY_SOURCE or (event_source, event_name) in _BREAK_GLASS_PLAIN:
        return True
    params = record.get("requestParameters")
    params = params if isinstance(params, Mapping) else {}
    if event_source == IAM and event_name in _ROOT_OWN_CREDENTIAL_TASKS:
        # With a userName, root is managing an IAM user's credentials: administrative.
        return _no_user_name(record)
    if event_source == IAM and event_name in _ROOT_MFA_TASKS:
        return params.get("userName") in (None, "", _ROOT_MFA_USER)
    if event_source == S3 and event_name == "PutBucketVersioning":
        config = params.get("VersioningConfiguration")
        return isinstance(config, Mapping) and "MfaDelete" in config
    return False


def _approved(account_id: str, event_time: datetime, windows: Sequence[BreakGlassWindow]) -> bool:
    return any(w.account_id == account_id and w.start <= event_time <= w.end for w in windows)
