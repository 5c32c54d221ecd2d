"""The one place for the job selector and the thresholds of the alerts and dashboards.

`python -m alerts.generate` and `python -m dashboards.generate` both read this module
(through alerts/promql.py, the shared PromQL helpers); change a value here and re-run both
generators (the tests fail until the committed files match). Values only: no code.
"""

# Label matcher that selects the exporter's series. Every query in the rules and the
# dashboards starts from it, so a different scrape job name is a one-line change.
JOB_SELECTOR = 'job="aws-root-exporter"'

# Where each alert's runbook_url points: RUNBOOK_BASE_URL + "#" + alertname.lower().
RUNBOOK_BASE_URL = (
    "https://github.com/aws-root-exporter/aws-root-exporter/blob/main/alerts/runbook.md"
)

# Rule group evaluation interval.
EVALUATION_INTERVAL = "1m"

# Activity alerts look at the increase of a counter over this window. It bounds how long an
# activity alert stays firing after the last event; it must cover at least two scrapes.
ACTIVITY_WINDOW = "10m"

# AwsRootBreakGlassLogin and AwsRootBreakGlassActivity name the tickets of the account's
# break-glass windows that were open at some time in this many seconds before the alert's
# evaluation: the activity window above plus CloudTrail's delivery delay (LookupEvents is
# read up to 15 minutes late), so a call made just before a window's end still names it.
BREAK_GLASS_TICKET_LOOKBACK_SECONDS = 3600

# AwsRootConsoleLoginFailures: this many failed root console logins in FAILED_LOGIN_WINDOW.
FAILED_LOGIN_THRESHOLD = 3
FAILED_LOGIN_WINDOW = "1h"

# Root sign-in records (other than ConsoleLogin) that alert on their own: only root can
# produce them, and they are the first steps of an account takeover through the root email.
ALERTING_SIGNIN_EVENTS = ["PasswordRecoveryRequested", "PasswordUpdated"]

# AwsRootAccessKeyUsed: a root access key was last used less than this many seconds ago
# (from the IAM credential report, which can be up to 4 h old).
ACCESS_KEY_RECENT_USE_SECONDS = 24 * 3600

# AwsRootAssumeRootUsed ignores these sts:AssumeRoot task policies: the exporter's own
# read-only audit sessions use IAMAuditRootUserCredentials and must never raise an alert.
ASSUME_ROOT_IGNORED_TASK_POLICIES = ["IAMAuditRootUserCredentials"]

# AwsRootPasswordUsed: the credential report (or iam:GetUser in the AssumeRoot mode) shows a
# root password sign-in less than this many seconds before the report was generated, so a
# sign-in pages for a day plus the report's age (AWS regenerates it at most every 4 h).
PASSWORD_RECENT_USE_SECONDS = 24 * 3600
# ...unless a CloudTrail source saw root activity at or after the sign-in, less this many
# seconds (the report and the ConsoleLogin record time the same sign-in, each to the second):
# there AwsRootConsoleLogin has paged for it already.
PASSWORD_USE_CLOUDTRAIL_TOLERANCE_SECONDS = 60
# It waits this long, CloudTrail's worst documented delivery delay, so that a ConsoleLogin
# record still on its way (LookupEvents is read up to 15 minutes late) suppresses it.
PASSWORD_USED_FOR = "15m"

# Posture alerts (MFA, keys) wait this long so a half-finished sweep does not flap them.
POSTURE_FOR = "15m"

# AwsRootCollectionFailing: a collector has failed for an account for this long
# (two posture sweeps at the default 600 s interval).
COLLECTOR_FAILING_FOR = "20m"

# AwsRootDataStale: a sweep is stale when more than two intervals plus this margin have
# passed since it last completed (two missed runs, as the Prometheus docs advise).
STALE_MARGIN_SECONDS = 300

# AwsRootExporterDown and AwsRootExporterTargetDown: every target, or one of several
# (a shard), has been down or missing this long.
EXPORTER_DOWN_FOR = "5m"

# AwsRootExporterConfigReloadFailed: the last configuration reload has failed for this long
# (the duration of Prometheus' own PrometheusBadConfig alert in the prometheus mixin).
CONFIG_RELOAD_FAILED_FOR = "10m"

# AwsRootScpFenceLost: a member account whose aws_root_scp_fence_state{state="fenced"} was 1 at
# some point in this window and is 0 now. It bounds how long the alert stays firing after
# the loss when nobody restores the fence (the not-fenced count and table of the overview
# dashboard keep showing the account); it must cover at least two posture sweeps.
SCP_FENCE_LOST_WINDOW = "1d"

# AwsRootScpNotEnforced: the SERVICE_CONTROL_POLICY type has been disabled this long
# (a PENDING_ENABLE / PENDING_DISABLE transition also reads as not enabled).
SCP_NOT_ENFORCED_FOR = "15m"

# AwsRootActivityRecordRejected: the rejection reasons of aws_root_exporter_events_rejected_total
# that may have dropped a root record (fail closed): a record that would be root activity but
# cannot be used, and an SQS message given up after repeated failures (it may have carried one).
ROOT_RECORD_REJECTION_REASONS = ["malformed_root_record", "poison"]

# Detection delay recording rules: quantiles and the window they are computed over. Root
# events are rare, so a short window would mostly yield no data.
DELAY_QUANTILES = [0.5, 0.9, 0.99]
DELAY_WINDOW = "1d"

# KPI targets (dashboards colour the stat panels against them).
TARGET_ROOT_LOGINS_PER_QUARTER = 0
TARGET_TIME_TO_ALERT_SECONDS = 300
TARGET_MFA_ADOPTION_RATIO = 1.0
TARGET_SCP_FENCED_RATIO = 1.0
TARGET_ROOT_CREDENTIALS_REMOVED_RATIO = 1.0
