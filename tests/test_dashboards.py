"""Checks of the generated Grafana dashboards.

- the committed JSON equals the generator's output;
- each dashboard validates against the JSON Schema generated from @grafana/schema
  (dashboards/schema/dashboard.schema.json), and that schema does reject bad dashboards;
- every panel query (dashboards/queries.py, variables substituted) parses with promtool and
  only uses metrics documented in README.md (Metrics);
- datasource variable, `job`, `ou` and `account` variables, stable uids, KPI targets, layout;
- every query selects the exporter by `job="$job"`: under a scrape job of another name
  (`job_name: root`) the panels show data once the variable is set to it;
- panels that mirror an alert link to its section of alerts/runbook.md, at an anchor that
  the runbook's headings really have on GitHub.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import jsonschema
import pytest
import yaml

from alerts import config, promql
from dashboards.queries import dashboard_queries, substitute

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
SCHEMA = json.loads((DASHBOARDS / "schema" / "dashboard.schema.json").read_text())
METRICS_DOC = ROOT / "README.md"  # the Metrics section holds the metric table

EXPECTED = {
    "aws-root-overview.json": "aws-root-overview",
    "aws-root-account.json": "aws-root-account",
    "aws-root-exporter-health.json": "aws-root-exporter-health",
}


def load(name: str) -> dict:
    return json.loads((DASHBOARDS / name).read_text())


def all_panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_committed_dashboards_equal_generator_output():
    result = subprocess.run(
        [sys.executable, "-m", "dashboards.generate", "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_files_are_the_expected_ones():
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_matches_grafana_schema(name):
    jsonschema.validate(load(name), SCHEMA)


def test_schema_rejects_broken_dashboards():
    """The schema is not vacuous: typical mistakes are caught."""
    good = load("aws-root-overview.json")
    broken_variants = []
    d = copy.deepcopy(good)
    del d["schemaVersion"]
    broken_variants.append(d)
    d = copy.deepcopy(good)
    del d["panels"][0]["type"]
    broken_variants.append(d)
    d = copy.deepcopy(good)
    d["panels"][0]["gridPos"] = {"x": 0, "y": 0}
    broken_variants.append(d)
    d = copy.deepcopy(good)
    d["templating"]["list"][0]["type"] = "not-a-variable-type"
    broken_variants.append(d)
    d = copy.deepcopy(good)
    d["time"] = {"from": "now-1h"}
    broken_variants.append(d)
    for broken in broken_variants:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_uid_variables_and_datasource(name):
    d = load(name)
    assert d["uid"] == EXPECTED[name]
    assert d["schemaVersion"] >= 36  # Grafana 10+
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "ou", "account"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    job = variables["job"]
    assert job["type"] == "query"
    assert job["query"] == f"label_values({promql.PRESENCE}, job)"
    assert job["current"] == {"text": JOB, "value": JOB}
    assert job["multi"] is False and job["includeAll"] is False
    ou, account = variables["ou"], variables["account"]
    assert ou["query"] == 'label_values(aws_root_account_info{job="$job"}, ou_name)'
    assert "aws_root_account_info" in account["query"] and 'ou_name=~"$ou"' in account["query"]
    assert "(?<value>" in account["regex"] and "(?<text>" in account["regex"]
    assert re.search(r"account_id=\"\(\?<value>", account["regex"])
    for panel in all_panels(d):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in panel.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layout_has_no_overlap_and_unique_ids(name):
    d = load(name)
    panels = all_panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), "panel titles identify queries: keep them unique"
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def test_overview_kpis_against_targets():
    panels = {p["title"]: p for p in all_panels(load("aws-root-overview.json"))}

    def steps(title):
        return [(s["value"], s["color"]) for s in
                panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]]

    logins = panels["Root console logins, trailing 90 days"]
    assert logins["type"] == "stat"
    assert "aws_root_console_logins_90d" in logins["targets"][0]["expr"]
    assert steps(logins["title"]) == [
        (None, "green"), (config.TARGET_ROOT_LOGINS_PER_QUARTER + 1, "red")]

    mtta = panels["Mean time to alert"]
    assert "aws_root_exporter_event_delay_seconds_sum" in mtta["targets"][0]["expr"]
    assert mtta["fieldConfig"]["defaults"]["unit"] == "s"
    assert steps(mtta["title"]) == [(None, "green"), (config.TARGET_TIME_TO_ALERT_SECONDS, "red")]

    mfa = panels["Root MFA adoption"]
    assert 'control="mfa_enabled"' in mfa["targets"][0]["expr"]
    assert mfa["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert steps(mfa["title"]) == [(None, "red"), (config.TARGET_MFA_ADOPTION_RATIO, "green")]

    fence = panels["Root fenced by SCP"]
    assert fence["type"] == "stat"
    assert 'state="fenced"' in fence["targets"][0]["expr"]
    assert 'state="not_applicable"' in fence["targets"][0]["expr"]  # members only
    assert fence["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert steps(fence["title"]) == [(None, "red"), (config.TARGET_SCP_FENCED_RATIO, "green")]
    not_fenced = panels["Member accounts whose root is not fenced by an SCP"]
    assert 'state=~"not_fenced|unknown"' in not_fenced["targets"][0]["expr"]

    for title in ("Hardware root MFA", "Accounts with root access keys",
                  "Accounts failing a root control", "Root activity by category"):
        assert title in panels
    for p in panels.values():
        if p["type"] == "stat":
            assert p["options"]["reduceOptions"]["calcs"], p["title"]


def test_account_detail_shows_last_event_info():
    d = load("aws-root-account.json")
    exprs = " ".join(t["expr"] for p in all_panels(d) for t in p.get("targets", []))
    assert "aws_root_last_event_info" in exprs
    account = next(v for v in d["templating"]["list"] if v["name"] == "account")
    assert account["multi"] is False


def test_health_dashboard_covers_exporter_internals():
    d = load("aws-root-exporter-health.json")
    exprs = " ".join(t["expr"] for p in all_panels(d) for t in p.get("targets", []))
    for metric in ("aws_root_exporter_sweep_duration_seconds", "aws_root_exporter_collector_errors_total",
                   "aws_root_exporter_aws_request_errors_total", "aws_root_exporter_event_delay_seconds_bucket"):
        assert metric in exprs


# --- queries --------------------------------------------------------------------------

QUERIES = dashboard_queries()
RAW_QUERIES = dashboard_queries(raw=True)
# The job alerts/config.py selects: the rules' job and the dashboards' default.
JOB = config.JOB_SELECTOR.split("=", 1)[1].strip('"')


def test_dashboard_queries_cover_every_target():
    targets = sum(
        len(p.get("targets", [])) for name in EXPECTED for p in all_panels(load(name))
    )
    variables = sum(
        1 for name in EXPECTED for v in load(name)["templating"]["list"] if v["type"] == "query"
    )
    assert len(QUERIES) == targets + variables
    assert {uid for uid, _, _ in QUERIES} == set(EXPECTED.values())


def test_substitution():
    assert substitute('x{a=~"$account"}[$__rate_interval]') == 'x{a=~".*"}[5m]'
    assert substitute("increase(x[$__range])") == "increase(x[1h])"
    assert substitute("y[${__interval}]") == "y[1m]"


def test_no_variables_left_in_queries():
    leftovers = [(uid, title, expr) for uid, title, expr in QUERIES if "$" in expr]
    assert not leftovers


def test_queries_select_the_job_variable_and_documented_metrics():
    known = set(re.findall(r"^\| `(aws_root_\w+)` \|", METRICS_DOC.read_text(), re.M))
    assert len(known) > 20
    for uid, title, expr in RAW_QUERIES:
        assert config.JOB_SELECTOR not in expr, (uid, title, expr)
        assert set(re.findall(r"\bjob\s*!?=~?\s*\"([^\"]*)\"", expr)) <= {"$job"}, (uid, title, expr)
        for sel in re.findall(r"\b(?:aws_root_\w+|up)\{([^}]*)\}", expr):
            assert 'job="$job"' in sel, (uid, title, expr)
    for uid, title, expr in QUERIES:
        for name in re.findall(r"(?<![\w:])(aws_root_\w+)(?![\w:])", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in known or base in known, (uid, title, name)


def test_every_query_parses_with_promtool(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed"
    rules = [{"record": f"dashboard_query_{i}", "expr": expr}
             for i, (_, _, expr) in enumerate(QUERIES)]
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_parse_check_can_fail(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed"
    path = tmp_path / "bad.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "bad", "expr": 'sum by (x) (rate(y{a=~".*"}[$__rate_interval]))'}]}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0


# --- on a real Prometheus -------------------------------------------------------------
# Prometheus scrapes a fixed /metrics page (dashboards/testdata/metrics.prom) as the job
# the rules and dashboards select, loads the generated rules, and then every dashboard
# query must run without error, and every rule must evaluate without error.


FIXTURE = DASHBOARDS / "testdata" / "metrics.prom"
RULES_FILE = ROOT / "alerts" / "aws-root-exporter.rules.yml"

# Queries that are empty on the fixture for a stated reason; every other one must
# return data, so a typo in a label value or a broken join shows up.
EXPECTED_EMPTY = {
    # Counters are constant on the fixture: nothing increases, `> 0` filters all out.
    ("aws-root-exporter-health", "Collector failures by account and reason"),
    ("aws-root-exporter-health", "AWS API errors by operation and reason"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _query(base: str, expr: str) -> dict:
    return _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


@contextlib.contextmanager
def _prometheus(tmp: pathlib.Path, job: str, rules_text: str):
    """A real Prometheus scraping the fixture page as `job` with the given rules, once
    every rule has been evaluated on a few scrapes; yields its base URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (Debian package prometheus)"
    body = FIXTURE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    # The rules, evaluated every second instead of every minute.
    rules = yaml.safe_load(rules_text)
    for group in rules["groups"]:
        group["interval"] = "1s"
    (tmp / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yml")],
        "scrape_configs": [{
            "job_name": job,
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}],
        }],
    }))
    port = _free_port()
    log = open(tmp / "prometheus.log", "w")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}",
         f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={tmp / 'data'}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()
            assert time.monotonic() < deadline, (tmp / "prometheus.log").read_text()
            try:
                # A few scrapes, so rate() and increase() have two samples.
                result = _query(base, f'count_over_time(up{{job="{job}"}}[1m]) >= 3')
                if result["data"]["result"]:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        while True:  # every rule has been evaluated at least once
            groups = _get(f"{base}/api/v1/rules")["data"]["groups"]
            if all(r["health"] != "unknown" for g in groups for r in g["rules"]):
                break
            assert time.monotonic() < deadline, groups
            time.sleep(0.5)
        time.sleep(1.5)  # one more round, with all the data in place
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        exporter.shutdown()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """The shipped rules; the fixture scraped as the job they select."""
    with _prometheus(tmp_path_factory.mktemp("prometheus"), JOB, RULES_FILE.read_text()) as base:
        yield base


