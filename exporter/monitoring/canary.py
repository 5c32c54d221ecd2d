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
# The exporter's own principal as deploy/cloudformation/exporter-principal.yaml names it (its
# RoleName default): in the account the exporter runs in, it makes its canaries with its own
# credentials, whose session name it often cannot choose (EKS Pod Identity names sessions
# eks-<cluster>-<pod>-<uuid>; an instance profile, the instance id). An IAM user of that name
# (access keys outside AWS) is matched too.
EXPORTER_PRINCIPAL_NAME = "aws-root-exporter"


def is_canary(record: Mapping[str, Any], known_arns: Collection[str], session_name: str = DEFAULT_SESSION_NAME) -> bool:
    """A GetCallerIdentity record made by an identity the exporter made canaries with, or by
    one `canary_pattern` forwards (so a canary made before a restart, whose identity this
    process has not learned yet, still counts)."""
    if record.get("eventSource") != STS or record.get("eventName") != EVENT_NAME:
        return False
    identity = record.get("userIdentity")
    if not isinstance(identity, Mapping):
        return False
    arn = identity.get("arn")
    if not isinstance(arn, str):
        return False
    return arn in known_arns or (identity.get("type") in ("AssumedRole", "IAMUser") and forwarded(arn, session_name))


def forwarded(arn: str, session_name: str = DEFAULT_SESSION_NAME) -> bool:
    """Whether a canary made as `arn` matches `canary_pattern(session_name)`: an assumed-role
    session (`arn:<partition>:sts::<account>:assumed-role/<role>/<session>`) named
    `session_name` or of the role EXPORTER_PRINCIPAL_NAME, or the IAM user of that name
    (`arn:<partition>:iam::<account>:user/<path>/<name>`)."""
    parts = arn.split(":", 5)
    if len(parts) != 6:
        return False
    service, resource = parts[2], parts[5]
    if service == "sts" and resource.startswith("assumed-role/"):
        role, _, session = resource[len("assumed-role/") :].partition("/")
        return session == session_name or role == EXPORTER_PRINCIPAL_NAME
    if service == "iam" and resource.startswith("user/"):
        return resource.rsplit("/", 1)[-1] == EXPORTER_PRINCIPAL_NAME
    return False


def canary_pattern(session_name: str = DEFAULT_SESSION_NAME) -> dict[str, Any]:
    """The EventBridge pattern piece that forwards the exporter's canaries and no other call
    of anyone: GetCallerIdentity by an assumed-role session named `session_name` (its
    principalId is `<role id>:<session name>`: the member role), by any session of the role
    EXPORTER_PRINCIPAL_NAME (the exporter's own credentials, whatever names their session),
    or by the IAM user of that name. EventBridge takes `$or` at any level of a pattern
    (EventBridge User Guide, "Content filtering", Or matching)."""
    return {
        "detail": {
            "eventSource": [STS],
            "eventName": [EVENT_NAME],
            "userIdentity": {
                "$or": [
                    {"type": ["AssumedRole"], "principalId": [{"suffix": ":" + session_name}]},
                    {"type": ["AssumedRole"], "sessionContext": {"sessionIssuer": {"userName": [EXPORTER_PRINCIPAL_NAME]}}},
                    {"type": ["IAMUser"], "userName": [EXPORTER_PRINCIPAL_NAME]},
                ]
            },
        }
    }


def record_account(record: Mapping[str, Any]) -> str:
    """The account a canary was made in: where the session lives (its ARN's account)."""
    identity = record.get("userIdentity")
    account = identity.get("accountId") if isinstance(identity, Mapping) else None
    return str(account or record.get("recipientAccountId") or "")
