"""Every AWS partition: a GovCloud (US) organization through discovery, posture, the
AssumeRoot audit and activity, and the partition and region derivation for aws-cn."""

from __future__ import annotations

import json
import os
import uuid
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from exporter.activity.classify import classify
from exporter.aws.client import Aws
from exporter.aws.partitions import arn_partition, global_region, partition_of_region, task_policy_arn
from exporter.config.files import SettingsError
from exporter.config.settings import load_settings
from exporter.discovery.accounts import discover, role_arn
from exporter.sandbox import Sandbox, Scenario, load_scenario

from .conftest import running_exporter, sample, sandbox_settings
from .scenario_expect import collected, expected_posture

GOVCLOUD = Path(__file__).parent / "scenarios" / "govcloud.yaml"
EXPORTER = str(Path(sys.executable).with_name("aws-root-exporter"))


@pytest.fixture
def gov_scenario() -> Scenario:
    return load_scenario(GOVCLOUD)


@pytest.fixture
def gov_sandbox(_sandbox_server: Sandbox, gov_scenario: Scenario, default_scenario: Scenario) -> Iterator[Sandbox]:
    """The session's sandbox server seeded with the GovCloud scenario (moto's backends are
    global to the process: a second server would share them), the default one back after."""
    _sandbox_server.reset(gov_scenario)
    try:
        yield _sandbox_server
    finally:
        _sandbox_server.reset(default_scenario)


def test_partition_data_comes_from_botocore() -> None:
    assert [global_region(p) for p in ("aws", "aws-us-gov", "aws-cn")] == ["us-east-1", "us-gov-west-1", "cn-north-1"]
    assert [partition_of_region(r) for r in ("eu-west-1", "us-gov-east-1", "cn-northwest-1", "xx-nowhere-1")] == ["aws", "aws-us-gov", "aws-cn", None]
    assert arn_partition("arn:aws-cn:organizations::111111111111:organization/o-abc") == "aws-cn"
    assert arn_partition("") == "aws"
    assert task_policy_arn("aws-cn", "IAMAuditRootUserCredentials") == "arn:aws-cn:iam::aws:policy/root-task/IAMAuditRootUserCredentials"
    assert role_arn("111111111111", "AwsRootExporterReadOnly", "aws-cn") == "arn:aws-cn:iam::111111111111:role/AwsRootExporterReadOnly"


def test_region_follows_the_partition_and_a_mismatch_is_refused() -> None:
    china = Aws(partition="aws-cn")
    assert (china.region, china.partition) == ("cn-north-1", "aws-cn")
    assert (Aws(region="cn-northwest-1").partition, Aws().region, Aws().partition) == ("aws-cn", "us-east-1", "aws")
    with pytest.raises(SettingsError, match=r"^region: us-east-1 is in the AWS partition aws, but role_arns are in aws-cn; set region to a region of aws-cn \(e.g. cn-north-1\)"):
        Aws(region="us-east-1", partition="aws-cn")


def test_role_arns_of_two_partitions_are_refused() -> None:
    arns = ["arn:aws:iam::111111111111:role/R", "arn:aws-cn:iam::222222222222:role/R"]
    with pytest.raises(SettingsError, match="mixes AWS partitions \\(aws, aws-cn\\); run one exporter per partition"):
        load_settings(None, {"account_mode": "roles", "role_arns": arns})
    settings = load_settings(None, {"account_mode": "roles", "role_arns": arns[1:]})
    assert (settings.role_partition, settings.region) == ("aws-cn", None)


