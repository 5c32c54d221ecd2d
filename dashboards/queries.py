"""Every PromQL query of the committed dashboards, with Grafana variables substituted.

`dashboard_queries()` lets a test run each panel query against a real Prometheus (for
example the end-to-end test against the sandbox exporter) or parse it with promtool.
`$job` becomes the job variable's saved default (the job the alert rules select) unless
`variables={"job": "root"}` picks another, as a Grafana user picks it from the menu.
Importable as `dashboards.queries` (from the repository root), by path, or with `dashboards/` on
sys.path; it only needs the standard library.
"""

from __future__ import annotations

import json
import pathlib
import re

DASHBOARD_DIR = pathlib.Path(__file__).resolve().parent

# Grafana variables and the values that make a query valid and broad in plain Prometheus.
SUBSTITUTIONS = {
    "account": ".*",  # used as account_id=~"$account": all accounts
    "ou": ".*",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_WRAPPED = re.compile(r"^\s*(?:label_values|query_result)\((.*?)(?:,\s*\w+)?\)\s*$", re.S)


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replace Grafana variables (SUBSTITUTIONS, then `variables`); unknown variables are
    left as they are."""
    values = {**SUBSTITUTIONS, **(variables or {})}

    def repl(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(repl, expr)


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows hold their panels


def _variable_expr(query) -> str | None:
    """The PromQL inside a query variable: label_values(EXPR, label) / query_result(EXPR)."""
    if isinstance(query, dict):
        query = query.get("query")
    if not isinstance(query, str):
        return None
    wrapped = _WRAPPED.match(query)
    return wrapped.group(1) if wrapped else query


def _saved_job(dashboard: dict) -> dict[str, str]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("name") == "job":
            return {"job": variable["current"]["value"]}
    return {}


def dashboard_queries(directory: pathlib.Path | str = DASHBOARD_DIR,
                      variables: dict[str, str] | None = None,
                      raw: bool = False) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every panel target and query variable;
    `raw` keeps the Grafana variables as they are in the JSON."""
    out: list[tuple[str, str, str]] = []
    for path in sorted(pathlib.Path(directory).glob("*.json")):
        dashboard = json.loads(path.read_text())
        uid = dashboard["uid"]
        values = {**_saved_job(dashboard), **(variables or {})}

        def add(title: str, expr: str) -> None:
            out.append((uid, title, expr if raw else substitute(expr, values)))

        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                expr = _variable_expr(variable.get("query"))
                if expr:
                    add(f"variable {variable['name']}", expr)
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    add(panel["title"], target["expr"])
    return out