def _run_all(base: str, queries) -> tuple[list, set]:
    """(errors, (uid, title) of the queries that return no data)."""
    errors, empty = [], set()
    for uid, title, expr in queries:
        result = _query(base, expr)
        if result.get("status") != "success":
            errors.append((uid, title, result.get("error")))
        elif not result["data"]["result"]:
            empty.add((uid, title))
    return errors, empty


def test_every_dashboard_query_runs_on_prometheus(prometheus):
    errors, empty = _run_all(prometheus, QUERIES)
    assert not errors
    assert empty == EXPECTED_EMPTY


# --- under another scrape job name ------------------------------------------------------
# A user whose Prometheus has `scrape_configs: [{job_name: root, static_configs: ...}]`
# regenerates the rules for that job as alerts/README.md says (JOB_SELECTOR in
# alerts/config.py, python -m alerts.generate) and imports the dashboards unchanged.

OTHER_JOB = "root"


def _rules_for_job(tmp: pathlib.Path, job: str) -> str:
    """The rules file a user gets after setting JOB_SELECTOR to `job` in a copy of alerts/."""
    copy = tmp / "checkout"
    shutil.copytree(ROOT / "alerts", copy / "alerts",
                    ignore=shutil.ignore_patterns("tests", "__pycache__"))
    settings = copy / "alerts" / "config.py"
    text, count = re.subn(r"^JOB_SELECTOR = .*$", f"JOB_SELECTOR = 'job=\"{job}\"'",
                          settings.read_text(), flags=re.M)
    assert count == 1, "alerts/config.py has no one-line JOB_SELECTOR"
    settings.write_text(text)
    result = subprocess.run([sys.executable, "-m", "alerts.generate", "--stdout"], cwd=copy,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert f'job="{job}"' in result.stdout and config.JOB_SELECTOR not in result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def prometheus_other_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prometheus-other-job")
    with _prometheus(tmp, OTHER_JOB, _rules_for_job(tmp, OTHER_JOB)) as base:
        yield base


def test_dashboards_show_data_under_another_job_name(prometheus_other_job):
    base = prometheus_other_job
    # The job variable's query, as Grafana runs label_values(metric, label): it offers
    # `root` only, and the saved default is not among its values, so Grafana selects `root`.
    offered = _get(f"{base}/api/v1/label/job/values?"
                   + urllib.parse.urlencode({"match[]": promql.PRESENCE}))["data"]
    assert offered == [OTHER_JOB]
    for name in EXPECTED:
        job = next(v for v in load(name)["templating"]["list"] if v["name"] == "job")
        assert job["current"]["value"] not in offered
    # With the variable on `root`, every panel shows what it shows under the default job.
    errors, empty = _run_all(base, dashboard_queries(variables={"job": OTHER_JOB}))
    assert not errors
    assert empty == EXPECTED_EMPTY
    # With the job left on the default, every query that selects by job is empty: the
    # symptom the variable removes (the others read recording rules, which have no job).
    errors, empty = _run_all(base, QUERIES)
    assert not errors
    by_job = {(uid, title) for uid, title, expr in RAW_QUERIES if "$job" in expr}
    assert by_job <= empty
    assert empty - by_job == EXPECTED_EMPTY - by_job
    assert len(by_job) > 40


# --- runbook links ----------------------------------------------------------------------

RUNBOOK = ROOT / "alerts" / "runbook.md"


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (as github-slugger does: lower
    case, characters other than letters, digits, `_`, `-` and space dropped, spaces to
    `-`, a repeated slug suffixed -1, -2, ...). Lines inside fenced code are no headings."""
    anchors, seen, fenced = set(), {}, False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        heading = None if fenced else re.match(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_github_anchors_follow_githubs_rule():
    assert github_anchors("# aws-root-exporter runbook\n## Common triage steps\n"
                          "## AwsRootMfaDisabled\n```\n# not a heading\n```\n"
                          "### What `status: x` means?\n## Common triage steps") == {
        "aws-root-exporter-runbook", "common-triage-steps", "awsrootmfadisabled",
        "what-status-x-means", "common-triage-steps-1"}


def panel_runbook_links() -> list[tuple[str, str, str, str]]:
    """(dashboard uid, panel title, link title, url) of every panel link."""
    return [(d["uid"], p["title"], link["title"], link["url"])
            for d in map(load, sorted(EXPECTED)) for p in all_panels(d)
            for link in p.get("links", [])]


def test_panels_that_mirror_an_alert_link_to_its_runbook_section():
    anchors = github_anchors(RUNBOOK.read_text())
    alerts = {r["alert"]: r["annotations"]["runbook_url"]
              for g in yaml.safe_load(RULES_FILE.read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    links = panel_runbook_links()
    linked = set()
    for uid, panel, title, url in links:
        alert = title.removeprefix("Runbook: ")
        assert alert in alerts, (uid, panel, title)
        # The same page as the alert's runbook_url, at an anchor the runbook has.
        assert url == alerts[alert], (uid, panel, url)
        base, _, anchor = url.partition("#")
        assert base == config.RUNBOOK_BASE_URL
        assert anchor in anchors, (uid, panel, url)
        linked.add(alert)
    assert linked == set(alerts), "an alert whose condition no panel shows with a link"
    by_panel = {(uid, panel): [t for u, p, t, _ in links if (u, p) == (uid, panel)]
                for uid, panel, _, _ in links}
    assert by_panel[("aws-root-overview", "Root MFA adoption")] == ["Runbook: AwsRootMfaDisabled"]
    assert by_panel[("aws-root-exporter-health", "Time since last sweep")] == [
        "Runbook: AwsRootDataStale"]
    assert "Runbook: AwsRootConsoleLogin" in by_panel[("aws-root-account", "Root events")]


def test_generator_refuses_a_panel_link_to_a_missing_runbook_section(tmp_path):
    """A runbook without the AwsRootDataStale section (a copy of the repository's
    alerts/ and dashboards/): one line naming the section, exit status 2, nothing written."""
    for part in ("alerts", "dashboards"):
        shutil.copytree(ROOT / part, tmp_path / part,
                        ignore=shutil.ignore_patterns("tests", "testdata", "__pycache__"))
    runbook = tmp_path / "alerts" / "runbook.md"
    text, count = re.subn(r"^## AwsRootDataStale$", "## Data stale", runbook.read_text(), flags=re.M)
    assert count == 1
    runbook.write_text(text)
    (tmp_path / "dashboards" / "aws-root-overview.json").write_text("{}")  # out of date
    before = {p.name: p.read_bytes() for p in (tmp_path / "dashboards").glob("*.json")}
    result = subprocess.run([sys.executable, "-m", "dashboards.generate"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "dashboards.generate: alerts/runbook.md has no section for AwsRootDataStale: add a "
        "'## <alert>' heading or drop the panel's link\n")
    assert {p.name: p.read_bytes() for p in (tmp_path / "dashboards").glob("*.json")} == before


def test_account_links_keep_the_job():
    d = load("aws-root-overview.json")
    urls = [link["url"] for p in all_panels(d) for o in p["fieldConfig"].get("overrides", [])
            for prop in o["properties"] if prop["id"] == "links" for link in prop["value"]]
    assert urls and all("${job:queryparam}" in url for url in urls)


def test_account_variable_regex_extracts_id_and_name(prometheus):
    """Grafana's query_result() renders `name{l="v",...} value ts`; the regex must match it."""
    account = next(v for v in load("aws-root-overview.json")["templating"]["list"]
                   if v["name"] == "account")
    result = _query(prometheus, {t: e for _, t, e in QUERIES}["variable account"])
    pattern = re.compile(account["regex"].strip("/").replace("(?<", "(?P<"))
    pairs = set()
    for series in result["data"]["result"]:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(series["metric"].items()))
        found = pattern.search("{" + labels + "} 1 0")
        assert found, labels
        pairs.add((found["value"], found["text"]))
    assert ("111111111111", "prod") in pairs and len(pairs) == 3


