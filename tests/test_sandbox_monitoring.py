"""The sandbox's monitoring paths (issue 23, item 6), checked from outside with boto3 only.

A GetCallerIdentity made with a member-role session is the exporter's canary: the sandbox
writes its CloudTrail record and delivers it through LookupEvents, the EventBridge rules and
the organization trail's S3 files, each after the scenario's delay, and only where AWS would
(a trail logging, a rule in a state that receives it). Blinding calls (`inject --kind
stop-trail` and the others) silence exactly the paths AWS would, and undoing them restores
delivery.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest

from exporter.config.settings import Settings
from exporter.monitoring.canary import is_canary
from exporter.sandbox import SANDBOX_ENV, Sandbox, Scenario
from exporter.sandbox.actions import ACTIONS
from exporter.sandbox.control import ControlServer
from exporter.sandbox.monitoring import CENTRAL_BUS, FORWARDER_RULE
from exporter.sandbox.records import make_record
from exporter.sandbox.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
MEMBER = "210000000003"
OTHER = "210000000001"
ROLE = "AwsRootExporterReadOnly"
SESSION = "aws-root-exporter"
REGIONS = ["us-east-1", "eu-west-1"]
DELAYS = {"eventbridge_sqs": 0.5, "s3_trail": 1.0, "lookup_events": 1.5}


def scenario(default_scenario: Scenario, **monitoring: Any) -> Scenario:
    data = default_scenario.model_dump(mode="json")
    data["monitoring"] = {"regions": REGIONS, "delays": DELAYS, **monitoring}
    return Scenario.model_validate(data)


@pytest.fixture
def monitored(sandbox: Sandbox, default_scenario: Scenario) -> Sandbox:
    sandbox.reset(scenario(default_scenario))
    return sandbox


def member_session(sandbox: Sandbox, account: str, region: str) -> boto3.Session:
    """The exporter's member-role session, signed for `region` (its regional endpoint)."""
    sts = sandbox.client("sts")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{ROLE}", RoleSessionName=SESSION)["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"], region_name=region,
    )


def client(sandbox: Sandbox, session: boto3.Session, service: str) -> Any:
    return session.client(service, endpoint_url=sandbox.endpoint_url)


