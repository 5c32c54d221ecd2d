"""Root activity under faults: every injected root event is counted exactly once.

LookupEvents pages that repeat records, arrive out of order or lag minutes behind; SQS
messages delivered twice, not deleted in time and redelivered, malformed, or poison.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timedelta, timezone

from exporter.sandbox import Sandbox
from exporter.sandbox.faults import FaultInjector
from exporter.sandbox.records import eventbridge_envelope, make_record

from ..conftest import running_exporter, sample, sandbox_settings

ACCOUNT = "210000000003"
MANAGEMENT = "123456789012"


def logins(families: dict, mfa: str = "true") -> float | None:
    return sample(families, "aws_root_console_logins_total", account_id=ACCOUNT, outcome="success", mfa=mfa, approved="false")


def duplicates(families: dict, source: str) -> float | None:
    return sample(families, "aws_root_exporter_events_duplicate_total", source=source)


async def wait_for(exporter, predicate, timeout: float = 30) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            families = await exporter.metrics()
            if predicate(families):
                return families
            await asyncio.sleep(0.1)


def queue_left(sandbox: Sandbox, url: str) -> dict:
    attributes = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    return sandbox.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=attributes)["Attributes"]


async def test_lookup_pages_repeat_records_out_of_order(sandbox: Sandbox, faults: FaultInjector) -> None:
    """73 logins over the last 10 minutes, injected in random order; every LookupEvents page
    comes back reversed with its first record repeated. Two polls (the second re-reads
    everything through the overlap): 73 counted, every repeat counted as a duplicate."""
    now = datetime.now(timezone.utc)
    records = [make_record("console-login", ACCOUNT, when=now - timedelta(seconds=8 * n)) for n in range(73)]
    random.Random(3).shuffle(records)
    for record in records:
        sandbox.inject(record, eventbridge=False, s3=False)
    faults.add("lookup_disorder", service="cloudtrail", operation="LookupEvents")
    # Without the canary: its lookups (EventName=GetCallerIdentity) are pages too, and its
    # records arrive in them while the test runs.
    settings = sandbox_settings(sandbox, include_account_ids=[ACCOUNT], canary_enabled=False)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        await exporter.exporter.activity.poll_lookup_events()
        first = await exporter.metrics()
        await exporter.exporter.activity.poll_lookup_events()
        second = await exporter.metrics()
    pages = faults.count("lookup_disorder")
    assert pages == 4  # 50 + 23 records, twice
    assert logins(first) == 73.0
    assert duplicates(first, "lookup_events") == 2.0  # one repeat per page
    assert logins(second) == 73.0
    assert duplicates(second, "lookup_events") == 2.0 + 73 + 2
    assert sample(second, "aws_root_console_logins_90d", account_id=ACCOUNT) == 73.0
    assert sample(second, "aws_root_exporter_collector_success", account_id=ACCOUNT, collector="lookup_events") == 1.0


async def test_lookup_records_lagging_minutes_behind(sandbox: Sandbox) -> None:
    """A login that happened 6 minutes ago becomes visible to LookupEvents only after the
    first poll: the next poll's overlap catches it, once. Without overlap it is missed,
    which is why the overlap exists (default 900 s, CloudTrail's documented worst case)."""
    results = {}
    for overlap in (900.0, 0.0):
        sandbox.reset()
        record = make_record("console-login", ACCOUNT, when=datetime.now(timezone.utc) - timedelta(minutes=6))
        settings = sandbox_settings(sandbox, include_account_ids=[ACCOUNT], lookup_events_overlap_seconds=overlap)
        async with running_exporter(settings) as exporter:
            await exporter.wait_for_sweeps(1)
            sandbox.inject(record, eventbridge=False, s3=False, lookup_delay=1.0)
            await exporter.exporter.activity.poll_lookup_events()
            before = logins(await exporter.metrics())
            await asyncio.sleep(1.2)
            await exporter.exporter.activity.poll_lookup_events()
            await exporter.exporter.activity.poll_lookup_events()
            families = await exporter.metrics()
        results[overlap] = (before, logins(families), families)
    before, after, families = results[900.0]
    # No series before the first poll that sees the login (issue 16: counters appear with their first event).
    assert (before, after) == (None, 1.0)
    assert sample(families, "aws_root_exporter_event_delay_seconds_bucket", source="lookup_events", le="300.0") == 0.0
    assert sample(families, "aws_root_exporter_event_delay_seconds_bucket", source="lookup_events", le="600.0") == 1.0
    assert duplicates(families, "lookup_events") == 1.0  # the third poll saw it again
    assert results[0.0][:2] == (None, None), "the control: no overlap, the late record is lost"
    assert sample(results[0.0][2], "aws_root_console_logins_90d", account_id=ACCOUNT) == 0.0, "known account, login never seen"


def sqs_settings(sandbox: Sandbox, **overrides):
    values = dict(
        eventbridge_queue_url=sandbox.events_queue_url,
        s3_trail_queue_url=sandbox.trail_queue_url,
        sqs_wait_seconds=1,
        include_account_ids=[ACCOUNT],
    )
    values.update(overrides)
    return sandbox_settings(sandbox, **values)


async def test_sqs_message_delivered_twice_and_malformed(sandbox: Sandbox) -> None:
    without_canaries(sandbox)  # the queue must be empty at the end
    sqs = sandbox.client("sqs")
    record = make_record("console-login", ACCOUNT)
    async with running_exporter(sqs_settings(sandbox)) as exporter:
        await exporter.wait_for_sweeps(1)
        for _ in range(2):  # EventBridge delivers at least once: two envelopes, one record
            sqs.send_message(QueueUrl=sandbox.events_queue_url, MessageBody=json.dumps(eventbridge_envelope(record)))
        sqs.send_message(QueueUrl=sandbox.events_queue_url, MessageBody="{not json")
        sqs.send_message(QueueUrl=sandbox.events_queue_url, MessageBody=json.dumps({"detail": {"eventID": 42}}))
        # Not JSON: malformed_message. A record the root classifier cannot read (no
        # userIdentity): malformed_root_record, since it could be a root record (fail closed).
        families = await wait_for(
            exporter,
            lambda f: duplicates(f, "eventbridge_sqs") == 1.0
            and sample(f, "aws_root_exporter_events_rejected_total", source="eventbridge_sqs", reason="malformed_message") == 1.0
            and sample(f, "aws_root_exporter_events_rejected_total", source="eventbridge_sqs", reason="malformed_root_record") == 1.0,
        )
        await asyncio.sleep(1.5)
        families = await exporter.metrics()
    assert logins(families) == 1.0
    assert duplicates(families, "eventbridge_sqs") == 1.0
    assert queue_left(sandbox, sandbox.events_queue_url) == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


async def test_sqs_delete_fails_and_the_message_is_redelivered(sandbox: Sandbox, faults: FaultInjector) -> None:
    """The batch delete fails (HTTP 500 on every attempt): the message comes back after its
    visibility timeout; the redelivery is a duplicate, the login counts once."""
    without_canaries(sandbox)  # the queue must be empty at the end
    sqs = sandbox.client("sqs")
    sqs.set_queue_attributes(QueueUrl=sandbox.events_queue_url, Attributes={"VisibilityTimeout": "1"})
    faults.add("server_error", service="sqs", operation="DeleteMessageBatch", limit=3)
    async with running_exporter(sqs_settings(sandbox, s3_trail_queue_url=None)) as exporter:
        await exporter.wait_for_sweeps(1)
        sandbox.inject(make_record("console-login", ACCOUNT), lookup=False, s3=False)
        families = await wait_for(exporter, lambda f: duplicates(f, "eventbridge_sqs") == 1.0)
        families = await wait_for(exporter, lambda f: sample(f, "aws_root_exporter_collector_success", account_id=MANAGEMENT, collector="eventbridge_sqs") == 1.0)
    assert faults.count("server_error", "sqs", "DeleteMessageBatch") == 3
    assert logins(families) == 1.0
    assert sample(families, "aws_root_exporter_collector_errors_total", account_id=MANAGEMENT, collector="eventbridge_sqs", reason="error") == 1.0
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="sqs:DeleteMessageBatch", reason="error") == 1.0
    assert queue_left(sandbox, sandbox.events_queue_url) == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def without_canaries(sandbox: Sandbox) -> None:
    """The exporter's own GetCallerIdentity writes a canary trail file and EventBridge event
    a few seconds later; these tests count what is left on a queue, so the sandbox writes none."""
    sandbox.reset(sandbox.scenario.model_copy(update={"monitoring": sandbox.scenario.monitoring.model_copy(update={"canaries": False})}))