def test_a_region_of_another_partition_than_the_role_arns_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ROOT_EXPORTER_ACCOUNT_MODE="roles",
        AWS_ROOT_EXPORTER_ROLE_ARNS='["arn:aws-us-gov:iam::111111111111:role/AwsRootExporterReadOnly"]',
        AWS_ROOT_EXPORTER_REGION="us-east-1",
    )
    result = subprocess.run([EXPORTER, "audit"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "aws-root-exporter: configuration error: region: us-east-1 is in the AWS partition aws, but role_arns are in "
        "aws-us-gov; set region to a region of aws-us-gov (e.g. us-gov-west-1) or leave it unset\n"
    )


def test_govcloud_organization_audited_end_to_end(gov_scenario: Scenario) -> None:
    """`audit --sandbox` in organization mode: every account found, each root read right."""
    result = subprocess.run(
        [EXPORTER, "audit", "--sandbox", "--scenario", str(GOVCLOUD), "--format", "json"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["discovery_error"] is None
    by_id = {a["account_id"]: a for a in report["accounts"]}
    assert set(by_id) == {a.id for a in gov_scenario.all_accounts if collected(a)}
    for account in gov_scenario.all_accounts:
        want = expected_posture(account, partition="aws-us-gov")
        entry = by_id[account.id]
        # not_supported is no password in GovCloud: a root without a key holds nothing.
        assert entry["posture"]["password"] == "absent", account.name
        assert entry["posture"]["credentials_present"] is want["present"], account.name
        assert {c["control"]: c["compliant"] for c in entry["controls"]} == want["controls"], account.name
    assert [f["control"] for f in by_id["310000000001"]["findings"]] == []
    assert "no_access_keys" in [f["control"] for f in by_id["310000000002"]["findings"]]
    assert report["organization_features"] == {"RootCredentialsManagement": True, "RootSessions": True}


async def test_govcloud_discovery_builds_govcloud_role_arns(gov_sandbox: Sandbox, gov_scenario: Scenario) -> None:
    settings = sandbox_settings(gov_sandbox)
    assert settings.region == "us-gov-west-1"
    async with Aws(region=settings.region, endpoint_url=settings.endpoint_url) as aws:
        found = await discover(aws, settings)
    assert found.organization is not None and found.organization.partition == "aws-us-gov"
    members = {a.account_id: a for a in found.accounts if not a.management}
    assert set(members) == {a.id for a in gov_scenario.accounts if collected(a)}
    for account_id, account in members.items():
        assert account.role_arn == f"arn:aws-us-gov:iam::{account_id}:role/AwsRootExporterReadOnly"
        assert account.partition == "aws-us-gov"


async def test_govcloud_organization_refuses_a_commercial_region(gov_sandbox: Sandbox) -> None:
    settings = sandbox_settings(gov_sandbox, region="us-east-1")
    async with Aws(region=settings.region, endpoint_url=settings.endpoint_url) as aws:
        with pytest.raises(Exception) as raised:
            await discover(aws, settings)
    # moto keeps each partition apart: the commercial partition holds no organization.
    assert "AWSOrganizationsNotInUse" in str(raised.value)


async def test_govcloud_assume_root_audit(gov_sandbox: Sandbox, gov_scenario: Scenario) -> None:
    settings = sandbox_settings(gov_sandbox, assume_root_audit=True)
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        families = await exporter.metrics()
    api = exporter.state.api.requests
    members = [a for a in gov_scenario.accounts if collected(a)]
    assert api["sts:AssumeRoot"] == len(members)
    assert api["sts:AssumeRole"] == 0
    # The task policy ARN names the GovCloud partition, or STS would refuse every session.
    assert not [key for key in exporter.state.api.errors if key[1] in ("access_denied", "assume_role_failed")]
    for account in members:
        want = expected_posture(account, assume_root=True, partition="aws-us-gov")
        for control, ok in want["controls"].items():
            assert sample(families, "aws_root_control_compliant", account_id=account.id, control=control) == float(ok), (account.name, control)


def _govcloud_root_api_call(account_id: str) -> dict[str, object]:
    """A root access key in use in GovCloud (no console sign-in exists there): an IAM call,
    recorded in us-gov-west-1 with the partition in the root's ARN."""
    return {
        "eventVersion": "1.09",
        "userIdentity": {"type": "Root", "principalId": account_id, "arn": f"arn:aws-us-gov:iam::{account_id}:root",
                         "accountId": account_id, "accessKeyId": f"AKIA{account_id}RK01"},
        "eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "awsRegion": "us-gov-west-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"userName": "break-in"},
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account_id,
        "eventCategory": "Management",
    }


async def test_govcloud_root_api_call_is_found_by_lookup_events(gov_sandbox: Sandbox, gov_scenario: Scenario) -> None:
    account = gov_scenario.account("gov-root-key")
    record = _govcloud_root_api_call(account.id)
    verdict = classify(record)
    assert verdict is not None and verdict.kind == "api_call" and verdict.account_id == account.id
    # No lookup_events_regions: the exporter polls where GovCloud records IAM calls.
    settings = sandbox_settings(gov_sandbox, lookup_events_enabled=True, lookup_events_interval_seconds=5, include_account_ids=[account.id])
    assert settings.lookup_events_regions == []
    async with running_exporter(settings) as exporter:
        await exporter.wait_for_sweeps(1)
        gov_sandbox.inject(record, eventbridge=False, s3=False)
        await exporter.exporter.activity.poll_lookup_events()
        families = await exporter.metrics()
    assert sample(families, "aws_root_api_calls_total", account_id=account.id, category=verdict.category, outcome="success", approved="false") == 1.0
    assert sample(families, "aws_root_api_calls_by_event_source_total", event_source="iam.amazonaws.com") == 1.0


async def test_inject_in_a_govcloud_sandbox_builds_a_govcloud_record(gov_sandbox: Sandbox, gov_scenario: Scenario) -> None:
    """`inject` as a user types it: the record carries the sandbox's partition in every ARN and
    its global region, so the exporter (polling us-gov-west-1) finds it."""
    from exporter.sandbox.control import ControlServer

    account = gov_scenario.account("gov-clean")
    settings = sandbox_settings(gov_sandbox, lookup_events_enabled=True, lookup_events_interval_seconds=5, include_account_ids=[account.id])
    control = ControlServer(gov_sandbox).start()
    try:
        async with running_exporter(settings) as exporter:
            await exporter.wait_for_sweeps(1)
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            result = subprocess.run(
                [EXPORTER, "inject", "--control-url", control.url, "--account", account.id, "--kind", "api-call"],
                capture_output=True, text=True, timeout=30, env=env,
            )
            assert result.returncode == 0, result.stderr
            await exporter.exporter.activity.poll_lookup_events()
            families = await exporter.metrics()
    finally:
        control.stop()
    # The same record went to the EventBridge queue (the exporter here does not read it).
    # Beside it: the canary records of the exporter's own GetCallerIdentity calls.
    messages = gov_sandbox.client("sqs").receive_message(QueueUrl=gov_sandbox.events_queue_url, MaxNumberOfMessages=10)["Messages"]
    roots = [json.loads(m["Body"]) for m in messages if json.loads(m["Body"])["detail"]["userIdentity"]["type"] == "Root"]
    assert len(roots) == 1
    envelope = roots[0]
    record = envelope["detail"]
    assert envelope["region"] == "us-gov-west-1"
    assert record["awsRegion"] == "us-gov-west-1"
    assert record["userIdentity"]["arn"] == f"arn:aws-us-gov:iam::{account.id}:root"
    assert "arn:aws:" not in json.dumps(record)
    assert sample(families, "aws_root_api_calls_total", account_id=account.id, outcome="success", approved="false") == 1.0
