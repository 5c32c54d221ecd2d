"""Every PromQL expression the documentation shows a user is valid: in a ```promql block,
and inline (`...`) in any tracked Markdown file or dashboard panel description.

A user copies these first; the README's join example was once rejected by Prometheus
("vector matching only allowed between instant vectors"). Each block is split into
expressions: a line starting in column 0 begins a new one, an indented line continues the
previous one. Each must parse (promtool) and run on a real Prometheus.
"""

from __future__ import annotations

import json
import re
import urllib.error
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .test_dashboards import _query, prometheus  # noqa: F401  (the module-scoped fixture)

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```promql\n(.*?)^```", re.MULTILINE | re.DOTALL)


def markdown_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=False)
    if listed.returncode == 0 and listed.stdout.strip():
        return [ROOT / name for name in listed.stdout.split()]
    return [p for p in ROOT.rglob("*.md") if ".venv" not in p.parts]


def expressions(text: str) -> list[str]:
    found = []
    for block in BLOCK.findall(text):
        current: list[str] = []
        for line in block.splitlines():
            if not line.strip():
                continue
            if not line[0].isspace() and current:
                found.append("\n".join(current))
                current = []
            current.append(line)
        if current:
            found.append("\n".join(current))
    return found


DOC_QUERIES = [(path.relative_to(ROOT).as_posix(), expr) for path in markdown_files() for expr in expressions(path.read_text())]


def test_the_documentation_shows_queries():
    where = {doc for doc, _ in DOC_QUERIES}
    assert {"README.md", "docs/deployment.md", "docs/scp.md"} <= where, where


def test_expression_splitting():
    text = "```promql\na == 0\n  * on (x) b\nc  # comment\n```\n"
    assert expressions(text) == ["a == 0\n  * on (x) b", "c  # comment"]


def _promtool_check(tmp_path: Path, exprs: list[str]) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package prometheus)"
    rules = [{"record": f"doc_query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "doc-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "doc-queries", "rules": rules}]}))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False)


def test_every_documented_query_parses(tmp_path):
    result = _promtool_check(tmp_path, [expr for _, expr in DOC_QUERIES])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_rejects_the_old_readme_join(tmp_path):
    old = "aws_root_mfa_enabled == 0\n  * on (account_id) group_left (account_name, ou_name) aws_root_account_info"
    result = _promtool_check(tmp_path, [old])
    assert result.returncode != 0
    assert "vector matching only allowed between instant vectors" in result.stdout + result.stderr


@pytest.mark.parametrize(("doc", "expr"), DOC_QUERIES, ids=[f"{doc}:{i}" for i, (doc, _) in enumerate(DOC_QUERIES)])
def test_every_documented_query_runs_on_prometheus(prometheus, doc, expr):  # noqa: F811
    try:
        result = _query(prometheus, expr)
    except urllib.error.HTTPError as error:  # Prometheus answers 400 with the reason in JSON
        result = json.loads(error.read())
    assert result.get("status") == "success", (doc, expr, result.get("error"))


# Inline code that names one of our series is a query too when a reader can paste it: the
# runbook's `aws_root_exporter_collector_success == 0`, a panel description's selector. Spans that
# are notation, not queries, are recognised by a mark of notation and left out; everything
# else must parse and run, so a new inline query is checked without anyone listing it.
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
SERIES = re.compile(r"\b(?:[a-z_]+:)?aws_root_[a-z0-9_]+(?::[a-z0-9_]+)?\b")
NOTATION = (
    re.compile(r"\.\.\."),  # a placeholder: {policy_id=...}
    re.compile(r"<[a-z_ -]+>"),  # a placeholder: {account_id="<sandbox>"}
    re.compile(r'"\|"'),  # alternatives: {state="fenced"|"not_fenced"}
    re.compile(r"^[a-z_:]+(\{[^}]*\})?\s+[-+]?[0-9][0-9.e+-]*$"),  # an exposition sample with its value
    re.compile(r"\{[a-z_, ]+\}"),  # label names without values: {account_id,signal}
    re.compile(r"_\*"),  # a family of names: aws_root_break_glass_window_*
    re.compile(r"^/"),  # a URL path such as /metrics?name[]=...
)


def inline_queries(text: str) -> list[str]:
    spans = INLINE.findall(FENCE.sub("", text))
    return [s for s in spans if SERIES.search(s) and not SERIES.fullmatch(s) and not any(n.search(s) for n in NOTATION)]


def dashboard_descriptions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        def walk(node):
            if isinstance(node, dict):
                if isinstance(node.get("description"), str):
                    found.append((path.relative_to(ROOT).as_posix(), node["description"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
        walk(json.loads(path.read_text()))
    return found


INLINE_QUERIES = sorted(
    {(path.relative_to(ROOT).as_posix(), q) for path in markdown_files() for q in inline_queries(path.read_text())}
    | {(where, q) for where, text in dashboard_descriptions() for q in inline_queries(text)}
)


def test_inline_query_extraction():
    text = ("Alert on `aws_root_exporter_collector_success == 0`; the series `aws_root_mfa_enabled`; a sample "
            "`aws_root_exporter_events_duplicate_total{source=\"x\"} 1`; `aws_root_scp_fence_info{policy_id=...}`; "
            "`aws_root_recovery_signals_total{account_id,signal}`; `aws_root_break_glass_window_*`.\n"
            "```promql\nsum(aws_root_mfa_enabled)\n```\n")
    assert inline_queries(text) == ["aws_root_exporter_collector_success == 0"]


def test_the_documentation_shows_inline_queries():
    where = {doc for doc, _ in INLINE_QUERIES}
    assert {"alerts/runbook.md", "docs/performance.md"} <= where, where


def test_every_inline_query_parses(tmp_path):
    result = _promtool_check(tmp_path, [q for _, q in INLINE_QUERIES])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("doc", "expr"), INLINE_QUERIES, ids=[f"{doc}:inline{i}" for i, (doc, _) in enumerate(INLINE_QUERIES)])
def test_every_inline_query_runs_on_prometheus(prometheus, doc, expr):  # noqa: F811
    try:
        result = _query(prometheus, expr)
    except urllib.error.HTTPError as error:
        result = json.loads(error.read())
    assert result.get("status") == "success", (doc, expr, result.get("error"))