def test_rules_evaluate_without_error_on_prometheus(prometheus):
    groups = _get(f"{prometheus}/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(yaml.safe_load(RULES_FILE.read_text())["groups"][0]["rules"]) + sum(
        len(g["rules"]) for g in yaml.safe_load(RULES_FILE.read_text())["groups"][1:])
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad
    # KPIs on the fixture: 1 of 3 accounts passes mfa_enabled (333333333333's posture is
    # unknown and does not count as compliant), 1 account has root access keys.
    assert _query(prometheus, "org:aws_root_mfa_adoption:ratio")["data"]["result"][0]["value"][1] \
        == str(1 / 3)
    assert _query(prometheus, "org:aws_root_accounts_with_access_keys:count")["data"]["result"][0]["value"][1] == "1"
    # SCP fence: 111111111111 fenced, 333333333333 not, 222222222222 is the management
    # account (not a member account).
    assert _query(prometheus, "org:aws_root_scp_fenced:ratio")["data"]["result"][0]["value"][1] == "0.5"
    assert _query(prometheus, "org:aws_root_scp_not_fenced:count")["data"]["result"][0]["value"][1] == "1"
    fence_kpi = {t: e for _, t, e in QUERIES}["Root fenced by SCP"]
    assert _query(prometheus, fence_kpi)["data"]["result"][0]["value"][1] == "0.5"
    rows = _query(prometheus, {t: e for _, t, e in QUERIES}[
        "Member accounts whose root is not fenced by an SCP"])["data"]["result"]
    assert [(r["metric"]["account_id"], r["metric"]["account_name"], r["metric"]["state"])
            for r in rows] == [("333333333333", "sandbox", "not_fenced")]


