#!/usr/bin/env python3
"""Generate the Grafana dashboards (dashboards/*.json) from code.

    python -m dashboards.generate           # rewrite the committed JSON files
    python -m dashboards.generate --check   # exit 1 when a committed file differs

Run from the repository root. The dashboards are built with Grafana's own SDK,
grafana-foundation-sdk (a development dependency: the `test` extra). The KPI targets, the
default of the `job` variable and the runbook address come from alerts/config.py, the same
module the alert rules are generated from, and the PromQL helpers from alerts/promql.py.
tests/test_dashboards.py validates the JSON against the JSON Schema that was generated from @grafana/schema (dashboards/schema/).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat as stat_panel, table as table_panel
from grafana_foundation_sdk.builders import timeseries as timeseries_panel
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from alerts import config as c
from alerts import promql
from alerts.promql import eq

HERE = pathlib.Path(__file__).resolve().parent

# The SDK (Grafana 11.6 build) writes schemaVersion 41; the dashboards keep 39 (Grafana 10.4+),
# the model they were written for: every field used here exists there, and Grafana migrates
# a dashboard's schemaVersion forward on load, never backward.
SCHEMA_VERSION = 39
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["aws-root", "security"]
ACCOUNT = 'account_id=~"$account"'
RATE_INTERVAL = "$__rate_interval"

# Every query selects the exporter's series by the `job` variable, so a scrape config with
# another job name needs no edit. Single-valued and matched with `=`, as node-mixin does: one
# exporter deployment per view, and a job name is never read as a regular expression.
JOB = 'job="$job"'

# Panel links open the same runbook section as the alert's runbook_url.
RUNBOOK_BASE_URL = c.RUNBOOK_BASE_URL
RUNBOOK = HERE.parent / "alerts" / "runbook.md"


class SourceError(Exception):
    """alerts/config.py or alerts/runbook.md cannot give the dashboards what they need."""


def default_job() -> str:
    """The job variable's default: the job the alert rules select (alerts/config.py)."""
    match = re.fullmatch(r'job="([^"]+)"', c.JOB_SELECTOR)
    if match is None:
        raise SourceError(f"alerts/config.py: JOB_SELECTOR {c.JOB_SELECTOR!r} is not "
                          'job="<name>"; set it to one job name, the job variable\'s default')
    return match.group(1)


def m(name: str, *matchers: str) -> str:
    return promql.metric(name, *matchers, job=JOB)


def with_account_names(expr: str) -> str:
    return promql.with_account_names(expr, compact=True, job=JOB)


def increase_by(metric_name: str, by: str, *matchers: str) -> str:
    """promql.increase_by over Grafana's $__rate_interval (one bar per interval)."""
    return promql.increase_by(metric_name, by, *matchers, window=RATE_INTERVAL, job=JOB)


# --- building blocks ------------------------------------------------------------------


def target(expr, legend="", ref="A", instant=False, table=False):
    query = (
        prometheus.Dataquery()
        .datasource(DATASOURCE)
        .ref_id(ref)
        .expr(expr)
        .legend_format(legend or "__auto")
    )
    query = query.instant() if instant else query.range()
    if table:
        query = query.format(PromQueryFormat.TABLE)
    return query


def targets(*specs, instant=False, table=False):
    """specs: (expr, legend) pairs; refIds A, B, C, ..."""
    return [
        target(expr, legend, chr(ord("A") + i), instant=instant, table=table)
        for i, (expr, legend) in enumerate(specs)
    ]


def thresholds(*steps):
    """steps: (value, colour) pairs; the first value is None (minus infinity)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=col) for v, col in steps])
    )


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces
    to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """{alert name: anchor} for the runbook's `## <alert>` sections."""
    return {line[3:].strip(): github_anchor(line[3:])
            for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}


def runbook(panel, *alerts):
    """Link the panel to the runbook section of each alert it mirrors."""
    sections = runbook_sections()
    missing = [a for a in alerts if a not in sections]
    if missing:
        raise SourceError(f"alerts/runbook.md has no section for {', '.join(missing)}: add a "
                          f"'## <alert>' heading or drop the panel's link")
    return panel.links([
        db.DashboardLink(f"Runbook: {alert}")
        .type(dm.DashboardLinkType.LINK)
        .url(f"{RUNBOOK_BASE_URL}#{sections[alert]}")
        .target_blank(True)
        .icon("doc")
        .tooltip(f"What to do when {alert} fires")
        .tags([])
        .as_dropdown(False)
        .include_vars(False)
        .keep_time(False)
        for alert in alerts
    ])


# Alerts that several panels mirror.
ACTIVITY_ALERTS = (
    "AwsRootConsoleLogin", "AwsRootConsoleLoginFailures", "AwsRootConsoleLoginWeakMfa", "AwsRootBreakGlassLogin",
    "AwsRootApiActivity", "AwsRootBreakGlassActivity", "AwsRootPasswordActivity",
    "AwsRootAssumeRootUsed", "AwsRootRecoveryPathChanged",
)
POSTURE_ALERTS = (
    "AwsRootMfaDisabled", "AwsRootMfaNotHardware", "AwsRootAccessKeyPresent",
    "AwsRootSigningCertificatePresent",
)
SCP_ALERTS = ("AwsRootScpFenceLost", "AwsRootScpNotEnforced")


def colour(mode):
    return db.FieldColor().mode(mode)


def field_defaults(panel, unit="none", steps=None, mappings=None, min=None, max=None,
                   decimals=None, color=None):
    """Unit, thresholds (green when none), colour scheme, value mappings, min/max/decimals."""
    panel = panel.unit(unit).thresholds(steps or thresholds((None, "green")))
    if color is None:
        color = dm.FieldColorModeId.THRESHOLDS if steps else dm.FieldColorModeId.PALETTE_CLASSIC
    panel = panel.color_scheme(colour(color))
    if mappings:
        panel = panel.mappings(mappings)
    for setter, value in ((panel.min, min), (panel.max, max), (panel.decimals, decimals)):
        if value is not None:
            setter(value)
    return panel


