"""PromQL building blocks shared by the alert rules (alerts/generate.py) and the Grafana
dashboards (dashboards/generate.py). Values (job selector, windows, thresholds) live in
alerts/config.py; this module only turns them into query text.
"""

from __future__ import annotations

from alerts import config


def selector(*matchers: str) -> str:
    """`{job="aws-root-exporter",<matchers>}`."""
    return "{" + ",".join([config.JOB_SELECTOR, *matchers]) + "}"


def metric(name: str, *matchers: str) -> str:
    """A metric of the exporter: `name{job="aws-root-exporter",<matchers>}`."""
    return name + selector(*matchers)


def eq(label: str, value: str) -> str:
    """An equality matcher: `label="value"`."""
    return f'{label}="{value}"'


def regex_alternation(values: list[str]) -> str:
    return "|".join(values)


# Account names come from aws_root_account_info. `max by` removes duplicates when two
# replicas expose the same account, which would otherwise break the one-to-one join.
ACCOUNT_INFO = f"max by (account_id, account_name, ou_name) ({metric('aws_root_account_info')})"


def with_account_names(expr: str, compact: bool = False) -> str:
    """Add account_name and ou_name to every series of expr.

    The `or on (account_id)` branch keeps the series when aws_root_account_info is missing
    for the account: a missing name must never silence an alert or hide a table row.
    `compact` writes expr on the parentheses' lines (the dashboards' layout); otherwise
    expr and the info series are indented on their own lines (the rules file's layout).
    """
    if compact:
        return (
            f"({expr})\n* on (account_id) group_left (account_name, ou_name)\n{ACCOUNT_INFO}\n"
            f"or on (account_id)\n({expr})"
        )
    return (
        f"(\n  {expr}\n)\n"
        f"* on (account_id) group_left (account_name, ou_name)\n  {ACCOUNT_INFO}\n"
        f"or on (account_id)\n(\n  {expr}\n)"
    )


# Series of the exporter that exist whenever it is scraped: the reference for "this
# counter series appeared during the window".
PRESENCE = "aws_root_exporter_build_info"


def increase_by(metric_name: str, by: str, *matchers: str, window: str) -> str:
    """Events counted in the trailing window, by `by`.

    `increase()` alone misses a counter series that appears with its first event already
    counted: it needs a sample before the event, and the activity counters are created by
    their first event (no zero series for every label combination: issue 16's budget). A
    series that appeared during the window (it has fewer samples in it than the exporter's
    always-present build_info of the same target) counts its whole value; the others count
    their increase. A Prometheus restart or an exporter restart with a state file is no
    appearance: build_info appears at the same scrape.

    `window` is a duration (`10m`, alerts) or a Grafana variable (`$__rate_interval`)."""
    series = metric(metric_name, *matchers)
    appeared = (
        f"{series} > 0\n    and\n  count_over_time({series}[{window}])\n"
        f"    < on (job, instance) group_left ()\n"
        f"  max by (job, instance) (count_over_time({metric(PRESENCE)}[{window}]))"
    )
    return f"sum by ({by}) (\n  (\n  {appeared}\n  )\n  or\n  increase({series}[{window}])\n)"