def test_alerts_on_prometheus_have_expanded_annotations(prometheus):
    alerts = _get(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
    by_name = {}
    for a in alerts:
        by_name.setdefault(a["labels"]["alertname"], []).append(a)
        for text in a["annotations"].values():
            assert "error expanding template" not in text, a
            assert "<no value>" not in text, a
    # The fixture's sweeps completed long ago; 222222222222 has no MFA; 333333333333 fails.
    assert {"AwsRootDataStale", "AwsRootMfaDisabled", "AwsRootCollectionFailing"} <= set(by_name)
    mfa = by_name["AwsRootMfaDisabled"][0]
    assert mfa["labels"]["account_id"] == "222222222222"
    assert mfa["labels"]["account_name"] == "management"
    failing = by_name["AwsRootCollectionFailing"][0]
    assert failing["labels"]["account_id"] == "333333333333"
    assert "access_denied" in failing["annotations"]["description"]
    assert "AwsRootExporterDown" not in by_name
    # The blind path of the fixture: its name from the series, its OU looked up, and how long
    # it has been blind from Prometheus' clock (a template query of a scalar).
    (blind,) = by_name["AwsRootMonitoringBlind"]
    assert {k: blind["labels"].get(k) for k in ("account_id", "account_name", "ou_name", "source", "region", "reason")} == {
        "account_id": "333333333333", "account_name": "sandbox", "ou_name": "Sandbox",
        "source": "eventbridge_sqs", "region": "us-east-1", "reason": "rule_disabled"}
    assert re.fullmatch(
        r"Account 333333333333 \(sandbox\): source eventbridge_sqs in region us-east-1 is blind, reason rule_disabled,"
        r" since 2023-11-14 22:13:20 \+0000 UTC \((\d+y )?(\d+d )?\d+h \d+m \d+s\)\. A root login there may not page:"
        r" follow the runbook section of the reason\.", blind["annotations"]["description"]), blind["annotations"]["description"]


def test_open_break_glass_windows_table_lists_only_open_windows(prometheus):
    result = _query(prometheus, {t: e for _, t, e in QUERIES}["Break-glass windows open now"])
    rows = [(s["metric"]["account_id"], s["metric"]["ticket"], s["metric"].get("account_name"), float(s["value"][1]))
            for s in result["data"]["result"]]
    # CHG-0 of the management account is closed (active 0); CHG-1 of prod is open until its end.
    assert rows == [("111111111111", "CHG-1", "prod", 1795600000.0)]


def test_seed_kpi_panels_against_targets():
    panels = {p["title"]: p for p in all_panels(load("aws-root-overview.json"))}
    for title, quarter in (("Root console logins, this quarter", "current"),
                           ("Root console logins, last quarter", "previous")):
        expr = panels[title]["targets"][0]["expr"]
        assert "aws_root_console_logins_quarter{" in expr and f'quarter="{quarter}"' in expr
        assert panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"] == [
            {"color": "green", "value": None},
            {"color": "red", "value": config.TARGET_ROOT_LOGINS_PER_QUARTER + 1}]
    removal = panels["Member roots without credentials"]
    assert "account_id:aws_root_credentials_removed:bool" in removal["targets"][0]["expr"]
    assert removal["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert removal["fieldConfig"]["defaults"]["thresholds"]["steps"][-1] == {
        "color": "green", "value": config.TARGET_ROOT_CREDENTIALS_REMOVED_RATIO}
    assert panels["Root credential removal burn-down"]["type"] == "timeseries"


