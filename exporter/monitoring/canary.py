"""The canary: the exporter's own `sts:GetCallerIdentity` calls, recognised when their
CloudTrail records come back through an activity source. Pure: no I/O, no clock.

Why this call, and what AWS documents about it:
- It needs no IAM permission and cannot be denied ("No permissions are required to perform
  this operation", STS API Reference, GetCallerIdentity,
  https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html): a
  canary never fails because a policy forgot it.
- CloudTrail logs every authenticated STS request (IAM User Guide, "Logging IAM and AWS STS
  API calls with AWS CloudTrail",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/cloudtrail-integration.html). Its record is
  a read-only management event (`readOnly: true`, `managementEvent: true`,
  `eventCategory: Management` in real records, tests/fixtures/canary/).
- A call to a regional STS endpoint is recorded in that region ("If you activate AWS STS
  endpoints in Regions other than the default global endpoint, then you must also turn on
  CloudTrail logging in those Regions. This is necessary to record any AWS STS API calls
  that are made in those Regions", same page and the STS API Reference, Welcome); calls to
  the global endpoint are logged as us-east-1, but AWS now serves them in the caller's
  region when it can (IAM User Guide, "AWS STS Regions and endpoints", global endpoint
  changes, https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_region-endpoints.html),
  so the canary always names the regional endpoint.
- EventBridge delivers read-only management events only to rules in state
  `ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS` (EventBridge User Guide, "Receiving
  read-only management events from AWS services",
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail-management.html),
  and only where a trail is logging ("Events from AWS services",
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event.html): the state
  the forwarder templates set. A rule left at `ENABLED` passes root write events and
  drops the canary, so it shows as blind: its read-only root events are lost as well.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

STS = "sts.amazonaws.com"
EVENT_NAME = "GetCallerIdentity"
DEFAULT_SESSION_NAME = "aws-root-exporter"


def is_canary(record: Mapping[str, Any], known_arns: Collection[str], session_name: str = DEFAULT_SESSION_NAME) -> bool:
    """A GetCallerIdentity record made by an identity the exporter made canaries with, or by
    an assumed-role session named `session_name` (so a canary made before a restart, whose
    identity this process has not learned yet, still counts)."""
    if record.get("eventSource") != STS or record.get("eventName") != EVENT_NAME:
        return False
    identity = record.get("userIdentity")
    if not isinstance(identity, Mapping):
        return False
    arn = identity.get("arn")
    if not isinstance(arn, str):
        return False
    return arn in known_arns or (identity.get("type") == "AssumedRole" and forwarded(arn, session_name))


def forwarded(arn: str, session_name: str = DEFAULT_SESSION_NAME) -> bool:
    """Whether a canary made as `arn` matches `canary_pattern(session_name)`: an assumed-role
    session (`arn:<partition>:sts::<account>:assumed-role/<role>/<session>`) of that name."""
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/") and parts[5].endswith("/" + session_name)


def canary_pattern(session_name: str = DEFAULT_SESSION_NAME) -> dict[str, Any]:
    """The EventBridge pattern piece that forwards the exporter's canaries and no other call
    of anyone: the assumed-role session's principalId is `<role id>:<session name>`."""
    return {
        "detail": {
            "eventSource": [STS],
            "eventName": [EVENT_NAME],
            "userIdentity": {"type": ["AssumedRole"], "principalId": [{"suffix": ":" + session_name}]},
        }
    }


def record_account(record: Mapping[str, Any]) -> str:
    """The account a canary was made in: where the session lives (its ARN's account)."""
    identity = record.get("userIdentity")
    account = identity.get("accountId") if isinstance(identity, Mapping) else None
    return str(account or record.get("recipientAccountId") or "")