async def test_poison_message_does_not_block_the_queue(sandbox: Sandbox) -> None:
    """A trail notification for a log file that does not exist fails every time: after
    sqs_max_receives=3 receives it is dropped as poison; a good file behind it is counted."""
    without_canaries(sandbox)
    sqs = sandbox.client("sqs")
    sqs.set_queue_attributes(QueueUrl=sandbox.trail_queue_url, Attributes={"VisibilityTimeout": "1"})
    key = sandbox.write_trail_file([make_record("api-call", ACCOUNT)], ACCOUNT)
    sandbox.client("s3").delete_object(Bucket=f"org-cloudtrail-{MANAGEMENT}", Key=key)
    good = make_record("console-login", ACCOUNT)
    sandbox.write_trail_file([good], ACCOUNT)
    settings = sqs_settings(sandbox, eventbridge_queue_url=None, sqs_max_receives=3)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await wait_for(exporter, lambda f: sample(f, "aws_root_exporter_events_rejected_total", source="s3_trail", reason="poison") == 1.0)
        good_counted_while_poison_pending = logins(families) == 1.0
        await asyncio.sleep(2.5)
        families = await exporter.metrics()
    assert good_counted_while_poison_pending
    assert logins(families) == 1.0
    assert sample(families, "aws_root_exporter_events_rejected_total", source="s3_trail", reason="fetch_failed") == 3.0
    assert sample(families, "aws_root_exporter_events_rejected_total", source="s3_trail", reason="poison") == 1.0
    # The poison file's API call was never read: no series for it.
    assert sample(families, "aws_root_api_calls_total", account_id=ACCOUNT, category="administrative", outcome="success", approved="false") is None
    assert queue_left(sandbox, sandbox.trail_queue_url) == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


