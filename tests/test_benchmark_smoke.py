"""The benchmark at N = 100 as a smoke test: counts must be right; timings are not asserted."""

from __future__ import annotations

import gzip
import http.server
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.fake_aws import access_key_for, account_ids
from benchmarks.prometheus_cost import SYNTHETIC_SERIES, PrometheusOptions, exposition_figures
from benchmarks.run import (
    ASSUME_ROLE,
    CALLER_IDENTITY,
    CANARY_LOOKUP,
    CHECK_OPERATIONS,
    LOOKUP_EVENTS,
    POSTURE_OPERATIONS,
    REPO,
    SECURITY_CONTACT,
    FakeAwsProcess,
    measure,
    measure_baseline,
    measure_shards,
)
from exporter.engine.activity import MANAGEMENT_EVENT_NAMES

LATENCY = 0.005


def test_every_account_collected_with_the_expected_requests() -> None:
    result = measure(100, LATENCY, prometheus=PrometheusOptions(scrape_interval=1.0, scrapes=3))
    assert result["accounts_collected"] == 100
    assert result["accounts_failed"] == 0
    # Cold and warm sweep: each posture operation exactly once per account.
    assert result["accounts_with_unexpected_request_counts"] == 0
    cold, warm = result["requests_by_operation"], result["warm_requests_by_operation"]
    for operation in POSTURE_OPERATIONS:
        assert cold[operation] == 100 and warm[operation] == 100
    # One AssumeRole per member account; the warm sweep reuses the cached credentials.
    assert cold[ASSUME_ROLE] == 99
    assert ASSUME_ROLE not in warm
    # Each security contact is read once, then reused for security_contact_max_age_seconds.
    assert cold[SECURITY_CONTACT] == 100
    assert SECURITY_CONTACT not in warm
    assert result["throttled_requests"] == 0
    assert result["scrapes_during_sweep"] > 0 and result["scrape_errors"] == 0
    assert result["metrics_bytes_plain"] > result["metrics_bytes_gzip"] > 0
    # One LookupEvents poll cycle, without and with a root sign-in per account: one request
    # per account (default region us-east-1) and one for the canaries (EventName=
    # GetCallerIdentity, the default monitored region), and for the management account one
    # more per event name its IAM principals are watched for (AssumeRoot, recovery-path changes).
    assert result["activity_accounts_polled"] == 100
    assert result["activity_accounts_failed"] == 0
    assert result["accounts_with_unexpected_lookup_counts"] == 0
    assert result["lookup_canary_requests_per_account"] == 1
    per_poll = 100 + 100 + len(MANAGEMENT_EVENT_NAMES)
    assert result["lookup_requests_per_account"] == pytest.approx(per_poll / 100)
    assert result["lookup_events_requests_per_account"] == pytest.approx(per_poll / 100)
    assert result["lookup_other_requests"] == {}  # credentials cached by the sweep
    assert result["lookup_throttled_requests"] == 0
    assert 1 <= result["lookup_max_per_second"] <= 2
    assert result["lookup_logins_counted_without_events"] == 0
    assert result["lookup_logins_counted"] == 100
    # Every EventBridge event put on the queue reached /metrics.
    assert len(result["sqs_to_metrics_samples_ms"]) == 5
    # The hourly figure includes 60 LookupEvents polls at the default 60 s interval.
    assert result["lookup_polls_per_hour"] == 60
    assert result["lookup_requests_per_account_hour"] == pytest.approx(60 * per_poll / 100)
    # The canary, apart from the sweeps: a round makes exactly one GetCallerIdentity per
    # account and monitored region (the one default region), nothing else (credentials
    # cached by the sweep), and none fails.
    assert result["canary_accounts"] == result["canary_paths"] == 100
    assert result["canary_failed"] == 0
    assert result["canary_round_requests"] == {CALLER_IDENTITY: 100}
    assert result["accounts_with_unexpected_canary_counts"] == 0
    assert result["canary_first_round_requests"][CALLER_IDENTITY] == 100
    assert result["canary_first_round_requests"][LOOKUP_EVENTS] == per_poll
    # New accounts: every account reads proven on both configured sources (LookupEvents and
    # the EventBridge queue, which the fake feeds with each canary record), and none is blind.
    assert result["canary_all_proven"] is True
    assert result["canary_coverage_states"] == {"eventbridge_sqs": {"proven": 100}, "lookup_events": {"proven": 100}}
    assert result["canary_blind_paths"] == 0
    assert set(result["canary_prove_by_source_max_seconds"]) == {"eventbridge_sqs", "lookup_events"}
    assert 0 < result["canary_prove_account_median_seconds"] <= result["canary_prove_account_max_seconds"]
    # Per account-hour at the default intervals: 12 rounds (300 s), 60 canary lookups (one per
    # LookupEvents cycle); the configuration checks: 5 reads per account and region, 4 passes,
    # except the organization trail's selectors, read in the management account only.
    by_operation = result["canary_requests_per_account_hour_by_operation"]
    assert by_operation[CALLER_IDENTITY] == 12
    assert by_operation[f"{LOOKUP_EVENTS} ({CANARY_LOOKUP})"] == 60
    assert result["checks_problems"] == 0
    assert result["checks_requests"] == {op: 100 for op in CHECK_OPERATIONS} | {"cloudtrail:GetEventSelectors": 1}
    assert result["checks_requests_per_account_hour"] == pytest.approx(4 * 4 + 4 / 100)
    # The real Prometheus scraped the steady state: every scrape took every sample of the
    # exposition, and its head holds exactly those series plus the per-target synthetic ones
    # (nothing went stale: the state did not change while it scraped).
    cost = result["prometheus"]
    assert cost["scrapes"] >= 3 and cost["scrapes_failed"] == 0
    assert cost["samples_per_scrape_all"] == [cost["exposition_samples"]] * cost["scrapes"]
    assert len(cost["scrape_duration_all_seconds"]) == cost["scrapes"]
    assert cost["head_series"] == cost["exposition_samples"] + SYNTHETIC_SERIES
    assert cost["accounts_in_exposition"] == 100
    assert cost["series_per_account"] == cost["exposition_samples"] / 100
    assert cost["series_management_account"] > cost["series_per_member_median"] > 0
    assert cost["metrics_bytes_plain"] > cost["metrics_bytes_gzip"] > 0
    assert cost["rss_peak_bytes"] >= cost["rss_bytes"] > 0


