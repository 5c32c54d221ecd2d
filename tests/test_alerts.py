"""Checks of the alerting rules, their promtool unit tests, the runbook and Alertmanager routing.

Runs the real tools: `promtool check rules`, `promtool test rules`, `amtool check-config`
and `amtool config routes test`. They are required, not optional: a missing binary fails.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from alerts import config

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALERTS = ROOT / "alerts"
RULES_FILE = ALERTS / "aws-root-exporter.rules.yml"
PROMTOOL_TESTS = sorted((ALERTS / "tests").glob("*.yml"))
RUNBOOK = ALERTS / "runbook.md"
AM_CONFIG = ALERTS / "alertmanager.example.yml"
METRICS_DOC = ROOT / "README.md"  # the Metrics section holds the metric table


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian: prometheus / prometheus-alertmanager)"
    return path


def run(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def load_rules() -> list[dict]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


ALERT_RULES = [r for r in load_rules() if "alert" in r]
RECORDING_RULES = [r for r in load_rules() if "record" in r]
ALERT_NAMES = sorted({r["alert"] for r in ALERT_RULES})
RECORD_NAMES = sorted({r["record"] for r in RECORDING_RULES})


def load_promtool_tests() -> list[dict]:
    cases = []
    for path in PROMTOOL_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.append(test)
    return cases


# --- generated file -----------------------------------------------------------------


def test_committed_rules_equal_generator_output():
    result = run(sys.executable, "-m", "alerts.generate", "--stdout")
    assert result.returncode == 0, result.stderr
    assert result.stdout == RULES_FILE.read_text(), (
        "alerts/aws-root-exporter.rules.yml is out of date: run python -m alerts.generate"
    )


def test_rules_use_the_configured_job_selector():
    for rule in load_rules():
        selectors = re.findall(r"\b(?:aws_root_\w+|up)\{([^}]*)\}", rule["expr"])
        for sel in selectors:
            assert config.JOB_SELECTOR in sel, (rule.get("alert") or rule["record"], sel)


def documented_metrics() -> set[str]:
    names = set(re.findall(r"^\| `(aws_root_\w+)` \|", METRICS_DOC.read_text(), re.M))
    assert len(names) > 20, "could not read the metric table of README.md (Metrics)"
    return names


def test_rules_only_use_documented_metrics():
    known = documented_metrics()
    text = RULES_FILE.read_text()
    # Names of the exporter's metrics, not the recorded ones (which contain colons).
    used = set(re.findall(r"(?<![\w:])(aws_root_\w+)(?![\w:])", text))
    assert used, "no aws_root_ metric found in the rules"
    unknown = {
        name
        for name in used
        if name not in known and re.sub(r"_(bucket|sum|count)$", "", name) not in known
    }
    assert not unknown, f"metrics not in README.md (Metrics): {sorted(unknown)}"


# --- promtool -------------------------------------------------------------------------


def test_promtool_check_rules():
    result = run(tool("promtool"), "check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"SUCCESS: (\d+) rules found", result.stdout)
    assert found, result.stdout
    assert int(found.group(1)) == len(ALERT_RULES) + len(RECORDING_RULES)


def test_promtool_unit_tests_pass():
    assert PROMTOOL_TESTS, "no promtool tests in alerts/tests/"
    result = run(tool("promtool"), "test", "rules", *map(str, PROMTOOL_TESTS))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "FAILED" not in output, output
    # One "Unit Testing: <file>" block per file, each followed by SUCCESS.
    blocks = re.findall(r"Unit Testing:\s+(\S+)\s+(SUCCESS|FAILED)", output)
    assert sorted(pathlib.Path(f).name for f, _ in blocks) == sorted(
        p.name for p in PROMTOOL_TESTS
    ), output
    assert all(status == "SUCCESS" for _, status in blocks), output


def test_promtool_unit_tests_can_fail(tmp_path):
    """A wrong expectation must make promtool fail: the suite is not vacuous."""
    source = ALERTS / "tests" / "activity.yml"
    doc = yaml.safe_load(source.read_text())
    doc["rule_files"] = [str(RULES_FILE)]
    case = next(
        c for t in doc["tests"] for c in t["alert_rule_test"] if c["exp_alerts"]
    )
    case["exp_alerts"][0]["exp_annotations"]["description"] += " (tampered)"
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(doc))
    result = run(tool("promtool"), "test", "rules", str(broken))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_positive_and_negative_promtool_cases(name):
    cases = [
        case
        for test in load_promtool_tests()
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == name
    ]
    positive = [c for c in cases if c.get("exp_alerts")]
    negative = [c for c in cases if not c.get("exp_alerts")]
    assert positive, f"{name}: no promtool case where the alert fires"
    assert negative, f"{name}: no promtool case where the alert must not fire"
    for case in positive:
        for exp in case["exp_alerts"]:
            assert exp.get("exp_labels"), f"{name} @ {case['eval_time']}: no exp_labels"
            annotations = exp.get("exp_annotations", {})
            assert set(annotations) == {"summary", "description", "runbook_url"}, (
                f"{name} @ {case['eval_time']}: exp_annotations must assert all annotations"
            )


@pytest.mark.parametrize("record", RECORD_NAMES)
def test_every_recording_rule_has_promtool_cases(record):
    cases = [
        case
        for test in load_promtool_tests()
        for case in test.get("promql_expr_test", [])
        if re.search(rf"(?<![\w:]){re.escape(record)}(?![\w:])", case["expr"])
    ]
    with_data = [c for c in cases if c.get("exp_samples")]
    assert with_data, f"{record}: no promtool case with expected samples"
    outcomes = {
        yaml.safe_dump(c.get("exp_samples") or [], sort_keys=True) for c in cases
    }
    assert len(outcomes) >= 2, (
        f"{record}: needs a second case with a different result (negative or changed value)"
    )


# --- alert contents -------------------------------------------------------------------


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda r: r["alert"])
def test_alert_labels_and_annotations(rule):
    name = rule["alert"]
    assert re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", name), f"{name} is not CamelCase"
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert set(annotations) >= {"summary", "description", "runbook_url"}
    assert annotations["summary"].strip() and "{{" not in annotations["summary"], (
        "summary must be static"
    )
    if not rule["expr"].startswith("absent("):  # absent() has no labels to template
        assert "{{" in annotations["description"], "description must be templated"
    assert annotations["runbook_url"] == f"{config.RUNBOOK_BASE_URL}#{name.lower()}"
    if "account_id" in rule["expr"]:
        assert "$labels.account_id" in annotations["description"]
        assert "account_name" in annotations["description"]


@pytest.mark.parametrize("rule", [r for r in ALERT_RULES if "account_id" in r["expr"]], ids=lambda r: r["alert"])
def test_account_names_are_looked_up_not_joined(rule):
    """A join with aws_root_account_info needs a fallback copy of the expression, or a missing
    info series silences the alert; the names come from a template lookup instead
    (alerts/tests/*.yml: the same alerts fire with and without the info series)."""
    assert "aws_root_account_info" not in rule["expr"]
    for label in ("account_name", "ou_name"):
        assert "aws_root_account_info" in rule["labels"][label] and "| query" in rule["labels"][label]


def test_alert_names_are_unique():
    assert len(ALERT_NAMES) == len(ALERT_RULES)


def test_break_glass_activity_does_not_page_and_unapproved_does():
    by_name = {r["alert"]: r for r in ALERT_RULES}
    approved = by_name["AwsRootBreakGlassActivity"]
    assert approved["labels"]["severity"] == "info"
    assert 'approved="true"' in approved["expr"]
    unapproved = by_name["AwsRootApiActivity"]
    assert unapproved["labels"]["severity"] == "critical"
    assert 'approved!="true"' in unapproved["expr"]


def test_approved_console_login_does_not_page_and_unapproved_does():
    by_name = {r["alert"]: r for r in ALERT_RULES}
    login = by_name["AwsRootConsoleLogin"]
    assert login["labels"]["severity"] == "critical"
    assert 'approved!="true"' in login["expr"] and 'approved="true"' not in login["expr"]
    approved = by_name["AwsRootBreakGlassLogin"]
    assert approved["labels"]["severity"] == "info"
    assert "for" not in approved
    assert 'outcome="success",approved="true"' in approved["expr"]
    # Failed sign-ins count whatever the window says.
    assert "approved" not in by_name["AwsRootConsoleLoginFailures"]["expr"]


def test_console_login_fires_without_delay():
    rule = next(r for r in ALERT_RULES if r["alert"] == "AwsRootConsoleLogin")
    assert "for" not in rule
    assert rule["labels"]["severity"] == "critical"


def github_anchor(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def runbook_anchors() -> list[str]:
    return [github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", RUNBOOK.read_text(), re.M)]


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda r: r["alert"])
def test_runbook_anchor_exists(rule):
    anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
    assert anchor in runbook_anchors(), f"runbook.md has no section #{anchor}"


def test_runbook_has_no_section_for_unknown_alerts():
    sections = re.findall(r"^## (Aws\w+)$", RUNBOOK.read_text(), re.M)
    assert sorted(sections) == ALERT_NAMES


# --- Alertmanager ---------------------------------------------------------------------


def test_amtool_check_config():
    result = run(tool("amtool"), "check-config", str(AM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def routed_receiver(*labels: str) -> str:
    result = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda r: r["alert"])
def test_routing_pages_only_critical(rule):
    severity = rule["labels"]["severity"]
    receiver = routed_receiver(
        f"alertname={rule['alert']}", f"severity={severity}", "account_id=111111111111"
    )
    expected = "pager" if severity == "critical" else "security-tickets"
    assert receiver == expected


def test_routing_groups_by_account_and_alertname():
    doc = yaml.safe_load(AM_CONFIG.read_text())
    assert set(doc["route"]["group_by"]) == {"account_id", "alertname"}
    urls = {
        r["name"]: [w["url"] for w in r.get("webhook_configs", [])] for r in doc["receivers"]
    }
    assert urls == {
        "pager": ["http://127.0.0.1:5001/pager"],
        "security-tickets": ["http://127.0.0.1:5001/tickets"],
    }


# --- alerts/README.md -----------------------------------------------------------------


def readme_table(heading: str) -> list[list[str]]:
    """Rows (cells) of the first table under `## heading` in alerts/README.md."""
    text = (ALERTS / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_readme_lists_every_alert_with_its_severity():
    listed = [(cells[0].strip("`"), cells[1]) for cells in readme_table("Alerts")]
    generated = [(r["alert"], r["labels"]["severity"]) for r in ALERT_RULES]
    assert sorted(listed) == sorted(generated), "alerts/README.md (Alerts) differs from the generated rules"


def test_readme_lists_every_recording_rule():
    listed = [cells[0].strip("`") for cells in readme_table("Recording rules")]
    assert sorted(listed) == RECORD_NAMES, "alerts/README.md (Recording rules) differs from the generated rules"


# --- runbook base URL -----------------------------------------------------------------


def test_runbook_base_url_is_one_setting_of_the_generator():
    base = "https://git.example.com/sec/aws-root-exporter/blob/main/alerts/runbook.md"
    result = run(sys.executable, "-m", "alerts.generate", "--stdout", "--runbook-base-url", base)
    assert result.returncode == 0, result.stderr
    rules = [r for g in yaml.safe_load(result.stdout)["groups"] for r in g["rules"] if "alert" in r]
    assert [r["annotations"]["runbook_url"] for r in rules] == [f"{base}#{r['alert'].lower()}" for r in ALERT_RULES]
    # Nothing but the runbook address differs from the committed file.
    assert result.stdout.replace(base, config.RUNBOOK_BASE_URL) == RULES_FILE.read_text()


@pytest.mark.parametrize("bad", ["git.example.com/runbook.md", "https://wiki.example.com/runbook#top", ""])
def test_runbook_base_url_that_is_no_url_is_refused(bad):
    before = RULES_FILE.read_text()
    result = run(sys.executable, "-m", "alerts.generate", "--runbook-base-url", bad)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"alerts.generate: --runbook-base-url {bad!r} is not an http(s) URL without a fragment:"
        " give the address of runbook.md, e.g. https://git.example.com/aws-root-exporter/blob/main/alerts/runbook.md\n"
    )
    assert RULES_FILE.read_text() == before


# --- aws commands in the runbook --------------------------------------------------------
# The runbook's `aws` commands, in its sh blocks and inline, are checked like those of
# docs/deployment.md (tests/test_deployment_doc.py): a real operation of botocore's service
# model, only options the CLI has, with the required ones. Placeholders (<trail-arn>) stand
# for values.


def runbook_aws_commands(text: str) -> list:
    from .test_deployment_doc import _simple_commands as parse, fenced_blocks

    def _simple_commands(line: str, *args) -> list:
        # `<trail-arn>` is a placeholder, not a redirection; `aws s3api` is the CLI's name
        # for botocore's `s3` model.
        line = re.sub(r"<([\w -]+)>", lambda m: m.group(1).replace(" ", "-"), line)
        return parse(line.replace("aws s3api ", "aws s3 "), *args)

    commands = []
    for index, block in enumerate(fenced_blocks(text)):
        if block.lang not in ("sh", "bash"):
            continue
        logical = re.sub(r"\\\n\s*", " ", block.text)
        for offset, line in enumerate(logical.splitlines()):
            if line.startswith("aws "):
                # The command alone: a jq filter after the pipe spans several lines.
                commands += _simple_commands(re.split(r"\s\|\s", line, maxsplit=1)[0], block.line + 1 + offset, index, None)
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.M | re.S)
    for span in re.findall(r"(?<!`)`(aws [^`]+)`(?!`)", prose):
        line = text.count("\n", 0, text.find(span.split("\n")[0])) + 1
        commands += _simple_commands(" ".join(span.split()), line, -1, None)
    return sorted(commands, key=lambda c: c.line)


def test_runbook_aws_commands_are_real_operations_with_real_options():
    from .test_deployment_doc import problems_aws

    commands = runbook_aws_commands(RUNBOOK.read_text())
    assert len(commands) >= 30, len(commands)
    assert problems_aws(commands) == []


def test_runbook_aws_check_can_fail():
    from .test_deployment_doc import problems_aws

    text = (
        "Run `aws cloudtrail start-logging`, then\n\n```sh\naws events put-rule --region us-east-1 --rule x \\\n"
        "  --state ENABLED | jq -r '.x\n  | y'\n```\n"
    )
    assert problems_aws(runbook_aws_commands(text)) == [
        "line 1: aws cloudtrail start-logging: the required option --name is missing",
        "line 4: aws events put-rule: no option --rule",
        "line 4: aws events put-rule: the required option --name is missing",
    ]