async def test_trail_log_file_read_fails_then_succeeds(sandbox: Sandbox, faults: FaultInjector) -> None:
    """S3 answers SlowDown to the first GetObject (all 3 attempts): the notification stays
    on the queue, comes back after its visibility timeout, and the record counts once."""
    without_canaries(sandbox)
    sqs = sandbox.client("sqs")
    sqs.set_queue_attributes(QueueUrl=sandbox.trail_queue_url, Attributes={"VisibilityTimeout": "1"})
    faults.add("throttle", service="s3", operation="GET", limit=3)
    settings = sqs_settings(sandbox, eventbridge_queue_url=None)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        sandbox.write_trail_file([make_record("console-login", ACCOUNT)], ACCOUNT)
        families = await wait_for(exporter, lambda f: logins(f) == 1.0)
        await asyncio.sleep(1.5)
        families = await exporter.metrics()
    assert faults.count("throttle", "s3") == 3
    assert logins(families) == 1.0
    assert sample(families, "aws_root_exporter_events_rejected_total", source="s3_trail", reason="fetch_failed") == 1.0
    assert sample(families, "aws_root_exporter_aws_request_errors_total", operation="s3:GetObject", reason="throttled") == 1.0
    assert duplicates(families, "s3_trail") == 0.0
    assert queue_left(sandbox, sandbox.trail_queue_url) == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
