"""The configuration checks end to end: the exporter against the sandbox (moto in server
mode), trails and rules made with the real CloudTrail and EventBridge APIs in the management
account and a member account (through the member role, as an operator's stack would), and
the problems the exporter publishes appearing and going away as the setup is broken and fixed.
The sandbox deploys its own monitoring (docs/faults.md); the first test starts from a
scenario where none of it works in the two accounts checked.
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest

from exporter.monitoring.checks import NO_LOGGING_TRAIL, MANAGEMENT_EVENTS_OFF, RULE_DISABLED, RULE_MISSING, RULE_NO_TARGET
from exporter.monitoring.problems import EVENTBRIDGE, S3_TRAIL
from exporter.sandbox import MANAGEMENT_ACCOUNT_ID, Sandbox, Scenario

from .conftest import OperationRecorder, running_exporter, sandbox_settings

MEMBER = "210000000003"  # dev-sandbox
RULE = "aws-root-activity-forwarder"
BOTH = (EVENTBRIDGE, S3_TRAIL)
# The exporter's own pattern is not what is checked: any pattern will do here.
PATTERN = '{"detail": {"userIdentity": {"type": ["Root"]}}}'


@pytest.fixture
def undeployed(sandbox: Sandbox, default_scenario: Scenario) -> Sandbox:
    """The sandbox as an operator finds an organization before deploying: its organization
    trail stopped, and no forwarder rule in the management account or in MEMBER."""
    data = default_scenario.model_dump(mode="json")
    data["monitoring"]["organization_trail"] = "stopped"
    for account in [data["management"], *data["accounts"]]:
        if account["id"] in (MEMBER, MANAGEMENT_ACCOUNT_ID):
            account["monitoring"] = {"forwarder": "missing"}
    sandbox.reset(Scenario.model_validate(data))
    return sandbox


def account_client(sandbox: Sandbox, account_id: str, service: str) -> Any:
    """A boto3 client acting in `account_id`: the management account's own, or a member's
    through the member role (moto files the calls under the role's account)."""
    if account_id == MANAGEMENT_ACCOUNT_ID:
        return sandbox.client(service)
    role = f"arn:{sandbox.partition}:iam::{account_id}:role/AwsRootExporterReadOnly"
    credentials = sandbox.client("sts").assume_role(RoleArn=role, RoleSessionName="operator")["Credentials"]
    return boto3.client(
        service,
        endpoint_url=sandbox.endpoint_url,
        region_name=sandbox.region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def create_trail(sandbox: Sandbox, account_id: str, name: str, organization: bool = False) -> str:
    """A multi-region trail, logging; returns its ARN."""
    bucket = f"trail-{account_id}-{name.lower()}"
    account_client(sandbox, account_id, "s3").create_bucket(Bucket=bucket)
    cloudtrail = account_client(sandbox, account_id, "cloudtrail")
    arn = cloudtrail.create_trail(Name=name, S3BucketName=bucket, IsMultiRegionTrail=True, IsOrganizationTrail=organization)["TrailARN"]
    cloudtrail.start_logging(Name=name)
    return str(arn)


def create_rule(sandbox: Sandbox, account_id: str, state: str = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", target: bool = True) -> None:
    events = account_client(sandbox, account_id, "events")
    events.put_rule(Name=RULE, EventPattern=PATTERN, State=state)
    if target:
        events.put_targets(Rule=RULE, Targets=[{"Id": "central", "Arn": f"arn:{sandbox.partition}:sqs:{sandbox.region}:{MANAGEMENT_ACCOUNT_ID}:root-activity-events"}])


async def problems_become(exporter: Any, expected: set[tuple[str, str, tuple[str, ...]]], timeout: float = 30) -> dict[tuple[str, str], float]:
    """Wait until the published check problems are `expected` ((account, reason, sources));
    returns each one's since."""
    found: set[tuple[str, str, tuple[str, ...]]] = set()
    try:
        async with asyncio.timeout(timeout):
            while True:
                published = exporter.state.monitoring_problems.get("checks")
                if published is not None:
                    found = {(p.account_id, p.reason, p.sources) for p in published}
                    if found == expected:
                        assert all(p.region == "us-east-1" for p in published)
                        return {(p.account_id, p.reason): p.since for p in published}
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"check problems stayed {sorted(found)}, expected {sorted(expected)}") from None


async def test_problems_appear_and_go_away_as_trails_and_rules_are_broken_and_fixed(undeployed: Sandbox) -> None:
    sandbox = undeployed
    settings = sandbox_settings(
        sandbox,
        eventbridge_queue_url=sandbox.events_queue_url,
        s3_trail_queue_url=sandbox.trail_queue_url,
        sqs_wait_seconds=1,
        include_account_ids=[MEMBER, MANAGEMENT_ACCOUNT_ID],
        monitoring_checks_interval_seconds=5,
    )
    async with running_exporter(settings) as exporter:
        # Nothing deployed: no trail logging anywhere, no rule.
        since = await problems_become(
            exporter,
            {(a, NO_LOGGING_TRAIL, BOTH) for a in (MEMBER, MANAGEMENT_ACCOUNT_ID)} | {(a, RULE_MISSING, (EVENTBRIDGE,)) for a in (MEMBER, MANAGEMENT_ACCOUNT_ID)},
        )
        # The organization trail (management account) covers the member too; the member's
        # rule is disabled and has no target yet.
        org_trail = create_trail(sandbox, MANAGEMENT_ACCOUNT_ID, "OrganizationTrail", organization=True)
        create_rule(sandbox, MANAGEMENT_ACCOUNT_ID)
        create_rule(sandbox, MEMBER, state="DISABLED", target=False)
        later = await problems_become(exporter, {(MEMBER, RULE_DISABLED, (EVENTBRIDGE,)), (MEMBER, RULE_NO_TARGET, (EVENTBRIDGE,))})
        create_rule(sandbox, MEMBER)
        await problems_become(exporter, set())
        # The organization trail stops recording read events, then stops logging: every account is blind.
        management = sandbox.client("cloudtrail")
        management.put_event_selectors(TrailName=org_trail, EventSelectors=[{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}])
        off = await problems_become(exporter, {(a, MANAGEMENT_EVENTS_OFF, BOTH) for a in (MEMBER, MANAGEMENT_ACCOUNT_ID)})
        management.stop_logging(Name=org_trail)
        await problems_become(exporter, {(a, NO_LOGGING_TRAIL, BOTH) for a in (MEMBER, MANAGEMENT_ACCOUNT_ID)})
        # A trail of the member's own, with default selectors, proves the member again.
        create_trail(sandbox, MEMBER, "MemberTrail")
        kept = await problems_become(exporter, {(MANAGEMENT_ACCOUNT_ID, NO_LOGGING_TRAIL, BOTH)})
    assert since[(MEMBER, RULE_MISSING)] < later[(MEMBER, RULE_DISABLED)] < off[(MEMBER, MANAGEMENT_EVENTS_OFF)]
    # The management account's problem started when logging stopped, not at this later check.
    assert kept[(MANAGEMENT_ACCOUNT_ID, NO_LOGGING_TRAIL)] > off[(MANAGEMENT_ACCOUNT_ID, MANAGEMENT_EVENTS_OFF)]
    assert exporter.state.api.requests["cloudtrail:GetEventSelectors"] >= 1


async def test_no_queue_source_means_no_check_and_no_request(sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox, include_account_ids=[MEMBER], lookup_events_enabled=True, monitoring_checks_interval_seconds=5)
    async with running_exporter(settings) as exporter:
        await problems_become(exporter, set())
        assert exporter.state.api.requests["cloudtrail:DescribeTrails"] == 0
        assert exporter.state.api.requests["events:DescribeRule"] == 0


async def test_a_member_role_that_cannot_be_assumed_fails_closed(sandbox: Sandbox) -> None:
    sandbox.root(MEMBER).deny_assume_role = True
    settings = sandbox_settings(sandbox, s3_trail_queue_url=sandbox.trail_queue_url, sqs_wait_seconds=1, include_account_ids=[MEMBER], monitoring_checks_interval_seconds=5)
    async with running_exporter(settings) as exporter:
        await problems_become(exporter, {(MEMBER, "check_failed", (S3_TRAIL,))})
        errors = {k: v for k, v in exporter.state.collector_errors.items() if k[1] == "monitoring_checks"}
        assert errors and all(k == (MEMBER, "monitoring_checks", "assume_role_failed") for k in errors)


@pytest.mark.parametrize("with_owner", [True, False], ids=["owner-collected", "member-alone"])
async def test_a_member_takes_the_organization_trails_selectors_from_the_owners_reading(undeployed: Sandbox, with_owner: bool) -> None:
    """Reading an organization trail's configuration from a member account is reported to fail
    (exporter.engine.monitoring_checks._selectors): members use what the management account
    read in the same pass, and ask themselves only when the owner was not read."""
    sandbox = undeployed
    accounts = [MEMBER, MANAGEMENT_ACCOUNT_ID] if with_owner else [MEMBER]
    create_trail(sandbox, MANAGEMENT_ACCOUNT_ID, "OrganizationTrail", organization=True)
    settings = sandbox_settings(sandbox, s3_trail_queue_url=sandbox.trail_queue_url, sqs_wait_seconds=1, include_account_ids=accounts, monitoring_checks_interval_seconds=5)
    recorder = OperationRecorder().start()
    try:
        async with running_exporter(settings) as exporter:
            await problems_become(exporter, set())
    finally:
        recorder.stop()
    assert recorder.seen[("member_role", "cloudtrail:GetTrailStatus")] >= 1
    if with_owner:
        assert recorder.seen[("exporter", "cloudtrail:GetEventSelectors")] >= 1
        assert recorder.seen[("member_role", "cloudtrail:GetEventSelectors")] == 0
    else:
        assert recorder.seen[("member_role", "cloudtrail:GetEventSelectors")] >= 1