def value_map(*entries):
    """entries: (value, text, colour); a value mapping in this order."""
    return [
        dm.ValueMap(options={
            value: dm.ValueMappingResult(text=text, color=col, index=i)
            for i, (value, text, col) in enumerate(entries)
        })
    ]


def yes_no(good=1):
    """Value mapping for 0/1 gauges: good value green, the other red."""
    bad = 1 - good
    return value_map((str(good), "Yes" if good else "No", "green"),
                     (str(bad), "Yes" if bad else "No", "red"))


def stat(title, expr, description, unit="none", steps=None, mappings=None, legend="",
         text_mode="auto", instant=True, **defaults):
    panel = (
        stat_panel.Panel()
        .title(title)
        .description(description)
        .with_target(target(expr, legend, instant=instant))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .text_mode(cm.BigValueTextMode(text_mode))
        .show_percent_change(False)
        .wide_layout(True)
    )
    return field_defaults(panel, unit, steps, mappings, **defaults)


def timeseries(title, specs, description, unit="none", bars=False, steps=None, **defaults):
    panel = (
        timeseries_panel.Panel()
        .title(title)
        .description(description)
        .targets(targets(*specs))
        .draw_style(cm.GraphDrawStyle.BARS if bars else cm.GraphDrawStyle.LINE)
        .fill_opacity(60 if bars else 10)
        .line_width(1)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(cb.StackingConfig()
                  .mode(cm.StackingMode.NORMAL if bars else cm.StackingMode.NONE).group("A"))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(
            cm.GraphThresholdsStyleMode.LINE if steps else cm.GraphThresholdsStyleMode.OFF))
        .legend(cb.VizLegendOptions()
                .display_mode(cm.LegendDisplayMode.TABLE)
                .placement(cm.LegendPlacement.BOTTOM)
                .show_legend(True)
                .calcs(["max", "lastNotNull"]))
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    return field_defaults(panel, unit, steps, color=dm.FieldColorModeId.PALETTE_CLASSIC, **defaults)


ACCOUNT_LINK = dm.DynamicConfigValue(
    id_val="links",
    value=[
        {
            "title": "Account detail",
            "url": "/d/aws-root-account/aws-root-account-detail?var-account=${__value.raw}&${__url_time_range}&${datasource:queryparam}&${job:queryparam}",
        }
    ],
)


def table(title, specs, description, hide=("Time", "Value"), rename=None, account_link=False,
          unit="none", mappings=None):
    exclude = {name: True for name in ("__name__", "job", "instance", *hide)}
    panel = (
        table_panel.Panel()
        .title(title)
        .description(description)
        .targets(targets(*specs, instant=True, table=True))
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .footer(cb.TableFooterOptions().show(False).reducer(["sum"]).fields(""))
        .with_transformation(dm.DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": exclude, "renameByName": rename or {}},
        ))
        .overrides([])
    )
    if account_link:
        panel = panel.override_by_name("account_id", [ACCOUNT_LINK])
    return field_defaults(panel, unit, mappings=mappings)


def account_table(title, expr, description, columns, **options):
    """A table of accounts: account name and OU as columns, the account id linked to the
    account dashboard; `columns` renames the other labels (and Value)."""
    return table(title, [(expr, "")], description,
                 rename={"account_name": "Account", "ou_name": "OU", **columns},
                 account_link=True, **options)


def layout(rows):
    """rows: lists of (panel, width, height); assigns gridPos, ids and the datasource."""
    panels, y, pid = [], 0, 1
    for row in rows:
        x, row_h = 0, 0
        for panel, w, h in row:
            assert x + w <= 24, panel.build().title
            panels.append(panel.id(pid).grid_pos(dm.GridPos(h=h, w=w, x=x, y=y)).datasource(DATASOURCE))
            pid, x, row_h = pid + 1, x + w, max(row_h, h)
        y += row_h
    return panels


ALL = dm.VariableOption(text="All", value="$__all")


def variables(account_multi=True):
    info = m("aws_root_account_info")
    info_in_ou = m("aws_root_account_info", 'ou_name=~"$ou"')
    account_query = f"query_result(max by (account_id, account_name) ({info_in_ou}))"
    return [
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(dm.VariableOption(text="Prometheus", value="prometheus"))
        .hide(dm.VariableHide.DONT_HIDE)
        .regex(""),
        db.QueryVariable("job")
        .label("Job")
        .datasource(DATASOURCE)
        # The exporter exposes build_info whenever it is scraped. When the saved default is
        # not among the values (another job name), Grafana selects the first value.
        .query(f"label_values({promql.PRESENCE}, job)")
        .current(dm.VariableOption(text=default_job(), value=default_job()))
        .include_all(False)
        .multi(False)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .regex("")
        .hide(dm.VariableHide.DONT_HIDE)
        .options([]),
        db.QueryVariable("ou")
        .label("OU")
        .datasource(DATASOURCE)
        .query(f"label_values({info}, ou_name)")
        .current(ALL)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .regex("")
        .hide(dm.VariableHide.DONT_HIDE)
        .options([]),
        db.QueryVariable("account")
        .label("Account")
        .datasource(DATASOURCE)
        # Value: the account id (what the metrics carry); text: the account name.
        .query(account_query)
        .regex('/account_id="(?<value>[^"]+)".*account_name="(?<text>[^"]*)"/')
        # No custom allValue: "All" expands to the accounts of the selected OUs.
        .include_all(account_multi)
        .multi(account_multi)
        .current(ALL if account_multi else dm.VariableOption(text="", value=""))
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .hide(dm.VariableHide.DONT_HIDE)
        .options([]),
    ]


