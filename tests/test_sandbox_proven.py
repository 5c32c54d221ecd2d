"""`make demo` proves its own sight: the sandbox and the exporter as a user starts them
(`aws-root-exporter sandbox`, the demo's settings), read through /metrics only.

On a quiet sandbox (the built-in scenario without the accounts it sets up to fail) every
collected account is proven on every configured source, each canary's delay was observed
and within that source's bound, and no path is blind. On the built-in scenario itself the
one account whose member role cannot be assumed is the only blind one: nothing can prove
what the exporter cannot reach.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from exporter.cli import DEMO_DEFAULTS
from exporter.sandbox import load_scenario

from .conftest import ROOT, http_get, parse_metrics, reap, sample, stop_cleanly, tool
from .scenario_expect import collected, expected_error

SOURCES = ("eventbridge_sqs", "s3_trail", "lookup_events")
# From start to every account proven: the sandbox delivers in seconds (README, the sandbox
# command); the deadline leaves room for a machine shared with other tests.
DEADLINE = 90.0
BLIND = "aws_root_monitoring_blind_since_timestamp_seconds"


def run_demo(tmp_path: Path, scenario: Path | None) -> tuple[subprocess.Popen[str], str, Path]:
    """`aws-root-exporter sandbox` as `make demo` runs it (without Prometheus), its output in a file."""
    log = tmp_path / "demo.log"
    command = [tool("aws-root-exporter"), "sandbox", "--no-prometheus", "--web.listen-address", "127.0.0.1:0"]
    if scenario is not None:
        command += ["--scenario", str(scenario)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (match := re.search(r"Exporter metrics:\s+(http://127\.0\.0\.1:\d+)/metrics", log.read_text())):
        assert process.poll() is None and time.monotonic() < deadline, "no banner:\n" + log.read_text()
        time.sleep(0.2)
    return process, match.group(1), log


def metrics(url: str) -> dict[str, Any]:
    status, _, body = http_get(url + "/metrics")
    assert status == 200
    return parse_metrics(body.decode())


def accounts(families: dict[str, Any], source: str, state: str) -> float | None:
    return sample(families, "aws_root_monitoring_accounts", source=source, region="us-east-1", state=state)


def blind_paths(families: dict[str, Any]) -> set[tuple[str, str, str]]:
    family = families.get(BLIND)
    return {(s.labels["account_id"], s.labels["source"], s.labels["reason"]) for s in (family.samples if family else [])}


def wait_until_proven(url: str, expected: int, log: Path) -> dict[str, Any]:
    """Metrics once `expected` accounts are proven on every source (pending gone)."""
    start = time.monotonic()
    while True:
        families = metrics(url)
        if all(accounts(families, s, "proven") == expected and accounts(families, s, "pending") == 0 for s in SOURCES):
            return families
        states = {s: [accounts(families, s, state) for state in ("proven", "pending", "blind")] for s in SOURCES}
        assert time.monotonic() - start < DEADLINE, f"not proven within {DEADLINE} s (proven, pending, blind): {states}\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def assert_delays_within_bounds(families: dict[str, Any]) -> None:
    """Each source's canary delay histogram has observations, all within its demo bound."""
    bounds = DEMO_DEFAULTS["canary_bounds_seconds"]
    for source in SOURCES:
        count = sample(families, "aws_root_monitoring_canary_delay_seconds_count", source=source)
        assert count is not None and count >= 1, source
        buckets = {
            float(s.labels["le"]): s.value
            for s in families["aws_root_monitoring_canary_delay_seconds"].samples
            if s.name.endswith("_bucket") and s.labels["source"] == source
        }
        within = max(le for le in buckets if le <= bounds[source])
        assert buckets[within] == count, (source, buckets)


def test_a_quiet_sandbox_is_proven_on_every_source_with_no_blind_path(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "exporter/sandbox/default.yaml").read_text())
    # The accounts set up to fail, made healthy: what is left is a quiet organization.
    for account in data["accounts"]:
        for key in ("assume_role", "faults"):
            account.pop(key, None)
        account.get("credential_report", {}).pop("malformed", None)
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(yaml.safe_dump(data))
    scenario = load_scenario(quiet)
    assert not any(expected_error(a) for a in scenario.all_accounts)
    process, url, log = run_demo(tmp_path, quiet)
    try:
        expected = sum(1 for a in scenario.all_accounts if collected(a))
        families = wait_until_proven(url, expected, log)
        assert blind_paths(families) == set()
        assert all(accounts(families, s, "blind") == 0 for s in SOURCES)
        assert_delays_within_bounds(families)
        # The configuration checks (every 30 s in the demo) read every account's trail and
        # forwarder rule: once the second pass has started, the first one's findings are
        # published, and they are that the deployment is in place.
        start = time.monotonic()
        while (sample(families, "aws_root_exporter_aws_requests_total", operation="events:DescribeRule") or 0) < 2 * expected:
            assert time.monotonic() - start < DEADLINE, "the configuration checks did not run twice"
            time.sleep(0.5)
            families = metrics(url)
        assert blind_paths(families) == set()
        stop_cleanly(process)
    finally:
        reap(process)


def test_the_demo_is_proven_everywhere_but_where_the_exporter_cannot_reach(tmp_path: Path) -> None:
    scenario = load_scenario()
    unreachable = {a.id for a in scenario.all_accounts if expected_error(a) == "assume_role_failed"}
    assert unreachable, "the built-in scenario has an account whose member role cannot be assumed"
    process, url, log = run_demo(tmp_path, None)
    try:
        reachable = sum(1 for a in scenario.all_accounts if collected(a) and a.id not in unreachable)
        start = time.monotonic()
        while True:
            families = metrics(url)
            if all(accounts(families, s, "proven") == reachable for s in SOURCES):
                break
            assert time.monotonic() - start < DEADLINE, f"not proven within {DEADLINE} s\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        # Only the unreachable account is blind, for the checks (they cannot read it), on the
        # queue sources they judge; its canary paths stay pending until their bound passes.
        assert {account for account, _, _ in blind_paths(families)} <= unreachable
        assert {(source, reason) for _, source, reason in blind_paths(families)} <= {
            ("eventbridge_sqs", "check_failed"), ("s3_trail", "check_failed"),
            ("eventbridge_sqs", "canary_missing"), ("s3_trail", "canary_missing"), ("lookup_events", "canary_missing"),
        }
        assert_delays_within_bounds(families)
        assert "nothing proves its sight: it shows as blind" in log.read_text()
        stop_cleanly(process)
    finally:
        reap(process)
