"""The canary end to end: the exporter calls sts:GetCallerIdentity in a sandbox account, the
canary's CloudTrail record comes back through LookupEvents and the EventBridge queue, the
paths are proven, and once canaries stop arriving each path goes blind after its bound.

Until the sandbox writes CloudTrail records for the exporter's own calls (issue 23, item 6),
the test delivers the record itself the way `Sandbox.inject` delivers any record (LookupEvents
history and the EventBridge queue): a real published GetCallerIdentity record
(tests/fixtures/canary/SOURCES.md) with the exporter's identity, the account, region, event
id and time substituted.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

from exporter.sandbox import Sandbox

from .conftest import running_exporter, sample, sandbox_settings

FIXTURE = Path(__file__).parent / "fixtures" / "canary" / "stratus__get_caller_identity_assumed_role_regional.json"
ACCOUNT = "210000000003"
REGION = "us-east-1"
EB_BOUND = 4.0
LOOKUP_BOUND = 8.0
INTERVAL = 10.0


def canary_record(arn: str, when: datetime) -> dict:
    """The published record, as the exporter's canary in ACCOUNT and REGION made at `when`."""
    record = copy.deepcopy(json.loads(FIXTURE.read_text()))
    identity = record["userIdentity"]
    session_name = arn.rsplit("/", 1)[1]
    role_name = arn.split("/")[1]
    issuer = identity["sessionContext"]["sessionIssuer"]
    identity |= {"arn": arn, "accountId": ACCOUNT, "principalId": f"{issuer['principalId']}:{session_name}"}
    issuer |= {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:role/{role_name}", "userName": role_name}
    record |= {
        "awsRegion": REGION,
        "recipientAccountId": ACCOUNT,
        "eventID": str(uuid.uuid4()),
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tlsDetails": record["tlsDetails"] | {"clientProvidedHostHeader": f"sts.{REGION}.amazonaws.com"},
    }
    return record


async def test_canaries_prove_each_path_and_their_absence_blinds_it(sandbox: Sandbox) -> None:
    # The test hands in each canary record itself (then none, to blind the paths): the
    # sandbox makes none of its own (tests/test_sandbox_proven.py has those end to end).
    sandbox.reset(sandbox.scenario.model_copy(update={"monitoring": sandbox.scenario.monitoring.model_copy(update={"canaries": False})}))
    settings = sandbox_settings(
        sandbox,
        include_account_ids=[ACCOUNT],
        lookup_events_enabled=True,
        lookup_events_interval_seconds=5,
        eventbridge_queue_url=sandbox.events_queue_url,
        sqs_wait_seconds=1,
        canary_interval_seconds=INTERVAL,
        canary_bounds_seconds={"eventbridge_sqs": EB_BOUND, "lookup_events": LOOKUP_BOUND},
    )
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        coverage = exporter.exporter.coverage
        # The first canary is made through the member role, on us-east-1's STS endpoint.
        async with asyncio.timeout(30):
            while not coverage.known_arns():
                await asyncio.sleep(0.1)
        (arn,) = coverage.known_arns()
        assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{settings.role_name}/{settings.role_session_name}"
        families = await exporter.metrics()
        for source in ("eventbridge_sqs", "lookup_events"):
            assert sample(families, "aws_root_monitoring_accounts", source=source, region=REGION, state="pending") == 1.0
        assert sample(families, "aws_root_monitoring_accounts", source="s3_trail") is None  # not configured
        assert sample(families, "aws_root_monitoring_blind_since_timestamp_seconds", account_id=ACCOUNT) is None

        # Its record comes back through both configured sources.
        made = datetime.now(timezone.utc)
        sandbox.inject(canary_record(arn, made), s3=False)
        async with asyncio.timeout(30):
            while True:
                families = await exporter.metrics()
                proven = [sample(families, "aws_root_monitoring_accounts", source=s, region=REGION, state="proven") for s in ("eventbridge_sqs", "lookup_events")]
                if proven == [1.0, 1.0]:
                    break
                await asyncio.sleep(0.2)
        for source in ("eventbridge_sqs", "lookup_events"):
            assert sample(families, "aws_root_monitoring_canary_delay_seconds_count", source=source) == 1.0
            assert sample(families, "aws_root_monitoring_accounts", source=source, region=REGION, state="blind") == 0.0
        assert sample(families, "aws_root_monitoring_blind_since_timestamp_seconds", account_id=ACCOUNT) is None
        # Never root activity, never a rejected record, however often LookupEvents reads it again.
        assert sample(families, "aws_root_last_activity_timestamp_seconds", account_id=ACCOUNT) is None
        assert not [s for s in families["aws_root_api_calls"].samples if s.labels["account_id"] == ACCOUNT and s.value]
        assert not [s for s in families["aws_root_exporter_events_rejected"].samples if s.value]

        # No more canaries come back: EventBridge goes blind once its bound plus two intervals
        # (one lost canary is tolerated) have passed since the last canary's eventTime,
        # LookupEvents after its own bound.
        event_time = made.replace(microsecond=0).timestamp()
        async with asyncio.timeout(EB_BOUND + 2 * INTERVAL + 20):
            while sample(families, "aws_root_monitoring_blind_since_timestamp_seconds", account_id=ACCOUNT, source="eventbridge_sqs") is None:
                await asyncio.sleep(0.2)
                families = await exporter.metrics()
        # From the later of that eventTime (whole seconds) and the first attempt, which came
        # before `made`.
        since = sample(
            families, "aws_root_monitoring_blind_since_timestamp_seconds",
            account_id=ACCOUNT, account_name="dev-sandbox", source="eventbridge_sqs", region=REGION, reason="canary_missing",
        )
        assert event_time + EB_BOUND + 2 * INTERVAL <= since <= made.timestamp() + EB_BOUND + 2 * INTERVAL
        async with asyncio.timeout(LOOKUP_BOUND + 2 * INTERVAL + 20):
            while sample(families, "aws_root_monitoring_blind_since_timestamp_seconds", account_id=ACCOUNT, source="lookup_events") is None:
                await asyncio.sleep(0.2)
                families = await exporter.metrics()
        since = sample(families, "aws_root_monitoring_blind_since_timestamp_seconds", account_id=ACCOUNT, source="lookup_events", reason="canary_missing")
        assert event_time + LOOKUP_BOUND + 2 * INTERVAL <= since <= made.timestamp() + LOOKUP_BOUND + 2 * INTERVAL
        assert sample(families, "aws_root_monitoring_accounts", source="lookup_events", region=REGION, state="blind") == 1.0
        # Still counted once each: the histogram saw each record once per source.
        for source in ("eventbridge_sqs", "lookup_events"):
            assert sample(families, "aws_root_monitoring_canary_delay_seconds_count", source=source) == 1.0


async def test_a_broken_role_is_counted_never_a_success_series_and_goes_blind_after_its_bound(sandbox: Sandbox) -> None:
    broken = "210000000009"  # the sandbox's account without the exporter's member role
    settings = sandbox_settings(
        sandbox,
        include_account_ids=[broken],
        lookup_events_enabled=True,
        lookup_events_interval_seconds=5,
        canary_interval_seconds=INTERVAL,
        canary_bounds_seconds={"lookup_events": LOOKUP_BOUND},
    )
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        async with asyncio.timeout(LOOKUP_BOUND + 2 * INTERVAL + 20):
            while True:
                families = await exporter.metrics()
                if sample(families, "aws_root_monitoring_blind_since_timestamp_seconds", account_id=broken) is not None:
                    break
                await asyncio.sleep(0.2)
        assert sample(families, "aws_root_exporter_collector_errors_total", account_id=broken, collector="canary", reason="assume_role_failed") >= 1
        # No success series of its own (the series budget; a failed canary pages only as a blind path).
        assert sample(families, "aws_root_exporter_collector_success", account_id=broken, collector="canary") is None
        assert sample(
            families, "aws_root_monitoring_blind_since_timestamp_seconds",
            account_id=broken, account_name="network", source="lookup_events", region=REGION, reason="canary_missing",
        ) is not None
        assert sample(families, "aws_root_monitoring_accounts", source="lookup_events", region=REGION, state="blind") == 1.0
        assert exporter.exporter.coverage.known_arns() == set()
