"""The calls `inject` can make on a running sandbox to blind its monitoring, and undo.

One source of truth for the control server, `aws-root-exporter inject --help` and
docs/faults.md. Each is a real API call on moto, and the sandbox also delivers the CloudTrail
record of that call through every path that still sees it (a StopLogging is recorded before
logging stops)."""

from __future__ import annotations

ACTIONS: dict[str, str] = {
    "stop-trail": "StopLogging on the trail recording the account and region (the organization trail: every account)",
    "start-trail": "StartLogging on that trail again",
    "disable-rule": "DisableRule on the forwarder rule in the account and region",
    "rule-read-only-off": "PutRule with State ENABLED on the forwarder rule: read-only events (the canary) no longer reach it",
    "enable-rule": "PutRule with State ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS on the forwarder rule (undoes both)",
    "purge-queue": "PurgeQueue on the central root-activity queue (every event waiting is lost)",
    "remove-account": "RemoveAccountFromOrganization: the account leaves (no organization trail, no central bus)",
    "restore-account": "the account joins the organization again (the AcceptHandshake record)",
}