def test_exposition_figures_count_samples_per_account() -> None:
    body = "\n".join(
        [
            "# HELP a_info x",
            "# TYPE a_info gauge",
            'a_info{account_id="000000000001",name="m"} 1',
            'a_info{account_id="000000000002",name="x"} 1',
            'a_info{account_id="000000000003",name="y"} 1',
            'b_total{account_id="000000000002",reason="z"} 0',
            'b_total{account_id="000000000002",reason="w"} 0',
            'b_total{account_id="000000000001",reason="w"} 0',
            'b_total{account_id="000000000001",reason="z"} 0',
            "c 3",
            "",
        ]
    )
    figures = exposition_figures(body, "000000000001")
    assert figures["exposition_samples"] == 8
    assert figures["exposition_series_without_account_id"] == 1
    assert figures["accounts_in_exposition"] == 3
    assert figures["series_management_account"] == 3
    assert figures["series_per_member_median"] == 2  # members: 3 and 1
    assert figures["series_per_member_max"] == 3


def test_two_shards_split_the_accounts() -> None:
    result = measure_shards(100, LATENCY, 2)
    assert result["all_accounts_covered"]
    assert result["accounts_in_two_shards"] == 0
    assert sum(result["collected_per_shard"]) == 100
    assert all(n > 25 for n in result["accounts_per_shard"])


def test_baseline_collects_every_account() -> None:
    result = measure_baseline(10, 0.0)
    assert result["accounts"] == result["collected"] == 10
    # ListAccounts, GetCallerIdentity, then AssumeRole (members), three IAM reads and the
    # security contact each.
    assert result["requests_per_account"] == pytest.approx((2 + 9 + 30 + 10) / 10)


def test_fake_lookup_events_allows_two_per_second_per_account_and_region() -> None:
    fake = FakeAwsProcess(3, 0.0)
    try:
        member = account_ids(3)[1]
        client = boto3.client(
            "cloudtrail",
            region_name="eu-west-1",
            endpoint_url=fake.url,
            aws_access_key_id=access_key_for(member),
            aws_secret_access_key="secret",
            aws_session_token="token",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        client.lookup_events()  # loads the model before the burst
        outcomes = []
        for _ in range(6):
            try:
                client.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "root"}])
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.response["Error"]["Code"])
        stats = fake.stats()
    finally:
        fake.stop()
    # The warm-up call counts too: the burst has at most one more before the limit.
    assert outcomes[0] == "ok"
    assert "ThrottlingException" in outcomes
    assert stats["max_lookup_events_per_second"] == 2
    assert stats["throttled"]["cloudtrail:LookupEvents"] == outcomes.count("ThrottlingException")
    assert stats["by_account"][member]["cloudtrail:LookupEvents"] == 7


