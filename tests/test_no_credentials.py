"""No AWS credentials at all: its own reason, one log line that says how to provide them,
early retries with backoff, and /-/ready (issue 22).

The exporter runs as a user starts it (`aws-root-exporter serve`) in an environment with no
AWS credentials: no AWS_* variable, config and credentials files that are missing or empty, a
HOME without ~/.aws, and the instance metadata lookup off (fast, offline). Every AWS request
would go to a closed local port, so nothing can reach AWS even by mistake.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from botocore.exceptions import (
    ConfigParseError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    UnauthorizedSSOTokenError,
)

from exporter.aws.client import REASONS, Aws, AwsError, classify_error
from exporter.engine.sweep import credentials_retry_delay
from exporter.sandbox import MANAGEMENT_ACCOUNT_ID, SANDBOX_ENV, Sandbox

from .conftest import ROOT, http_get, parse_metrics, reap, sample, stop_cleanly, tool

HELP = (
    "no AWS credentials found: nothing can be collected until the exporter has some. Provide them with "
    "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), "
    "AWS_PROFILE and a shared config file (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), "
    "IRSA (ServiceAccount annotation eks.amazonaws.com/role-arn), "
    "an EKS Pod Identity association for the ServiceAccount, or an EC2 instance role; "
    "on EKS, restart the pod after adding the annotation or association"
)
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/111111111111/root-activity"


def no_credentials_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    (tmp_path / "credentials").write_text("")
    env.update(
        HOME=str(tmp_path),
        PYTHONUNBUFFERED="1",
        AWS_CONFIG_FILE=str(tmp_path / "no-such-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ROOT_EXPORTER_ENDPOINT_URL="http://127.0.0.1:9",
    )
    env.update({"AWS_ROOT_EXPORTER_" + name.upper(): value for name, value in settings.items()})
    return env


class Serve:
    """`aws-root-exporter serve` as a process; its log lines, read as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [tool("aws-root-exporter"), "serve", "--web.listen-address", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> list[re.Match[str]]:
        """The first `count` log lines matching `pattern` (waiting for them)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in (re.search(pattern, line) for line in list(self.lines)) if m]
            if len(found) >= count:
                return found[:count]
            assert self.process.poll() is None, "exporter exited:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {count} lines matching {pattern!r}:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return self.wait_for(r"listening url=(http://127\.0\.0\.1:\d+)/metrics")[0].group(1)

    def records(self) -> list[tuple[datetime, str, str, str]]:
        """(time, level, logger, message with fields) of every log line."""
        parsed = [LINE.match(line) for line in self.lines]
        assert all(parsed), "\n".join(self.lines)
        return [(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f"), m.group(2), m.group(3), m.group(4)) for m in parsed if m]

    def metrics(self) -> dict:
        status, _, body = http_get(self.url + "/metrics")
        assert status == 200
        return parse_metrics(body.decode())


def sweep_times(serve: Serve, count: int) -> list[datetime]:
    serve.wait_for(r"posture sweep complete", count, timeout=90)
    return [when for when, _, _, message in serve.records() if message.startswith("posture sweep complete")][:count]


def test_serve_without_credentials_says_how_to_provide_them_and_retries_soon(tmp_path: Path) -> None:
    serve = Serve(no_credentials_env(tmp_path, eventbridge_queue_url=QUEUE_URL))
    try:
        # Three sweeps: at the start, 5 s later, then 10 s later (not one posture interval, 600 s).
        first, second, third = sweep_times(serve, 3)
        assert 5.0 <= (second - first).total_seconds() < 8.0
        assert 10.0 <= (third - second).total_seconds() < 13.0

        families = serve.metrics()
        # Discovery failed with its own reason on every try, under the exporter's own account
        # (unknown without credentials: the empty account id).
        errors = sample(families, "aws_root_exporter_collector_errors_total", account_id="", collector="discovery", reason="no_credentials")
        assert errors is not None and errors >= 3.0
        assert sample(families, "aws_root_exporter_collector_success", account_id="", collector="discovery") == 0.0
        # The EventBridge queue's loop backs off too, with the same reason (and did not crash).
        assert (sample(families, "aws_root_exporter_collector_errors_total", collector="eventbridge_sqs", reason="no_credentials") or 0) >= 1.0
        reasons = {s.labels["reason"] for s in families["aws_root_exporter_collector_errors"].samples}
        assert reasons == {"no_credentials"}
        # No request was sent, so none failed.
        assert families["aws_root_exporter_aws_request_errors"].samples == []

        # Ready: the snapshot is served, and the failure pages through the metrics (README, Endpoints).
        status, _, body = http_get(serve.url + "/-/ready")
        assert (status, body) == (200, b"Ready\n")
        status, _, page = http_get(serve.url + "/")
        assert status == 200
        assert "Status: ready; no AWS credentials found, nothing is collected (the log says how to provide them; retrying)." in page.decode()

        stop_cleanly(serve.process)
    finally:
        reap(serve.process)

    records = serve.records()
    # One error line, once (three sweeps and a polling queue later), with the reason and botocore's words.
    assert [(level, logger, message) for _, level, logger, message in records if level != "INFO"] == [
        ("ERROR", "exporter.aws.client", f"{HELP} reason=no_credentials error=organizations: NoCredentialsError: Unable to locate credentials"),
    ]
    retries = [message for _, _, _, message in records if message.startswith("no AWS credentials: next posture sweep sooner")]
    assert retries[:2] == [
        "no AWS credentials: next posture sweep sooner retry_in_seconds=5.0",
        "no AWS credentials: next posture sweep sooner retry_in_seconds=10.0",
    ]
    assert not [line for line in serve.lines if "access_denied" in line or "Traceback" in line]


def test_credentials_that_appear_later_are_used_at_the_next_retry(sandbox: Sandbox, tmp_path: Path) -> None:
    env = no_credentials_env(tmp_path, endpoint_url=sandbox.endpoint_url, lookup_events_enabled="false")
    serve = Serve(env)
    try:
        serve.wait_for(r"no AWS credentials: next posture sweep sooner retry_in_seconds=5\.0")
        # A credentials file mounted after the start (e.g. from a Secret), as a user writes it.
        (tmp_path / "credentials").write_text(
            "[default]\n"
            f"aws_access_key_id = {SANDBOX_ENV['AWS_ACCESS_KEY_ID']}\n"
            f"aws_secret_access_key = {SANDBOX_ENV['AWS_SECRET_ACCESS_KEY']}\n"
        )
        serve.wait_for(r"AWS credentials found again method=shared-credentials-file")
        sweep_times(serve, 2)
        families = serve.metrics()
        assert sample(families, "aws_root_exporter_collector_success", account_id=MANAGEMENT_ACCOUNT_ID, collector="discovery") == 1.0
        assert sample(families, "aws_root_exporter_sweeps_total") == 2.0
        # Back on the normal schedule (600 s): no early retry at 10 s, as there would be
        # while credentials are missing.
        time.sleep(12)
        assert sample(serve.metrics(), "aws_root_exporter_sweeps_total") == 2.0
        status, _, page = http_get(serve.url + "/")
        assert "Status: ready." in page.decode()
        stop_cleanly(serve.process)
    finally:
        reap(serve.process)
    messages = [message for _, _, _, message in serve.records()]
    assert sum(message.startswith("no AWS credentials found:") for message in messages) == 1
    assert sum(message.startswith("no AWS credentials: next posture sweep sooner") for message in messages) == 1


# ---------------------------------------------------------------- the reason, in-process


@pytest.mark.parametrize(
    "exc",
    [
        NoCredentialsError(),
        PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        CredentialRetrievalError(provider="container-role", error_msg="connection refused"),
        ProfileNotFound(profile="exporter"),
        ConfigParseError(path="/etc/aws/config"),
        UnauthorizedSSOTokenError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_credential_errors_are_no_credentials(exc: Exception) -> None:
    assert classify_error(exc) == "no_credentials"
    assert "no_credentials" in REASONS


def test_no_region_is_not_a_credentials_problem() -> None:
    assert classify_error(NoRegionError()) == "error"


def test_retry_delays_double_up_to_a_minute_and_never_exceed_the_interval() -> None:
    assert [credentials_retry_delay(n, 600.0) for n in range(1, 8)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert [credentials_retry_delay(n, 15.0) for n in range(1, 4)] == [5.0, 10.0, 15.0]
    assert credentials_retry_delay(10_000, 600.0) == 60.0


def _no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-such-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-such-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


async def test_a_partial_set_names_the_missing_variable_and_a_later_look_finds_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _no_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SANDBOX_ENV["AWS_ACCESS_KEY_ID"])
    caplog.set_level(logging.DEBUG, logger="exporter.aws.client")
    async with Aws(endpoint_url="http://127.0.0.1:9") as aws:
        for _ in range(2):
            with pytest.raises(AwsError) as raised:
                await aws.client("sts")
            assert raised.value.reason == "no_credentials"
            assert str(raised.value) == "sts: PartialCredentialsError: Partial credentials found in env, missing: AWS_SECRET_ACCESS_KEY"
            assert aws.credentials_missing
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SANDBOX_ENV["AWS_SECRET_ACCESS_KEY"])
        assert await aws.client("sts") is await aws.client("sts")
        assert not aws.credentials_missing
    logged = [(r.levelname, r.getMessage().split(":")[0], getattr(r, "method", None)) for r in caplog.records if r.name == "exporter.aws.client"]
    assert logged == [("ERROR", "no AWS credentials found", None), ("DEBUG", "still no AWS credentials", None), ("INFO", "AWS credentials found again", "env")]


async def test_callers_waiting_on_a_failed_look_share_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A sweep asks for a client per account at once: one slow look answers all of them."""
    _no_credentials(monkeypatch, tmp_path)
    async with Aws(endpoint_url="http://127.0.0.1:9") as aws:
        looks = 0
        real = type(aws._session).get_credentials

        async def counted(session: object) -> object:
            nonlocal looks
            looks += 1
            await asyncio.sleep(0.2)  # a provider that takes its time to answer (an agent, IMDS)
            return await real(session)

        monkeypatch.setattr(type(aws._session), "get_credentials", counted)
        results = await asyncio.gather(*(aws.client("sts") for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, AwsError) and r.reason == "no_credentials" for r in results)
        assert looks == 1