def wait_for(what: str, probe: Callable[[], Any], seconds: float = 15.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: nothing within {seconds} s")


class Paths:
    """What arrived on each path, read as the exporter reads it (and consumed)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.sqs = sandbox.client("sqs")
        self.bucket = sandbox.client("s3")

    def _drain(self, url: str) -> list[dict[str, Any]]:
        bodies = []
        while True:
            answer = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = answer.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def eventbridge(self) -> list[dict[str, Any]]:
        """The EventBridge envelopes on the root-activity queue."""
        return self._drain(self.sandbox.events_queue_url)

    def s3(self) -> list[dict[str, Any]]:
        """The records of every trail file announced on the notification queue."""
        records = []
        for note in self._drain(self.sandbox.trail_queue_url):
            for entry in note["Records"]:
                body = self.bucket.get_object(Bucket=entry["s3"]["bucket"]["name"], Key=entry["s3"]["object"]["key"])["Body"].read()
                records += json.loads(gzip.decompress(body))["Records"]
        return records


def settled(paths: Paths, action: dict[str, Any]) -> set[str]:
    """Wait for the record of a blinding call in its trail file, and return the eventIDs the
    root-activity queue got meanwhile: the sandbox delivers through EventBridge before the
    trail file, so a forwarded record (a tamper call) is there by then."""
    wait_for(f"the {action['eventName']} record in S3", lambda: action["eventID"] in ids(paths.s3()))
    return ids(paths.eventbridge())


def lookup(sandbox: Sandbox, account: str, region: str, event_name: str) -> list[dict[str, Any]]:
    trail = client(sandbox, member_session(sandbox, account, region), "cloudtrail")
    events = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": event_name}])["Events"]
    return [json.loads(e["CloudTrailEvent"]) for e in events]


def ids(records: list[dict[str, Any]]) -> set[str]:
    """The eventIDs of CloudTrail records, or of the records EventBridge envelopes carry."""
    return {str(r["detail"]["eventID"] if "detail" in r else r["eventID"]) for r in records}


# ------------------------------------------------------------------ the deployment members see


def test_a_member_role_sees_the_trail_and_the_forwarder_rule_in_each_monitored_region(monitored: Sandbox) -> None:
    for region in REGIONS:
        session = member_session(monitored, MEMBER, region)
        trails = client(monitored, session, "cloudtrail")
        [trail] = trails.describe_trails(includeShadowTrails=True)["trailList"]
        assert (trail["IsOrganizationTrail"], trail["IsMultiRegionTrail"], trail["HomeRegion"]) == (True, True, "us-east-1")
        assert trail["TrailARN"].startswith("arn:aws:cloudtrail:us-east-1:123456789012:trail/")
        assert trails.get_trail_status(Name=trail["TrailARN"])["IsLogging"] is True
        selectors = trails.get_event_selectors(TrailName=trail["TrailARN"])["EventSelectors"]
        assert selectors == [{"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": []}]
        events = client(monitored, session, "events")
        rule = events.describe_rule(Name=FORWARDER_RULE)
        assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
        from exporter.activity.classify import eventbridge_pattern

        assert json.loads(rule["EventPattern"]) == eventbridge_pattern()
        [target] = events.list_targets_by_rule(Rule=FORWARDER_RULE)["Targets"]
        assert target["Arn"] == f"arn:aws:events:us-east-1:123456789012:event-bus/{CENTRAL_BUS}"
    # The central stack (root-activity-eventbridge.yaml) in the management account's home
    # region: its default-bus rule has the forwarder's name and sends to the queue itself.
    management = monitored.client("events")
    assert management.describe_rule(Name=FORWARDER_RULE)["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    [target] = management.list_targets_by_rule(Rule=FORWARDER_RULE)["Targets"]
    assert target["Arn"] == "arn:aws:sqs:us-east-1:123456789012:root-activity-events"
    assert FORWARDER_RULE == Settings.model_fields["forwarder_rule_name"].default == "aws-root-activity-forwarder"


# ------------------------------------------------------------------ the canary


def test_get_caller_identity_of_a_member_session_comes_back_on_every_path_after_its_delay(monitored: Sandbox) -> None:
    paths = Paths(monitored)
    session = member_session(monitored, MEMBER, "eu-west-1")
    made = time.monotonic()
    arn = client(monitored, session, "sts").get_caller_identity()["Arn"]
    assert arn == f"arn:aws:sts::{MEMBER}:assumed-role/{ROLE}/{SESSION}"
    assert lookup(monitored, MEMBER, "eu-west-1", "GetCallerIdentity") == []  # not before its delay

    [record] = wait_for("LookupEvents", lambda: lookup(monitored, MEMBER, "eu-west-1", "GetCallerIdentity"))
    assert time.monotonic() - made >= DELAYS["lookup_events"]
    identity = record["userIdentity"]
    assert (identity["type"], identity["arn"], record["awsRegion"], record["readOnly"]) == ("AssumedRole", arn, "eu-west-1", True)
    assert identity["principalId"].startswith("AROA") and identity["principalId"].endswith(f":{SESSION}")
    assert identity["sessionContext"]["sessionIssuer"]["arn"] == f"arn:aws:iam::{MEMBER}:role/{ROLE}"
    real = json.loads((ROOT / "tests/fixtures/canary/get-caller-identity.json").read_text())
    assert set(record) == set(real)
    assert set(identity) == set(real["userIdentity"])
    assert set(identity["sessionContext"]) == set(real["userIdentity"]["sessionContext"]) - {"ec2RoleDelivery"}
    assert lookup(monitored, MEMBER, "us-east-1", "GetCallerIdentity") == []  # recorded where the endpoint is

    [trailed] = wait_for("S3 trail file", paths.s3)
    assert trailed["eventID"] == record["eventID"]
    [event] = wait_for("EventBridge -> SQS", paths.eventbridge)
    assert (event["detail-type"], event["source"], event["account"], event["region"]) == (
        "AWS API Call via CloudTrail", "aws.sts", MEMBER, "eu-west-1")
    assert event["detail"]["eventID"] == record["eventID"]


@pytest.mark.parametrize("scenario_file", [None, "tests/scenarios/govcloud.yaml"])
def test_the_exporter_s_own_credentials_are_its_iam_user_whose_canary_is_forwarded(sandbox: Sandbox, scenario_file: str | None) -> None:
    """The management account is reached with the exporter's own access key: the IAM user
    aws-root-exporter's, whose canary record has CloudTrail's IAMUser shape and passes the
    generated pattern through moto's matching, in the scenario's partition."""
    data = load_scenario(ROOT / scenario_file if scenario_file else None).model_dump(mode="json")
    data["monitoring"]["delays"] = DELAYS
    sandbox.reset(Scenario.model_validate(data))
    partition = sandbox.partition
    paths = Paths(sandbox)
    answer = sandbox.client("sts").get_caller_identity()
    arn = f"arn:{partition}:iam::123456789012:user/aws-root-exporter"
    assert (answer["Arn"], answer["Account"]) == (arn, "123456789012")
    assert re.fullmatch(r"AIDA[A-Z0-9]{17}", answer["UserId"]), answer["UserId"]
    [event] = wait_for("EventBridge -> SQS", paths.eventbridge)
    assert (event["account"], event["region"]) == ("123456789012", sandbox.region)
    assert event["detail"]["userIdentity"] == {
        "type": "IAMUser", "principalId": answer["UserId"], "arn": arn, "accountId": "123456789012",
        "accessKeyId": SANDBOX_ENV["AWS_ACCESS_KEY_ID"], "userName": "aws-root-exporter",
    }
    assert is_canary(event["detail"], known_arns=())
    [trailed] = wait_for("S3 trail file", paths.s3)
    assert trailed["eventID"] == event["detail"]["eventID"]


# ------------------------------------------------------------------ blinding and restoring


def test_a_stopped_trail_silences_eventbridge_and_s3_but_not_lookup_events(sandbox: Sandbox, default_scenario: Scenario) -> None:
    sandbox.reset(scenario(default_scenario, trail="per_account"))
    paths = Paths(sandbox)
    stop = sandbox.monitoring.act("stop-trail", MEMBER, "eu-west-1")
    # StopLogging is recorded before logging stops, and forwarded as a tamper record.
    assert settled(paths, stop) == {stop["eventID"]}

    blind = make_record("api-call", MEMBER) | {"awsRegion": "eu-west-1"}
    seen = make_record("api-call", MEMBER) | {"awsRegion": "us-east-1"}
    other = make_record("api-call", OTHER) | {"awsRegion": "eu-west-1"}
    for record in (blind, seen, other):
        sandbox.inject(record)
    assert ids(paths.eventbridge()) == {seen["eventID"], other["eventID"]}
    assert ids(paths.s3()) == {seen["eventID"], other["eventID"]}
    assert blind["eventID"] in ids(lookup(sandbox, MEMBER, "eu-west-1", "CreateBucket"))

    sandbox.monitoring.act("start-trail", MEMBER, "eu-west-1")
    paths.s3()
    again = make_record("api-call", MEMBER) | {"awsRegion": "eu-west-1"}
    sandbox.inject(again)
    assert ids(paths.eventbridge()) == {again["eventID"]}
    assert ids(paths.s3()) == {again["eventID"]}


def test_stopping_the_organization_trail_blinds_every_account(monitored: Sandbox) -> None:
    paths = Paths(monitored)
    stop = monitored.monitoring.act("stop-trail", MEMBER)
    # The organization trail's own account (management) recorded its StopLogging.
    assert stop["recipientAccountId"] == "123456789012"
    assert settled(paths, stop) == {stop["eventID"]}
    records = [make_record("console-login", account) for account in (MEMBER, OTHER, "123456789012")]
    for record in records:
        monitored.inject(record)
    assert paths.eventbridge() == [] and paths.s3() == []
    assert records[0]["eventID"] in ids(lookup(monitored, MEMBER, "us-east-1", "ConsoleLogin"))
    monitored.monitoring.act("start-trail", OTHER)
    paths.s3()
    monitored.inject(records[1])
    assert ids(paths.eventbridge()) == {records[1]["eventID"]}


def test_a_disabled_forwarder_rule_silences_eventbridge_only(monitored: Sandbox) -> None:
    paths = Paths(monitored)
    disable = monitored.monitoring.act("disable-rule", MEMBER, "us-east-1")
    rule = client(monitored, member_session(monitored, MEMBER, "us-east-1"), "events").describe_rule(Name=FORWARDER_RULE)
    assert rule["State"] == "DISABLED"
    # Its own record reaches EventBridge after the rule is off: only the trail has it.
    assert settled(paths, disable) == set()
    record, other = make_record("api-call", MEMBER), make_record("api-call", OTHER)
    monitored.inject(record)
    monitored.inject(other)
    assert ids(paths.eventbridge()) == {other["eventID"]}
    assert ids(paths.s3()) == {record["eventID"], other["eventID"]}
    monitored.monitoring.act("enable-rule", MEMBER, "us-east-1")
    monitored.inject(record)
    assert ids(paths.eventbridge()) == {record["eventID"]}


def test_a_rule_in_state_enabled_misses_read_only_events_and_receives_writes(monitored: Sandbox) -> None:
    paths = Paths(monitored)
    monitored.monitoring.act("rule-read-only-off", MEMBER, "us-east-1")
    rule = client(monitored, member_session(monitored, MEMBER, "us-east-1"), "events").describe_rule(Name=FORWARDER_RULE)
    assert rule["State"] == "ENABLED"
    read = make_record("root-temporary-key-call", MEMBER, event_name="ListBuckets")
    write = make_record("api-call", MEMBER)
    assert (read["readOnly"], write["readOnly"]) == (True, False)
    monitored.inject(read)
    monitored.inject(write)
    assert ids(paths.eventbridge()) == {write["eventID"]}
    monitored.monitoring.act("enable-rule", MEMBER, "us-east-1")
    monitored.inject(read)
    assert ids(paths.eventbridge()) == {read["eventID"]}


def test_purging_the_queue_loses_what_waited(monitored: Sandbox) -> None:
    paths = Paths(monitored)
    monitored.inject(make_record("console-login", MEMBER))
    purge = monitored.monitoring.act("purge-queue", MEMBER)
    # The login is gone; the PurgeQueue record itself arrives after the purge.
    assert settled(paths, purge) == {purge["eventID"]}
    later = make_record("console-login", MEMBER)
    monitored.inject(later)
    assert ids(paths.eventbridge()) == {later["eventID"]}


def test_an_account_removed_from_the_organization_drops_out_of_the_organization_paths(monitored: Sandbox) -> None:
    paths = Paths(monitored)
    removal = monitored.monitoring.act("remove-account", MEMBER)
    listed = {a["Id"] for a in monitored.client("organizations").list_accounts()["Accounts"]}
    assert MEMBER not in listed and OTHER in listed
    assert removal["eventName"] == "RemoveAccountFromOrganization"
    assert settled(paths, removal) == {removal["eventID"]}
    record = make_record("console-login", MEMBER)
    monitored.inject(record)
    # Its rule still forwards, but the central bus admits only the organization's accounts.
    assert paths.eventbridge() == [] and paths.s3() == []
    assert record["eventID"] in ids(lookup(monitored, MEMBER, "us-east-1", "ConsoleLogin"))
    monitored.monitoring.act("restore-account", MEMBER)
    monitored.inject(record)
    assert ids(paths.eventbridge()) == {record["eventID"]}


def test_an_injected_root_console_login_arrives_through_the_rules_in_aws_s_envelope(monitored: Sandbox) -> None:
    paths = Paths(monitored)
    record = make_record("console-login", MEMBER)
    monitored.inject(record)
    [event] = paths.eventbridge()
    real = json.loads((ROOT / "tests/fixtures/cloudtrail/public/cloud-buddy__create_virtual_mfa_device_root_console.json").read_text())
    assert set(event) == set(real)
    assert (event["detail-type"], event["source"], event["account"], event["region"], event["time"]) == (
        "AWS Console Sign In via CloudTrail", "aws.signin", MEMBER, "us-east-1", record["eventTime"])
    assert event["detail"] == record


# ------------------------------------------------------------------ the scenario and the command


@pytest.mark.parametrize(
    ("monitoring", "account", "error"),
    [
        ({"regions": ["eu-wset-1"]}, {}, "monitoring.regions: 'eu-wset-1' is not an AWS region; did you mean eu-west-1?"),
        ({"delays": {"s3_trail": "5x"}}, {}, "monitoring.delays.s3_trail: must be seconds (e.g. 2, 2s, 500ms, 1m), got '5x'"),
        ({}, {"trail": "stopped"}, "accounts.0.monitoring.trail: stopped needs monitoring.trail: per_account (the organization"
         " trail records every account; to stop it, set monitoring.organization_trail: stopped)"),
        ({}, {"regions": ["eu-west-1"]}, "accounts.0.monitoring.regions: eu-west-1 is not a monitored region; add it to"
         " monitoring.regions (now us-east-1)"),
        ({}, {"forwarder": "off"}, "accounts.0.monitoring.forwarder: Input should be 'enabled', 'disabled', 'read_only_off' or 'missing', got 'off'"),
    ],
)
def test_a_bad_monitoring_block_is_one_clear_line(tmp_path: Path, monitoring: dict[str, Any], account: dict[str, Any], error: str) -> None:
    path = tmp_path / "scenario.yaml"
    data = {"management": {"id": "123456789012", "name": "management"}, "monitoring": monitoring,
            "accounts": [{"id": MEMBER, "name": "member", "monitoring": account}]}
    path.write_text(json.dumps(data))
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value) == f"scenario {str(path)!r}: {error}"


def test_a_scenario_starts_blinded_where_it_says(sandbox: Sandbox) -> None:
    sandbox.reset(load_scenario(ROOT / "tests/scenarios/blinded.yaml"))
    ireland = member_session(sandbox, MEMBER, "eu-west-1")
    [trail] = client(sandbox, ireland, "cloudtrail").describe_trails(includeShadowTrails=True)["trailList"]
    assert trail["IsOrganizationTrail"] is False
    assert client(sandbox, ireland, "cloudtrail").get_trail_status(Name=trail["TrailARN"])["IsLogging"] is False
    assert client(sandbox, ireland, "events").list_rules()["Rules"] == []
    virginia = member_session(sandbox, MEMBER, "us-east-1")
    [trail] = client(sandbox, virginia, "cloudtrail").describe_trails(includeShadowTrails=True)["trailList"]
    assert client(sandbox, virginia, "cloudtrail").get_trail_status(Name=trail["TrailARN"])["IsLogging"] is True
    states = {
        (account, region): client(sandbox, member_session(sandbox, account, region), "events").describe_rule(Name=FORWARDER_RULE)["State"]
        for account in ("210000000003", "210000000004", "210000000005") for region in REGIONS
        if (account, region) != (MEMBER, "eu-west-1")
    }
    assert states == {
        (MEMBER, "us-east-1"): "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS",
        ("210000000004", "us-east-1"): "DISABLED", ("210000000004", "eu-west-1"): "DISABLED",
        ("210000000005", "us-east-1"): "ENABLED", ("210000000005", "eu-west-1"): "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS",
    }
    listed = {a["Id"] for a in sandbox.client("organizations").list_accounts()["Accounts"]}
    assert listed == {"123456789012", "210000000001", MEMBER, "210000000004", "210000000005"}


def test_inject_blinds_and_restores_a_running_sandbox(monitored: Sandbox) -> None:
    control = ControlServer(monitored).start()
    try:
        command = [sys.executable, "-m", "exporter", "inject", "--control-url", control.url, "--account", MEMBER]
        done = subprocess.run([*command, "--kind", "disable-rule", "--region", "eu-west-1"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"injected disable-rule in {MEMBER}: eventID ")
        events = client(monitored, member_session(monitored, MEMBER, "eu-west-1"), "events")
        assert events.describe_rule(Name=FORWARDER_RULE)["State"] == "DISABLED"
        bad = subprocess.run([*command, "--kind", "stop-trail", "--region", "ap-south-1"], capture_output=True, text=True, timeout=60)
        assert (bad.returncode, bad.stdout) == (2, "")
        assert bad.stderr == (
            "aws-root-exporter: inject: region ap-south-1 is not monitored by the running scenario; its regions are us-east-1, eu-west-1\n"
        )
        done = subprocess.run([*command, "--kind", "enable-rule", "--region", "eu-west-1"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert events.describe_rule(Name=FORWARDER_RULE)["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    finally:
        control.stop()


def test_inject_help_lists_every_action() -> None:
    done = subprocess.run([sys.executable, "-m", "exporter", "inject", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(done.stdout.split())
    for action, what in ACTIONS.items():
        assert f"{action}: {' '.join(what.split())}" in text
