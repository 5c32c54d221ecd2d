"""The fake AWS's fault injection, and the soak run (benchmarks/soak.py) as a short smoke test:
correctness under faults (every event counted exactly once, faults visible in the exporter's
own metrics, /metrics always answered); no timings and no leak criteria are asserted (the
real soak, 10 minutes, is not run in CI: docs/soak.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from benchmarks.fake_aws import access_key_for, account_ids
from benchmarks.run import REPO, FakeAwsProcess


def _client(fake: FakeAwsProcess, service: str, account: str | None = None, **config):
    kwargs = {"aws_session_token": "token"} if account else {}
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=fake.url,
        aws_access_key_id=access_key_for(account) if account else "AKIDEXPORTER00000000",
        aws_secret_access_key="secret",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=5, **config),
        **kwargs,
    )


@pytest.fixture
def fake():
    process = FakeAwsProcess(3, 0.0)
    yield process
    process.stop()


def _code(call) -> str:
    try:
        call()
    except ClientError as exc:
        return f"{exc.response['ResponseMetadata']['HTTPStatusCode']} {exc.response['Error']['Code']}"
    return "ok"


def test_throttle_answers_each_services_own_code(fake) -> None:
    member = account_ids(3)[1]
    queue_url = fake.url + "/100000000000/bench-root-events"
    calls = {
        "iam:GetAccountSummary": lambda: _client(fake, "iam", member).get_account_summary(),
        "sts:GetCallerIdentity": lambda: _client(fake, "sts").get_caller_identity(),
        "organizations:DescribeOrganization": lambda: _client(fake, "organizations").describe_organization(),
        "cloudtrail:LookupEvents": lambda: _client(fake, "cloudtrail", member).lookup_events(),
        "sqs:ReceiveMessage": lambda: _client(fake, "sqs").receive_message(QueueUrl=queue_url, WaitTimeSeconds=0),
    }
    assert fake.set_faults({"throttle": 1.0}) == {"throttle": 1.0, "hang_seconds": 15.0}
    got = {name: _code(call) for name, call in calls.items()}
    assert got == {
        "iam:GetAccountSummary": "400 Throttling",
        "sts:GetCallerIdentity": "400 Throttling",
        "organizations:DescribeOrganization": "400 TooManyRequestsException",
        "cloudtrail:LookupEvents": "400 ThrottlingException",
        "sqs:ReceiveMessage": "400 ThrottlingException",
    }
    fake.set_faults({"server_error": 1.0})
    assert _code(calls["iam:GetAccountSummary"]) == "500 InternalFailure"
    assert _code(calls["organizations:DescribeOrganization"]) == "500 InternalFailure"
    fake.set_faults({})
    assert _code(calls["iam:GetAccountSummary"]) == "ok"
    stats = fake.stats()
    assert stats["faults"] == {
        "throttle": {name: 1 for name in calls},
        "server_error": {"iam:GetAccountSummary": 1, "organizations:DescribeOrganization": 1},
    }
    assert stats["faults_total"] == {"throttle": 5, "server_error": 2}
    assert stats["fault_shares"] == {}


def test_reset_and_hang(fake) -> None:
    iam = _client(fake, "iam", account_ids(3)[2])
    fake.set_faults({"reset": 1.0})
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        iam.get_account_summary()
    fake.set_faults({"hang": 1.0, "hang_seconds": 0.5})
    started = time.monotonic()
    assert iam.get_account_summary()["SummaryMap"]["Users"] == 3  # held, then answered
    assert time.monotonic() - started >= 0.5
    fake.set_faults({})
    assert fake.stats()["faults"] == {"reset": {"iam:GetAccountSummary": 1}, "hang": {"iam:GetAccountSummary": 1}}


def test_shares_are_drawn_with_a_seed(fake) -> None:
    """About the share asked for is injected, the same requests with the same seed; control
    endpoints are never faulted."""
    sts = _client(fake, "sts")
    outcomes = []
    for _ in range(2):
        fake.reset()
        fake.set_faults({"throttle": 0.2, "server_error": 0.1, "seed": 3})
        outcomes.append([_code(sts.get_caller_identity) for _ in range(200)])
        fake.sqs_send("{}")  # a control endpoint: no fault
    assert outcomes[0] == outcomes[1]
    counts = fake.stats()["faults_total"]
    assert 20 <= counts["throttle"] <= 60 and 5 <= counts["server_error"] <= 35
    assert outcomes[0].count("400 Throttling") == counts["throttle"]
    assert fake.stats()["requests"]["sts:GetCallerIdentity"] == 200


def test_fault_flags_and_bad_shares() -> None:
    fake = FakeAwsProcess(2, 0.0, {"throttle": 1.0, "seed": 1})
    try:
        assert _code(_client(fake, "sts").get_caller_identity) == "400 Throttling"
        with pytest.raises(Exception, match="400"):
            fake.set_faults({"throttle": 0.8, "reset": 0.5})
        with pytest.raises(Exception, match="400"):
            fake.set_faults({"flood": 0.1})
    finally:
        fake.stop()


def test_soak_smoke(tmp_path) -> None:
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.soak", "--minutes", "0.4", "--accounts", "100", "--latency", "0.005",
            "--sweep-interval", "10", "--lookup-interval", "5", "--sample-seconds", "3", "--events-per-second", "3",
            "--throttle", "0.1", "--server-error", "0.05", "--reset", "0.02", "--hang", "0.01",
            "--hang-seconds", "4", "--account-timeout", "3", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: a leak criterion, not asserted here
    data = json.loads(out.read_text())
    # Every sign-in put on the queue counted exactly once, the queue drained.
    assert data["events_injected"] > 30
    assert data["events_counted"] == data["events_injected"]
    assert data["queue_left"] == 0
    assert data["checks"]["events_exactly_once"]
    # Faults of every kind were injected, and the exporter saw them.
    assert set(data["faults_injected"]) == {"throttle", "server_error", "reset", "hang"}
    assert sum(data["collector_errors"].values()) + sum(data["api_errors"].values()) > 0
    # /metrics answered every scrape, about once a second.
    assert data["scrape_errors"] == 0 and data["scrapes"] >= 15
    assert data["checks"]["scrapes_all_answered"]
    assert data["sweeps_completed"] >= 1
    assert len(data["samples"]) >= 5 and all(s["tasks"] > 0 and s["sockets"] > 0 for s in data["samples"])
    assert all("rss_min_mb" in row for row in data["scrape_per_minute"])
    assert "events injected / counted" in result.stdout and "checks:" in result.stdout
