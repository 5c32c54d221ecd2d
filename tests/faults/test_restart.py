"""The exporter killed with SIGKILL in the middle of a sweep and restarted with its state
file: no root event lost, none counted twice. A corrupt state file or one from another
version stops the start with a clear error (exit status 2); nothing is reset silently."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from exporter.activity.state_file import STATE_VERSION
from exporter.activity.store import EventStore
from exporter.sandbox import SANDBOX_ENV, Sandbox
from exporter.sandbox.faults import FaultInjector
from exporter.sandbox.records import make_record

from ..conftest import ROOT, parse_metrics, report_measurement, sample
from .serve_process import ServeProcess

ACCOUNT = "210000000003"


class ExporterProcess(ServeProcess):
    def __init__(self, sandbox: Sandbox, state_file: Path) -> None:
        super().__init__(
            sandbox.endpoint_url,
            max_attempts="2",
            include_account_ids=json.dumps([ACCOUNT, "210000000001"]),
            posture_interval_seconds="10",
            account_timeout_seconds="30",
            eventbridge_queue_url=sandbox.events_queue_url,
            sqs_wait_seconds="1",
            lookup_events_enabled="true",
            lookup_events_interval_seconds="5",
            state_file=str(state_file),
            # Long on purpose: a kill between two periodic saves must lose nothing.
            state_save_interval_seconds="600",
        )

    async def metrics(self) -> dict:
        def get() -> str:
            with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:
                return response.read().decode()

        return parse_metrics(await asyncio.to_thread(get))

    async def wait_for(self, predicate, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            families = await self.metrics()
            if predicate(families):
                return families
            assert time.monotonic() < deadline, f"timed out; logins={logins(families)}"
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def logins(families: dict) -> float | None:
    return sample(families, "aws_root_console_logins_total", account_id=ACCOUNT, outcome="success", mfa="true", approved="false")


async def test_sigkill_in_the_middle_of_a_sweep_then_restart(sandbox: Sandbox, faults: FaultInjector, tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    # The kill can land after B was counted but before the state file was written (the
    # exporter deletes a message only once what it added is on disk). Then B is not lost:
    # SQS hands it out again after its visibility timeout, 30 s by default, which is also
    # how long the test waits, so that order failed now and then. A 5 s timeout brings B
    # back well within the wait whichever side of the save the kill falls on.
    sandbox.client("sqs").set_queue_attributes(QueueUrl=sandbox.events_queue_url, Attributes={"VisibilityTimeout": "5"})
    # A: before the start, seen by LookupEvents and EventBridge.
    for _ in range(2):
        sandbox.inject(make_record("console-login", ACCOUNT), s3=False)
    first = ExporterProcess(sandbox, state_file)
    try:
        await first.started()
        await first.wait_for(lambda f: logins(f) == 2.0 and sample(f, "aws_root_exporter_sweeps_total") == 1.0)
        # The next sweep hangs in the middle (one account answered, the other held).
        faults.add("hang", service="iam", operation="GetAccountSummary", account=ACCOUNT, seconds=60)
        async with asyncio.timeout(30):
            while faults.count("hang") == 0:
                await asyncio.sleep(0.1)
        # B: EventBridge only, counted by the first process, then SIGKILL at once.
        sandbox.inject(make_record("console-login", ACCOUNT), lookup=False, s3=False)
        await first.wait_for(lambda f: logins(f) == 3.0)
        first.kill()
        assert first.process.returncode == -signal.SIGKILL
    finally:
        first.kill()
    faults.clear()
    # C: while the exporter is down, on both paths.
    sandbox.inject(make_record("console-login", ACCOUNT), s3=False)
    second = ExporterProcess(sandbox, state_file)
    try:
        await second.started()
        started = time.monotonic()
        families = await second.wait_for(lambda f: logins(f) == 4.0)
        caught_up = time.monotonic() - started
        # Let LookupEvents re-read its overlap (A and C again) and the queue drain.
        families = await second.wait_for(
            lambda f: (sample(f, "aws_root_exporter_events_duplicate_total", source="lookup_events") or 0) >= 2
            and (sample(f, "aws_root_exporter_collector_success", account_id=ACCOUNT, collector="lookup_events") == 1.0)
        )
        await asyncio.sleep(6)  # one more LookupEvents poll
        families = await second.metrics()
    finally:
        second.process.send_signal(signal.SIGTERM)
        second.process.wait(timeout=20)
    report_measurement(f"SIGKILL mid-sweep, restart with state file: all 4 logins counted {caught_up:.1f} s after the restart")
    assert logins(families) == 4.0, "A, B, C: each counted exactly once across the kill"
    assert sample(families, "aws_root_console_logins_90d", account_id=ACCOUNT) == 4.0
    # The quarterly counts too (current + previous: the run may straddle a quarter's end).
    quarterly = [sample(families, "aws_root_console_logins_quarter", account_id=ACCOUNT, quarter=q) for q in ("current", "previous")]
    assert sum(quarterly) == 4.0, quarterly
    saved = json.loads(state_file.read_text())
    assert saved["version"] == STATE_VERSION
    assert sum(saved["console_logins_quarter"]["counts"][ACCOUNT].values()) == 4.0
    assert [row[-1] for row in saved["counters"]["console_logins"] if row[:4] == [ACCOUNT, "success", "true", "false"]] == [4.0]


def _run_serve(state_file: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(SANDBOX_ENV, AWS_ROOT_EXPORTER_STATE_FILE=str(state_file), AWS_ROOT_EXPORTER_ENDPOINT_URL="http://127.0.0.1:9")
    return subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--web.listen-address", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )


def _valid_state() -> dict:
    from datetime import datetime, timezone

    return EventStore(datetime.now(timezone.utc)).to_state()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"version": 1, "counting_from": "2026-11-2', "not valid JSON"),
        ("\x00\x01\x02", "not valid JSON"),
        (json.dumps({**_valid_state(), "version": 0}), "unsupported version 0"),
        (json.dumps({**_valid_state(), "version": STATE_VERSION + 1}), f"unsupported version {STATE_VERSION + 1}"),
        (json.dumps({k: v for k, v in _valid_state().items() if k != "seen_event_ids"}), "invalid content (missing 'seen_event_ids')"),
    ],
    ids=["truncated", "binary", "older-version", "newer-version", "missing-field"],
)
def test_corrupt_or_foreign_state_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(content)
    result = _run_serve(state_file)
    assert result.returncode == 2, result.stderr
    assert "state file error" in result.stderr and message in result.stderr, result.stderr
    assert str(state_file) in result.stderr
    assert state_file.read_text() == content, "the bad file is left as it was for the operator"
