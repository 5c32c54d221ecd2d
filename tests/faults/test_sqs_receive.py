"""Faults on SQS ReceiveMessage itself (the EventBridge queue): throttling, HTTP 500, a reset
connection, a receive that hangs past its long poll. The collector shows the failure with
the right reason, the loop backs off and recovers, /metrics keeps answering, and every root
event put on the queue during the faults is counted exactly once after recovery."""

from __future__ import annotations

import asyncio
import time

import pytest

from exporter.engine import activity
from exporter.aws.client import REASONS
from exporter.sandbox import Sandbox
from exporter.sandbox.faults import FaultInjector
from exporter.sandbox.records import make_record

from ..conftest import http_get, report_measurement, running_exporter, sample
from .test_activity import ACCOUNT, MANAGEMENT, duplicates, logins, queue_left, sqs_settings

SOURCE = "eventbridge_sqs"
LOGINS = 6


def status(families: dict) -> float | None:
    return sample(families, "aws_root_exporter_collector_success", account_id=MANAGEMENT, collector=SOURCE)


def errors(families: dict, reason: str) -> float | None:
    return sample(families, "aws_root_exporter_collector_errors_total", account_id=MANAGEMENT, collector=SOURCE, reason=reason)


@pytest.mark.parametrize(
    ("kind", "reason", "options"),
    [
        ("throttle", "throttled", {"limit": 6}),  # 2 failed polls of 3 attempts each
        ("server_error", "error", {"limit": 6}),
        ("reset", "error", {"limit": 6}),
        ("hang", "timeout", {"limit": 6, "seconds": 4.0}),  # 2 polls, every attempt held past its limit
    ],
)
async def test_receive_fails_then_recovers_counting_every_event_once(
    sandbox: Sandbox, faults: FaultInjector, monkeypatch: pytest.MonkeyPatch, kind: str, reason: str, options: dict
) -> None:
    # A receive may take the long poll (1 s) plus this grace before it counts as hung.
    monkeypatch.setattr(activity, "SQS_RECEIVE_GRACE_SECONDS", 1.0)
    sqs = sandbox.client("sqs")
    # Messages taken by a receive whose answer never arrived come back after this.
    sqs.set_queue_attributes(QueueUrl=sandbox.events_queue_url, Attributes={"VisibilityTimeout": "2"})
    scrapes: list[float] = []
    async with running_exporter(sqs_settings(sandbox, s3_trail_queue_url=None)) as exporter:
        await exporter.wait_for_sweeps(1)
        async with asyncio.timeout(20):
            while status(await exporter.metrics()) != 1.0:
                await asyncio.sleep(0.1)
        faults.add(kind, service="sqs", operation="ReceiveMessage", **options)
        started = time.monotonic()
        failed_at = recovered_at = None
        injected = 0
        async with asyncio.timeout(90):
            while True:
                if injected < LOGINS:  # root events keep arriving during the faults
                    sandbox.inject(make_record("console-login", ACCOUNT), lookup=False, s3=False)
                    injected += 1
                t0 = time.monotonic()
                code, _, body = await asyncio.to_thread(http_get, exporter.url + "/metrics")
                scrapes.append(time.monotonic() - t0)
                assert code == 200
                families = await exporter.metrics()
                if failed_at is None and status(families) == 0.0:
                    failed_at = time.monotonic() - started
                    failing = families
                if failed_at is not None and status(families) == 1.0 and logins(families) == LOGINS:
                    recovered_at = time.monotonic() - started
                    break
                await asyncio.sleep(0.25)
        await asyncio.sleep(2.5)  # anything delivered twice would be counted by now
        families = await exporter.metrics()
    fired = faults.count(kind, "sqs", "ReceiveMessage")
    report_measurement(
        f"SQS ReceiveMessage {kind}: {fired} injected; collector failing after {failed_at:.1f}s, "
        f"recovered with all {LOGINS} logins after {recovered_at:.1f}s; {len(scrapes)} scrapes, slowest {max(scrapes) * 1000:.0f} ms; "
        f"errors {errors(families, reason)}; duplicates {duplicates(families, SOURCE)}"
    )
    assert fired == options["limit"]
    assert failing is not None and sample(failing, "aws_root_exporter_collector_success", account_id=MANAGEMENT, collector=SOURCE) == 0.0
    assert errors(families, reason) == 2.0  # two failed polls (each with its retries)
    # An error series appears with the first error of its reason (issue 16): none for the others.
    for other in REASONS:
        if other != reason:
            assert errors(families, other) is None, other
    assert status(families) == 1.0
    assert logins(families) == LOGINS
    assert duplicates(families, SOURCE) == 0.0
    assert queue_left(sandbox, sandbox.events_queue_url) == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