def dashboard(uid, title, description, rows, account_multi=True, time_from="now-24h"):
    builder = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .refresh("1m")
        .time(time_from, "now")
        .timezone("utc")
        .fiscal_year_start_month(0)
        .live_now(False)
        .week_start("")
        .timepicker(db.TimePicker())
        .annotation(
            db.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .link(
            db.DashboardLink("AWS root dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["aws-root"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
            .icon("external link")
            .target_blank(False)
            .tooltip("")
            .url("")
        )
        .variables(variables(account_multi))
    )
    for panel in layout(rows):
        builder = builder.with_panel(panel)
    model = builder.build()
    model.schema_version = SCHEMA_VERSION
    return model


# --- queries shared by several panels -------------------------------------------------


def control_ratio(control):
    """Share of the selected accounts that pass a control. Accounts without posture data
    (collection failing) are in the denominator: unknown is never compliant."""
    return (
        f"sum(max by (account_id) ({m('aws_root_control_compliant', eq('control', control), ACCOUNT)}))\n"
        f"/\ncount(max by (account_id) ({m('aws_root_account_info', ACCOUNT)}))"
    )


def scp_member(state):
    """Per selected member account, the SCP fence state series (1 = the account's current
    state). Member accounts: not_applicable is 0 (the management account has 1)."""
    return (
        f"max by (account_id) ({m('aws_root_scp_fence_state', eq('state', state), ACCOUNT)})\n"
        f"and on (account_id)\n"
        f"max by (account_id) ({m('aws_root_scp_fence_state', eq('state', 'not_applicable'), ACCOUNT)}) == 0"
    )


def scp_fenced_ratio():
    """Share of the selected member accounts whose root is fenced by an SCP; `unknown`
    counts as not fenced."""
    return (
        f"sum(\n{scp_member('fenced')}\n)\n/\n"
        f"count(max by (account_id) ({m('aws_root_scp_fence_state', eq('state', 'not_applicable'), ACCOUNT)}) == 0)"
    )


def delay_quantile(q, window):
    return (
        f"histogram_quantile({q}, sum by (source, le) "
        f"(rate({m('aws_root_exporter_event_delay_seconds_bucket')}[{window}])))"
    )


MEAN_DELAY_RANGE = (
    f"sum(increase({m('aws_root_exporter_event_delay_seconds_sum')}[$__range]))\n"
    f"/\nsum(increase({m('aws_root_exporter_event_delay_seconds_count')}[$__range]))"
)

TIME_TO_ALERT_STEPS = thresholds((None, "green"), (c.TARGET_TIME_TO_ALERT_SECONDS, "red"))
RATIO_STEPS = thresholds((None, "red"), (c.TARGET_MFA_ADOPTION_RATIO, "green"))
SCP_RATIO_STEPS = thresholds((None, "red"), (c.TARGET_SCP_FENCED_RATIO, "green"))
ZERO_TARGET_STEPS = thresholds((None, "green"), (c.TARGET_ROOT_LOGINS_PER_QUARTER + 1, "red"))


def activity_specs():
    return [
        (increase_by("aws_root_console_logins_total", "outcome", ACCOUNT, 'approved!="true"'),
         "Console login ({{outcome}})"),
        (increase_by("aws_root_console_logins_total", "outcome", ACCOUNT, 'approved="true"'),
         "Console login, approved break-glass ({{outcome}})"),
        (increase_by("aws_root_api_calls_total", "category", ACCOUNT, 'approved!="true"'),
         "API call: {{category}}"),
        (increase_by("aws_root_api_calls_total", "category", ACCOUNT, 'approved="true"'),
         "API call, approved break-glass: {{category}}"),
        (increase_by("aws_root_signin_events_total", "event_name", ACCOUNT),
         "Sign-in record: {{event_name}}"),
        (increase_by("aws_root_assume_root_calls_total", "task_policy", ACCOUNT),
         "AssumeRoot: {{task_policy}}"),
        (increase_by("aws_root_recovery_signals_total", "signal", ACCOUNT),
         "Recovery path changed: {{signal}}"),
    ]


# --- the seed KPIs: root logins per calendar quarter, root credential removal ----------

REMOVED = "account_id:aws_root_credentials_removed:bool"
REMOVAL_STEPS = thresholds((None, "red"), (c.TARGET_ROOT_CREDENTIALS_REMOVED_RATIO, "green"))


def logins_in_quarter(quarter):
    return f"sum(max by (account_id) ({m('aws_root_console_logins_quarter', eq('quarter', quarter), ACCOUNT)}))"


def quarter_kpi_row():
    """Root console logins this and last calendar quarter (UTC), from the exporter's own
    per-quarter count; whether that count covers the whole quarter; the accounts."""
    per_account = with_account_names(
        f"max by (account_id, quarter) ({m('aws_root_console_logins_quarter', ACCOUNT)}) > 0"
    )
    complete = f"min by (quarter) ({m('aws_root_console_logins_quarter_complete')})"
    coverage = ("Counted by the exporter from every root ConsoleLogin record it read, kept per "
                "quarter in its state file; see \"Login count covers the quarter\".")
    return [
        (stat("Root console logins, this quarter", logins_in_quarter("current"),
              f"KPI, target {c.TARGET_ROOT_LOGINS_PER_QUARTER}. Successful root console logins in "
              "the current calendar quarter (UTC), summed over the selected accounts. " + coverage,
              steps=ZERO_TARGET_STEPS), 4, 7),
        (stat("Root console logins, last quarter", logins_in_quarter("previous"),
              f"KPI, target {c.TARGET_ROOT_LOGINS_PER_QUARTER}. Successful root console logins in "
              "the previous calendar quarter (UTC), summed over the selected accounts. " + coverage,
              steps=ZERO_TARGET_STEPS), 4, 7),
        (stat("Login count covers the quarter", complete,
              "Yes when the records the exporter read reach back to the first second of the "
              "quarter for every account (organization-wide, not per selection). A new install "
              "reads 90 days of CloudTrail history: the last quarter shows No until this "
              "quarter ends; an account that joins later does the same (README, Root logins "
              "per calendar quarter).",
              mappings=yes_no(good=1), legend="{{quarter}}"), 4, 7),
        (account_table("Root console logins per account, this and last quarter", per_account,
                       "Accounts with at least one successful root console login in the current "
                       "or previous calendar quarter (UTC).",
                       {"quarter": "Quarter", "Value": "Logins"}, hide=("Time",)), 12, 7),
    ]


def credential_removal_row():
    """The burn-down a team follows while it deletes member roots' credentials."""
    removed = f"{REMOVED}{{{ACCOUNT}}}"
    ratio = f"sum({removed})\n/\ncount({removed})"
    by_ou = f"sum by (ou_id, ou_name) ({removed})\n/\ncount by (ou_id, ou_name) ({removed})"
    rule = ("Recording rule account_id:aws_root_credentials_removed:bool: a member account's root "
            "has no password, no access key and no signing certificate, read by a posture "
            "collection that succeeds now. A password state `unknown` or an account that could "
            "not be read counts as not removed. The management account is not counted.")
    return [
        (stat("Member roots without credentials", ratio,
              f"KPI, target {c.TARGET_ROOT_CREDENTIALS_REMOVED_RATIO:.0%}. Share of the selected "
              "member accounts whose root user holds no credential. " + rule,
              unit="percentunit", steps=REMOVAL_STEPS, min=0, max=1, decimals=1), 4, 8),
        (runbook(stat("Member roots still holding credentials", f"sum(1 - {removed})",
              "Selected member accounts whose root still holds, or may hold, a credential: "
              "the accounts left to clean up (AwsRootCredentialsNotRemoved once "
              "RootCredentialsManagement is enabled). " + rule,
              steps=ZERO_TARGET_STEPS), "AwsRootCredentialsNotRemoved"), 4, 8),
        (timeseries("Root credential removal burn-down",
                    [(ratio, "Selected member accounts"), (by_ou, "{{ou_name}}")],
                    "Share of member accounts whose root holds no credential, over time, for the "
                    "selection and per OU. " + rule,
                    unit="percentunit", steps=REMOVAL_STEPS, min=0, max=1), 8, 8),
        (table("Root credential removal by OU", [(by_ou, "")],
               "Share of each OU's selected member accounts whose root holds no credential. " + rule,
               hide=("Time",), rename={"ou_name": "OU", "ou_id": "OU id",
                                        "Value": "Without root credentials"},
               unit="percentunit"), 8, 8),
    ]


# --- coverage: proof of sight ----------------------------------------------------------

PROVEN_STEPS = thresholds((None, "red"), (1, "green"))
MONITORING_ALERTS = ("AwsRootMonitoringBlind",)


def canary_delay(q):
    """Canary delay quantile by source over the last hour: canaries come every
    canary_interval_seconds per account and region, so a shorter window is often empty."""
    return (
        f"histogram_quantile({q}, sum by (source, le) "
        f"(rate({m('aws_root_monitoring_canary_delay_seconds_bucket')}[1h])))"
    )


def coverage_rows():
    """Whether the exporter would see a root login: accounts proven per source and region
    out of those collected, the blind ones, the canaries' delay, tamper records."""
    accounts = m("aws_root_monitoring_accounts")
    proven = m("aws_root_monitoring_accounts", eq("state", "proven"))
    blind_for = (
        "sort_desc(time() - min by (account_id, account_name, source, region, reason) "
        f"({m('aws_root_monitoring_blind_since_timestamp_seconds', ACCOUNT)}))"
    )
    proven_means = ("Proven: a canary (the exporter's own sts:GetCallerIdentity in the account and "
                    "region) came back through the source within the source's bound "
                    "(alerts/runbook.md, AwsRootMonitoringBlind). Organization-wide, not per selection.")
    return [
        [
            (runbook(stat("Accounts proven, by source",
                          f"sum by (source) ({proven})\n/\nsum by (source) ({accounts})",
                          "Share of the collected accounts and monitored regions proven on each "
                          "configured source (target 100 %). " + proven_means,
                          unit="percentunit", steps=PROVEN_STEPS, min=0, max=1, decimals=1,
                          legend="{{source}}"), *MONITORING_ALERTS), 6, 8),
            (runbook(table("Coverage by source and region",
                           [(f"sum by (source, region, state) ({accounts})", "")],
                           "Accounts per configured source and monitored region: proven, pending "
                           "(the first canary is not due yet) or blind; their sum is the accounts "
                           "collected. " + proven_means,
                           hide=("Time",), rename={"source": "Source", "region": "Region",
                                                   "state": "State", "Value": "Accounts"}),
                     *MONITORING_ALERTS), 6, 8),
            (runbook(account_table("Blind accounts, longest first", blind_for,
                                   "Accounts, sources and regions the exporter cannot prove it would "
                                   "see a root login on, and for how long, with the reason: each one "
                                   "pages AwsRootMonitoringBlind (the runbook has a section per "
                                   "reason). An empty account is no_accounts_collected.",
                                   {"source": "Source", "region": "Region", "reason": "Reason",
                                    "Value": "Blind for"}, hide=("Time",), unit="s"),
                     *MONITORING_ALERTS), 12, 8),
        ],
        [
            (runbook(timeseries("Canary delay by source", [
                (canary_delay(0.5), "p50 {{source}}"),
                (canary_delay(0.95), "p95 {{source}}"),
            ], "End-to-end delay of the canaries, from their eventTime to their arrival through "
               "each source, over the last hour: the exporter's real time to detect, measured "
               f"continuously. Target < {c.TARGET_TIME_TO_ALERT_SECONDS} s (the line).",
                unit="s", steps=TIME_TO_ALERT_STEPS), *MONITORING_ALERTS), 12, 8),
            (runbook(timeseries("Monitoring tamper records", [
                (increase_by("aws_root_monitoring_tamper_events_total",
                             "account_id, account_name, event_name, outcome", ACCOUNT),
                 "{{account_name}} {{account_id}}: {{event_name}} ({{outcome}})"),
            ], "Calls that can blind root monitoring (a trail stopped or changed, the forwarder "
               "rule disabled or deleted, the queue purged, an account leaving the organization), "
               "by any principal, per interval; failure: a denied attempt.", bars=True),
                     "AwsRootMonitoringTampered"), 12, 8),
        ],
    ]


# --- dashboards -----------------------------------------------------------------------


def overview():
    failing_controls = with_account_names(
        f"max by (account_id, control) ({m('aws_root_control_compliant', ACCOUNT)}) == 0"
    )
    failing_collection = with_account_names(
        f"max by (account_id, collector) ({m('aws_root_exporter_collector_success', ACCOUNT)}) == 0"
    )
    logins_90d = with_account_names(
        f"max by (account_id) ({m('aws_root_console_logins_90d', ACCOUNT)}) > 0"
    )
    windows_open = with_account_names(
        f"max by (account_id, ticket) ({m('aws_root_break_glass_window_end_timestamp_seconds', ACCOUNT)})\n"
        f"and on (account_id, ticket) max by (account_id, ticket) ({m('aws_root_break_glass_window_active', ACCOUNT)}) == 1"
    )
    not_fenced_states = 'state=~"not_fenced|unknown"'
    not_fenced = with_account_names(
        f"max by (account_id, state) ({m('aws_root_scp_fence_state', not_fenced_states, ACCOUNT)}) == 1"
    )
    rows = [
        [
            (stat("Root console logins, trailing 90 days",
                  f"sum(max by (account_id) ({m('aws_root_console_logins_90d', ACCOUNT)}))",
                  "Exact count of successful root console logins in the trailing 90 days (a "
                  "sliding window, not the calendar quarter of the KPI) from CloudTrail, summed "
                  "over the selected accounts.",
                  steps=ZERO_TARGET_STEPS), 4, 5),
            (stat("Mean time to alert", MEAN_DELAY_RANGE,
                  f"KPI, target < {c.TARGET_TIME_TO_ALERT_SECONDS} s. Mean delay between a root "
                  "record's eventTime and the exporter processing it, over the dashboard time "
                  "range, all sources and accounts. Prometheus evaluation and Alertmanager "
                  "delivery add up to a minute or two.",
                  unit="s", steps=TIME_TO_ALERT_STEPS), 4, 5),
            (stat("Detection delay p90",
                  f"histogram_quantile(0.9, sum by (le) (increase({m('aws_root_exporter_event_delay_seconds_bucket')}[$__range])))",
                  f"90th percentile of the detection delay over the time range (target < "
                  f"{c.TARGET_TIME_TO_ALERT_SECONDS} s).",
                  unit="s", steps=TIME_TO_ALERT_STEPS), 4, 5),
            (runbook(stat("Root MFA adoption", control_ratio("mfa_enabled"),
                  "KPI, target 100 %. Share of the selected accounts whose root has MFA or no "
                  "credentials at all. Accounts whose posture could not be collected count as "
                  "not compliant.",
                  unit="percentunit", steps=RATIO_STEPS, min=0, max=1, decimals=1),
                      "AwsRootMfaDisabled"), 4, 5),
            (runbook(stat("Hardware root MFA", control_ratio("mfa_hardware"),
                  "Share of the selected accounts whose root MFA is hardware (Security Hub IAM.6, CIS v5.0 1.5) or whose "
                  "root has no credentials.",
                  unit="percentunit", steps=RATIO_STEPS, min=0, max=1, decimals=1),
                      "AwsRootMfaNotHardware"), 4, 5),
            (runbook(stat("Accounts with root access keys",
                  f"sum(1 - max by (account_id) ({m('aws_root_control_compliant', eq('control', 'no_access_keys'), ACCOUNT)}))",
                  "Selected accounts whose root user has access keys (active or inactive).",
                  steps=ZERO_TARGET_STEPS), "AwsRootAccessKeyPresent"), 4, 5),
        ],
        [
            (runbook(account_table("Accounts failing a root control", failing_controls,
                           "One row per account and failing control (mfa_enabled, mfa_hardware, "
                           "no_access_keys, no_signing_certificates). Accounts whose collection fails "
                           "are in the next table, not here.",
                           {"control": "Failing control"}), *POSTURE_ALERTS), 14, 9),
            (runbook(account_table("Accounts with failing collection (posture unknown)", failing_collection,
                           "Collectors whose last run failed: the account's posture is unknown.",
                           {"collector": "Collector"}), "AwsRootCollectionFailing"), 10, 9),
        ],
        [
            (runbook(stat("Root fenced by SCP", scp_fenced_ratio(),
                  f"KPI, target {c.TARGET_SCP_FENCED_RATIO:.0%}. Share of the selected member "
                  "accounts whose root user is denied by a service control policy "
                  "(aws_root_scp_fence_state, docs/scp.md). The management account is not counted "
                  "(SCPs never apply to it); an account whose fence is unknown counts as not "
                  "fenced. AwsRootScpFenceLost fires when a member account loses its fence.",
                  unit="percentunit", steps=SCP_RATIO_STEPS, min=0, max=1, decimals=1),
                      *SCP_ALERTS), 4, 7),
            (runbook(account_table("Member accounts whose root is not fenced by an SCP", not_fenced,
                           "Member accounts whose root user no SCP certainly denies: not_fenced (no "
                           "applicable root deny, only conditional ones, or SCPs not enforced) or "
                           "unknown (a policy that may apply could not be read). Why: "
                           "`aws-root-exporter audit` (FENCE column) or the exporter's log.",
                           {"state": "Root fenced by SCP"}), *SCP_ALERTS), 20, 7),
        ],
        [
            (runbook(timeseries("Root activity by category", activity_specs(),
                        "Root records per interval: console logins by outcome and API calls by "
                        "category (each outside and inside approved break-glass windows), other "
                        "sign-in records, sts:AssumeRoot sessions by task policy, and changes that "
                        "make a root usable again (recovery email, centralized root access, root "
                        "password).",
                        bars=True), *ACTIVITY_ALERTS), 16, 9),
            (timeseries("Root API calls by service", [
                (increase_by("aws_root_api_calls_by_event_source_total", "event_source"),
                 "{{event_source}}"),
            ], "Root API calls in the organization by the AWS service that recorded them "
               "(per account: the account dashboard's root events).", bars=True), 8, 9),
        ],
        [
            (runbook(account_table("Break-glass windows open now", windows_open,
                           "Approved break-glass windows (setting break_glass_windows) open now, with "
                           "the ticket that approved them: root activity in these accounts is "
                           "approved=\"true\" and raises only the AwsRootBreakGlass* ticket alerts.",
                           {"ticket": "Ticket", "Value": "Window ends"},
                           hide=("Time",), unit="dateTimeAsIso"),
                               "AwsRootBreakGlassLogin", "AwsRootBreakGlassActivity"), 8, 9),
        ],
        [
            (account_table("Root console logins per account, trailing 90 days", logins_90d,
                           "Accounts with at least one root console login in the trailing 90 days.",
                           {"Value": "Logins"}, hide=("Time",)), 8, 9),
            (timeseries("Root MFA adoption over time",
                        [(control_ratio("mfa_enabled"), "MFA"),
                         (control_ratio("mfa_hardware"), "Hardware MFA")],
                        "Share of the selected accounts passing the MFA controls.",
                        unit="percentunit", steps=RATIO_STEPS, min=0, max=1), 8, 9),
            (timeseries("Accounts with root credentials",
                        [(f"sum(1 - max by (account_id) ({m('aws_root_control_compliant', eq('control', 'no_access_keys'), ACCOUNT)}))", "With access keys"),
                         (f"sum(max by (account_id) ({m('aws_root_credentials_present', ACCOUNT)}))", "With any root credential"),
                         (f"count(max by (account_id) ({m('aws_root_account_info', ACCOUNT)}))", "Accounts")],
                        "Accounts whose root still holds credentials; the goal of centralized "
                        "root access is none."), 8, 9),
        ],
    ]
    rows[1:1] = [quarter_kpi_row(), credential_removal_row(), *coverage_rows()]
    return dashboard(
        "aws-root-overview",
        "AWS root: organization overview",
        "Root user KPIs across the AWS Organization: root logins this quarter, time to alert, "
        "root MFA adoption, root fenced by SCP, and the accounts that fail a root control.",
        rows,
    )


COMPLIANT_FAILING = value_map(("1", "Compliant", "green"), ("0", "Failing", "red"))


def account_detail():
    a = ACCOUNT
    # The info metric's labels, with the record's time (the same record) as the value.
    event_info = (
        "max by (event_name, event_source, source_ip, mfa, outcome) "
        f"({m('aws_root_last_event_info', a)})\n  * on () group_left ()\n"
        f"max({m('aws_root_last_activity_timestamp_seconds', a)}) * 1000"
    )
    rows = [
        [
            (runbook(stat("Root MFA", f"max({m('aws_root_control_compliant', eq('control', 'mfa_enabled'), a)})",
                  "Compliant when root has an MFA device or holds no credentials (a root without "
                  "credentials cannot sign in).", mappings=COMPLIANT_FAILING),
                      "AwsRootMfaDisabled"), 6, 4),
            (runbook(stat("Hardware MFA", f"max({m('aws_root_control_compliant', eq('control', 'mfa_hardware'), a)})",
                  "Compliant when root MFA is enabled and no virtual MFA device is assigned to root "
                  "(Security Hub IAM.6, CIS v5.0 1.5), or root holds no credentials.", mappings=COMPLIANT_FAILING),
                      "AwsRootMfaNotHardware"), 6, 4),
            (runbook(stat("Active root access keys", f"sum({m('aws_root_access_keys', eq('status', 'active'), a)})",
                  "Active root access keys (should be 0).", steps=ZERO_TARGET_STEPS),
                      "AwsRootAccessKeyPresent"), 4, 4),
            (stat("Root password", f"max by (state) ({m('aws_root_password_state', a)}) == 1",
                  "Current state of the root password: present, absent or unknown "
                  "(credential report says not_supported: assume present).",
                  legend="{{state}}", text_mode="name"), 4, 4),
            (stat("Root console logins, 90 days", f"max({m('aws_root_console_logins_90d', a)})",
                  "Root console logins in the trailing 90 days (target 0).",
                  steps=ZERO_TARGET_STEPS), 4, 4),
        ],
        [
            (stat("Last root activity", f"max({m('aws_root_last_activity_timestamp_seconds', a)}) * 1000",
                  "eventTime of the latest root record seen for the account.",
                  unit="dateTimeFromNow"), 6, 4),
            (runbook(stat("Root access key last used",
                  f"max({m('aws_root_access_key_last_used_timestamp_seconds', a)}) * 1000",
                  "Last use of any root access key (credential report); empty when never used.",
                  unit="dateTimeFromNow"), "AwsRootAccessKeyUsed"), 6, 4),
            (runbook(stat("Root password last used",
                  f"max({m('aws_root_password_last_used_timestamp_seconds', a)}) * 1000",
                  "Last root console sign-in with the password; empty when never used.",
                  unit="dateTimeFromNow"), "AwsRootPasswordUsed"), 6, 4),
            (stat("Root holds credentials", f"max({m('aws_root_credentials_present', a)})",
                  "Whether root holds any credential (0 once removed centrally).",
                  mappings=yes_no(0)), 6, 4),
        ],
        [
            (table("Latest root record", [(event_info, "")],
                   "The latest root CloudTrail record of the account; Value is its eventTime.",
                   hide=("Time",), rename={"Value": "Event time"}, unit="dateTimeAsIso"), 24, 4),
        ],
        [
            (runbook(timeseries("Root events", [
                (increase_by("aws_root_console_logins_total", "outcome, mfa, approved", a),
                 "Console login {{outcome}}, MFA {{mfa}}, approved {{approved}}"),
                (increase_by("aws_root_api_calls_total", "category, approved, outcome", a),
                 "API {{category}} ({{outcome}}, approved {{approved}})"),
                (increase_by("aws_root_signin_events_total", "event_name, outcome", a),
                 "Sign-in {{event_name}} ({{outcome}})"),
                (increase_by("aws_root_assumed_root_calls_total", "outcome", a),
                 "Call in AssumeRoot session ({{outcome}})"),
                (increase_by("aws_root_assume_root_calls_total", "task_policy, outcome", a),
                 "AssumeRoot {{task_policy}} ({{outcome}})"),
                (increase_by("aws_root_recovery_signals_total", "signal, outcome", a),
                 "Recovery path changed: {{signal}} ({{outcome}})"),
            ], "Root records of the account per interval, and changes by IAM principals that "
               "make its root usable again.", bars=True), *ACTIVITY_ALERTS), 24, 9),
        ],
        [
            (runbook(table("Root controls", [(f"max by (control) ({m('aws_root_control_compliant', a)})", "")],
                   "Each root control and whether the account passes it.",
                   hide=("Time",), rename={"control": "Control", "Value": "Compliant"},
                   mappings=yes_no(1)), *POSTURE_ALERTS), 8, 7),
            (runbook(table("Root credentials", [
                (f"sum by (status) ({m('aws_root_access_keys', a)})", ""),
                (f"sum by (status) ({m('aws_root_signing_certificates', a)})", ""),
                (f"sum by (device_kind) ({m('aws_root_mfa_devices', a)})", ""),
            ], "Access keys and signing certificates by status; MFA devices by kind (only for "
               "accounts audited through sts:AssumeRoot).", hide=("Time",)),
                   "AwsRootAccessKeyPresent", "AwsRootSigningCertificatePresent"), 8, 7),
            (runbook(table("Collectors", [
                (f"max by (collector) ({m('aws_root_exporter_collector_success', a)})", ""),
            ], "Whether each collector's last run for the account succeeded.",
                hide=("Time",), rename={"collector": "Collector", "Value": "Succeeded"},
                mappings=yes_no(1)), "AwsRootCollectionFailing"), 8, 7),
        ],
        [
            (table("Account", [(f"max by (account_id, account_name, ou_id, ou_name, management, joined_method) ({m('aws_root_account_info', a)})", "")],
                   "The account's name, organizational unit and how it joined the organization (CREATED members start"
                   " without root credentials; INVITED ones often have them).", hide=("Time", "Value")), 12, 4),
            (stat("Credential report generated",
                  f"max({m('aws_root_credential_report_generated_timestamp_seconds', a)}) * 1000",
                  "When the IAM credential report behind this posture was generated.",
                  unit="dateTimeFromNow"), 12, 4),
        ],
    ]
    return dashboard(
        "aws-root-account",
        "AWS root: account detail",
        "One account's root posture, root events and the latest root record.",
        rows,
        account_multi=False,
        time_from="now-7d",
    )


def exporter_health():
    a = ACCOUNT
    sweep_age = (
        f"time() - max by (instance) ({m('aws_root_exporter_sweep_last_completed_timestamp_seconds')})"
    )
    stale_limit = (
        f"2 * max by (instance) ({m('aws_root_exporter_sweep_interval_seconds')}) + {c.STALE_MARGIN_SECONDS}"
    )
    rows = [
        [
            (runbook(stat("Targets up", f"sum(up{promql.selector(job=JOB)})", "Scrape targets of the exporter that are up.",
                  steps=thresholds((None, "red"), (1, "green"))),
                      "AwsRootExporterDown", "AwsRootExporterTargetDown"), 4, 4),
            (stat("Accounts discovered", f"max({m('aws_root_accounts_discovered')})",
                  "Accounts found by discovery in the last sweep, before filters."), 4, 4),
            (stat("Accounts collected", f"count(max by (account_id) ({m('aws_root_account_info')}))",
                  "Accounts the exporter collects."), 4, 4),
            (stat("Accounts skipped", f"sum by (reason) ({m('aws_root_accounts_skipped')})",
                  "Accounts not collected, by reason.", legend="{{reason}}"), 4, 4),
            (runbook(stat("Accounts with a failing collector",
                  f"sum(1 - min by (account_id) ({m('aws_root_exporter_collector_success', a)}))",
                  "Accounts where at least one collector's last run failed.",
                  steps=ZERO_TARGET_STEPS), "AwsRootCollectionFailing"), 4, 4),
            (stat("Exporter version", f"max by (version) ({m('aws_root_exporter_build_info')})",
                  "Version of the exporter.", legend="{{version}}", text_mode="name"), 4, 4),
        ],
        [
            (timeseries("Sweep duration", [
                (f"max by (instance) ({m('aws_root_exporter_sweep_duration_seconds')})", "duration ({{instance}})"),
                (f"max by (instance) ({m('aws_root_exporter_sweep_interval_seconds')})", "interval ({{instance}})"),
            ], "Duration of the last complete sweep against the configured interval.", unit="s"), 12, 8),
            (runbook(timeseries("Time since last sweep", [
                (sweep_age, "{{instance}}"),
                (stale_limit, "stale limit ({{instance}})"),
            ], "AwsRootDataStale fires when the age crosses the stale limit.", unit="s"),
                "AwsRootDataStale"), 12, 8),
        ],
        [
            (runbook(timeseries("Collector failures by account and reason", [
                (with_account_names(increase_by("aws_root_exporter_collector_errors_total", "account_id, collector, reason", a) + " > 0"),
                 "{{account_name}} {{account_id}} {{collector}}: {{reason}}"),
            ], "Failed collector runs per interval.", bars=True),
                "AwsRootCollectionFailing"), 12, 8),
            (runbook(account_table("Failing collectors", with_account_names(
                f"max by (account_id, collector) ({m('aws_root_exporter_collector_success', a)}) == 0"),
                "Collectors whose last run for the account failed.",
                {"collector": "Collector"}), "AwsRootCollectionFailing"), 12, 8),
        ],
        [
            (timeseries("AWS API requests by operation", [
                (f"sum by (operation) (rate({m('aws_root_exporter_aws_requests_total')}[$__rate_interval]))", "{{operation}}"),
            ], "AWS API requests per second.", unit="reqps"), 12, 8),
            (timeseries("AWS API errors by operation and reason", [
                (f"sum by (operation, reason) (rate({m('aws_root_exporter_aws_request_errors_total')}[$__rate_interval])) > 0",
                 "{{operation}}: {{reason}}"),
            ], "Failed AWS API requests per second (throttling shows here first).", unit="reqps"), 12, 8),
        ],
        [
            (timeseries("Event delay by source", [
                (delay_quantile(0.5, "1h"), "p50 {{source}}"),
                (delay_quantile(0.9, "1h"), "p90 {{source}}"),
                (f"sum by (source) (rate({m('aws_root_exporter_event_delay_seconds_sum')}[1h]))\n/\n"
                 f"sum by (source) (rate({m('aws_root_exporter_event_delay_seconds_count')}[1h]))", "mean {{source}}"),
            ], "Delay between a root record's eventTime and its processing, over the last hour, "
               f"by source. Target < {c.TARGET_TIME_TO_ALERT_SECONDS} s.",
               unit="s", steps=TIME_TO_ALERT_STEPS), 12, 8),
            (runbook(timeseries("Root records processed, duplicate and rejected", [
                (f"sum by (source) (increase({m('aws_root_exporter_event_delay_seconds_count')}[$__rate_interval]))", "processed {{source}}"),
                (increase_by("aws_root_exporter_events_duplicate_total", "source"), "duplicate {{source}}"),
                (increase_by("aws_root_exporter_events_rejected_total", "source, reason"), "rejected {{source}}: {{reason}}"),
            ], "Root records per interval by source; rejected with reason malformed_root_record or "
               "poison pages AwsRootActivityRecordRejected.", bars=True),
                "AwsRootActivityRecordRejected"), 12, 8),
        ],
        [
            (runbook(stat("Last configuration reload succeeded",
                  f"min by (instance) ({m('aws_root_exporter_config_last_reload_successful')})",
                  "No when the last configuration reload (POST /-/reload or SIGHUP) failed and the "
                  "previous configuration still runs (AwsRootExporterConfigReloadFailed).",
                  legend="{{instance}}", mappings=yes_no(1)),
                      "AwsRootExporterConfigReloadFailed"), 12, 4),
            (stat("Configuration loaded",
                  f"time() - max by (instance) ({m('aws_root_exporter_config_last_reload_success_timestamp_seconds')})",
                  "Time since the configuration was last loaded successfully (at start or by a reload).",
                  unit="s", legend="{{instance}}"), 12, 4),
        ],
        [
            (runbook(table("Centralized root access", [
                (f"max by (feature) ({m('aws_root_organization_feature_enabled')})", ""),
            ], "Organization features for centralized root access (1 = enabled; no row while "
               "trusted access for IAM is off: unknown). A feature the setting "
               "central_root_access_required lists and that is not enabled raises "
               "AwsRootCentralRootAccessDisabled.",
                hide=("Time",), rename={"feature": "Feature", "Value": "Enabled"},
                mappings=yes_no(1)), "AwsRootCentralRootAccessDisabled"), 24, 8),
        ],
    ]
    return dashboard(
        "aws-root-exporter-health",
        "AWS root: exporter health",
        "Is the exporter seeing everything: sweeps, collector failures, AWS API errors, and "
        "the delay between a root record and its processing.",
        rows,
        time_from="now-6h",
    )


DASHBOARDS = {
    "aws-root-overview.json": overview,
    "aws-root-account.json": account_detail,
    "aws-root-exporter-health.json": exporter_health,
}


def render(builder) -> str:
    return json.dumps(builder(), indent=2, ensure_ascii=False, cls=JSONEncoder) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    try:  # all of them first: a failure writes none
        texts = {name: render(builder) for name, builder in DASHBOARDS.items()}
    except SourceError as error:
        print(f"dashboards.generate: {error}", file=sys.stderr)
        return 2
    stale = []
    for name, text in texts.items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date, run python -m dashboards.generate:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