def test_seed_kpi_queries_on_prometheus(prometheus):
    """The fixture: 111111111111 logged in once this quarter and twice last quarter,
    333333333333 once last quarter; the last quarter's count is incomplete. Neither member
    account has provably no root credential (111111111111's password state is unknown,
    333333333333 was never read): the burn-down is at 0, fail closed."""
    queries = {t: e for _, t, e in QUERIES}

    def values(title):
        return [(r["metric"], r["value"][1]) for r in _query(prometheus, queries[title])["data"]["result"]]

    assert [v for _, v in values("Root console logins, this quarter")] == ["1"]
    assert [v for _, v in values("Root console logins, last quarter")] == ["3"]
    assert sorted((m["quarter"], v) for m, v in values("Login count covers the quarter")) == [
        ("current", "1"), ("previous", "0")]
    assert sorted((m["account_id"], m.get("account_name"), m["quarter"], v)
                  for m, v in values("Root console logins per account, this and last quarter")) == [
        ("111111111111", "prod", "current", "1"), ("111111111111", "prod", "previous", "2"),
        ("333333333333", "sandbox", "previous", "1")]
    assert [v for _, v in values("Member roots without credentials")] == ["0"]
    assert [v for _, v in values("Member roots still holding credentials")] == ["2"]
    assert sorted((m["ou_name"], v) for m, v in values("Root credential removal by OU")) == [
        ("Sandbox", "0"), ("Workloads", "0")]
    assert _query(prometheus, "org:aws_root_credentials_remaining:count")["data"]["result"][0]["value"][1] == "2"
    quarterly = _query(prometheus, "quarter:aws_root_console_logins_quarter:sum")["data"]["result"]
    assert sorted((r["metric"]["quarter"], r["value"][1]) for r in quarterly) == [("current", "1"), ("previous", "3")]