def test_command_writes_every_figure(tmp_path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--accounts", "20", "--latency", "0.001", "--baseline-accounts", "5", "--no-prometheus", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    row = data["results"][0]
    for key in (
        "sweep_seconds", "sweep_cpu_seconds", "baseline_sweep_seconds", "scrape_median_ms",
        "scrape_p99_ms", "peak_rss_mb", "requests_per_account_hour", "speedup_vs_baseline",
        "activity_poll_seconds", "activity_poll_cpu_seconds", "activity_poll_events_seconds",
        "lookup_max_per_second", "sqs_to_metrics_ms", "canary_round_seconds", "canary_round_cpu_seconds",
        "canary_requests_per_account_hour", "canary_requests_per_account_hour_by_operation",
        "canary_prove_account_median_seconds", "canary_prove_account_max_seconds", "canary_prove_all_seconds",
        "checks_requests_per_account_hour",
    ):
        assert key in row
    assert data["shards"][0]["all_accounts_covered"]
    assert "speed-up vs baseline" in result.stdout
    assert "sqs_to_metrics_ms" in result.stdout and "activity_poll_seconds" in result.stdout
    assert "canary requests per account-hour" in result.stdout and "new accounts proven" in result.stdout
    assert "prometheus" not in row and "Prometheus" not in result.stdout


@pytest.mark.parametrize("option", [["--prometheus-scrape-interval", "0"], ["--prometheus-scrapes", "none"]])
def test_bad_prometheus_option_is_a_clear_error(option) -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks", *option], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert option[0] in result.stderr and "Traceback" not in result.stderr


def test_prometheus_is_stopped_and_removed_when_the_measurement_fails(monkeypatch) -> None:
    from benchmarks import prometheus_cost

    body = b'a_info{account_id="000000000001"} 1\n'

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self.send_header("Content-Encoding", "gzip")
                payload = gzip.compress(body)
            else:
                payload = body
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    started: list[subprocess.Popen] = []
    directories: list[str] = []
    popen, mkdtemp = subprocess.Popen, tempfile.mkdtemp
    monkeypatch.setattr(prometheus_cost.subprocess, "Popen", lambda *a, **k: started.append(popen(*a, **k)) or started[-1])
    monkeypatch.setattr(prometheus_cost.tempfile, "mkdtemp", lambda **k: directories.append(mkdtemp(**k)) or directories[-1])

    def failing_query(base, expr):
        raise RuntimeError("query failed")

    monkeypatch.setattr(prometheus_cost, "_query", failing_query)
    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RuntimeError, match="query failed"):
            prometheus_cost.measure_prometheus(exporter.server_address[1], 1, "000000000001", PrometheusOptions(1.0, 1))
    finally:
        exporter.shutdown()
    assert len(started) == 1 and started[0].poll() is not None
    assert len(directories) == 1 and not Path(directories[0]).exists()


def test_fake_canary_records_per_account_and_region() -> None:
    """GetCallerIdentity answers the session AssumeRole handed out and writes its record in the
    region of the endpoint called; LookupEvents EventName=GetCallerIdentity finds it there only."""
    fake = FakeAwsProcess(3, 0.0)
    try:
        member = account_ids(3)[1]

        def client(service: str, region: str, key: str, token: str | None = "token"):
            return boto3.client(
                service, region_name=region, endpoint_url=fake.url, aws_access_key_id=key,
                aws_secret_access_key="secret", aws_session_token=token,
            )

        role = f"arn:aws:iam::{member}:role/AwsRootExporterMember"
        client("sts", "us-east-1", "AKIDEXPORTER00000000", None).assume_role(RoleArn=role, RoleSessionName="aws-root-exporter")
        arn = client("sts", "eu-west-1", access_key_for(member)).get_caller_identity()["Arn"]
        own = client("sts", "eu-west-1", "AKIDEXPORTER00000000", None).get_caller_identity()["Arn"]

        def canaries(region: str, key: str) -> list[dict]:
            events = client("cloudtrail", region, key).lookup_events(
                LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetCallerIdentity"}]
            )["Events"]
            return [json.loads(e["CloudTrailEvent"]) for e in events]

        in_region, elsewhere = canaries("eu-west-1", access_key_for(member)), canaries("us-east-1", access_key_for(member))
    finally:
        fake.stop()
    assert arn == f"arn:aws:sts::{member}:assumed-role/AwsRootExporterMember/aws-root-exporter"
    assert own == "arn:aws:iam::100000000000:user/aws-root-exporter"
    assert [(r["userIdentity"]["arn"], r["awsRegion"], r["eventName"], r["recipientAccountId"]) for r in in_region] == [(arn, "eu-west-1", "GetCallerIdentity", member)]
    assert elsewhere == []
