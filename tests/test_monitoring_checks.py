"""The configuration checks, judged purely (exporter.monitoring.checks), and the accounts that
vanish from the organization (exporter.monitoring.vanished).

Every AWS answer here is validated against botocore's output shape of its operation, so the
fixtures have the fields and enums AWS sends; the trail ARNs and names follow the CloudTrail
API Reference's examples (`arn:aws:cloudtrail:us-east-2:123456789012:trail/MyTrail`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from exporter.monitoring.checks import (
    CHECK_FAILED,
    MANAGEMENT_EVENTS_OFF,
    NO_LOGGING_TRAIL,
    RULE_DISABLED,
    RULE_MISSING,
    RULE_NO_TARGET,
    RULE_READ_ONLY_EVENTS_OFF,
    RegionReading,
    RuleReading,
    TrailReading,
    covers,
    evaluate,
    management_events,
)
from exporter.monitoring.problems import ALL, EVENTBRIDGE, S3_TRAIL, PathProblem
from exporter.monitoring.vanished import LEFT_ORGANIZATION, Roster, left_organization, next_roster

ACCOUNT = "123456789012"
MANAGEMENT = "111111111111"
BOTH = (EVENTBRIDGE, S3_TRAIL)
_SESSION = botocore.session.get_session()


def shaped(service: str, operation: str, answer: dict[str, Any]) -> dict[str, Any]:
    """`answer`, after checking it fits the operation's output shape in botocore's model."""
    shape = _SESSION.get_service_model(service).operation_model(operation).output_shape
    report = ParamValidator().validate(answer, shape)
    assert not report.has_errors(), report.generate_report()
    return answer


def trail(
    name: str = "MyTrail",
    home: str = "us-east-2",
    account: str = ACCOUNT,
    multi_region: bool = True,
    organization: bool = False,
    logging: bool = True,
    selectors: dict[str, Any] | None = None,
) -> TrailReading:
    arn = f"arn:aws:cloudtrail:{home}:{account}:trail/{name}"
    description = {
        "Name": name,
        "S3BucketName": "amzn-s3-demo-bucket",
        "IncludeGlobalServiceEvents": True,
        "IsMultiRegionTrail": multi_region,
        "HomeRegion": home,
        "TrailARN": arn,
        "LogFileValidationEnabled": False,
        "HasCustomEventSelectors": selectors is not None,
        "HasInsightSelectors": False,
        "IsOrganizationTrail": organization,
    }
    shaped("cloudtrail", "DescribeTrails", {"trailList": [description]})
    status = shaped(
        "cloudtrail",
        "GetTrailStatus",
        {"IsLogging": logging, "LatestDeliveryTime": datetime(2026, 1, 1, tzinfo=timezone.utc), "StartLoggingTime": datetime(2025, 1, 1, tzinfo=timezone.utc)},
    )
    if selectors is None:  # a trail created without selectors: all read and write management events
        selectors = {"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": [], "ExcludeManagementEventSources": []}]}
    return TrailReading(description, status, shaped("cloudtrail", "GetEventSelectors", {"TrailARN": arn, **selectors}))


def rule(state: str | None = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", targets: int = 1) -> RuleReading:
    if state is None:
        return RuleReading(None)
    description = shaped(
        "events",
        "DescribeRule",
        {
            "Name": "aws-root-activity-forwarder",
            "Arn": f"arn:aws:events:us-east-1:{ACCOUNT}:rule/aws-root-activity-forwarder",
            "EventPattern": '{"detail": {"userIdentity": {"type": ["Root"]}}}',
            "State": state,
            "EventBusName": "default",
            "CreatedBy": ACCOUNT,
        },
    )
    # TargetList has at least one member in the model: a rule without targets answers without the key.
    found = [{"Id": f"central-bus-{n}", "Arn": f"arn:aws:events:us-east-1:{MANAGEMENT}:event-bus/aws-root-activity"} for n in range(targets)]
    listed = shaped("events", "ListTargetsByRule", {"Targets": found} if found else {})
    return RuleReading(description, tuple(listed.get("Targets", [])))


def reading(*trails: TrailReading, region: str = "us-east-1", rule_: RuleReading | None = None, sources: tuple[str, ...] = BOTH) -> RegionReading:
    if rule_ is None and EVENTBRIDGE in sources:
        rule_ = rule()
    return RegionReading(ACCOUNT, region, tuple(trails), rule_, sources=sources)


def reasons(*readings: RegionReading) -> dict[str, tuple[str, ...]]:
    return {p.reason: p.sources for p in evaluate(readings, now=1000.0)}


# ------------------------------------------------------------------------------ trails


def test_a_logging_multi_region_trail_with_management_events_is_no_problem() -> None:
    assert evaluate([reading(trail())], now=1000.0) == ()


def test_no_trail_blinds_both_queue_sources_but_not_lookup_events() -> None:
    assert reasons(reading()) == {NO_LOGGING_TRAIL: BOTH}
    assert reasons(reading(sources=(S3_TRAIL,))) == {NO_LOGGING_TRAIL: (S3_TRAIL,)}


def test_a_stopped_trail_is_no_logging_trail_and_starting_it_fixes_it() -> None:
    assert reasons(reading(trail(logging=False))) == {NO_LOGGING_TRAIL: BOTH}
    assert reasons(reading(trail(logging=False), trail(name="Other", logging=True))) == {}


def test_a_single_region_trail_covers_only_its_home_region() -> None:
    single = trail(home="us-east-2", multi_region=False)
    assert reasons(reading(single, region="us-east-1")) == {NO_LOGGING_TRAIL: BOTH}
    assert reasons(reading(single, region="us-east-2")) == {}


def test_a_multi_region_trail_covers_its_partition_only() -> None:
    multi = trail(home="us-east-2")
    assert covers(multi.description, ACCOUNT, "eu-west-1")
    assert not covers(multi.description, ACCOUNT, "us-gov-west-1")
    gov = trail(home="us-gov-west-1")
    assert covers(gov.description, ACCOUNT, "us-gov-east-1") and not covers(gov.description, ACCOUNT, "us-east-1")


def test_an_organization_trail_of_the_management_account_counts_in_a_member() -> None:
    org = trail(name="OrganizationTrail", home="us-east-1", account=MANAGEMENT, organization=True)
    assert reasons(reading(org)) == {}
    # A trail of another account that is not an organization trail records nothing here.
    foreign = trail(name="OrganizationTrail", home="us-east-1", account=MANAGEMENT, organization=False)
    assert reasons(reading(foreign)) == {NO_LOGGING_TRAIL: BOTH}


@pytest.mark.parametrize(
    ("selectors", "read", "write"),
    [
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True}]}, True, True),
        ({"EventSelectors": [{}]}, True, True),  # AWS's documented defaults: All, management events on
        ({"EventSelectors": [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}]}, True, False),
        ({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]}, False, True),
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": False,
                              "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}, False, False),
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True, "ExcludeManagementEventSources": ["kms.amazonaws.com"]}]}, True, True),
        ({"EventSelectors": []}, False, False),
        ({"AdvancedEventSelectors": [{"Name": "Management events", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}]}, True, True),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["true"]}]}]}, True, False),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["false"]}]}]}, False, True),
        ({"AdvancedEventSelectors": [
            {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["false"]}]},
            {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["true"]}]},
        ]}, True, True),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com", "rdsdata.amazonaws.com"]}]}]}, True, True),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "eventSource", "Equals": ["ec2.amazonaws.com"]}]}]}, False, False),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}]}]}, False, False),
    ],
)
def test_management_events_read_from_basic_and_advanced_selectors(selectors: dict[str, Any], read: bool, write: bool) -> None:
    shaped("cloudtrail", "GetEventSelectors", selectors)
    assert management_events(selectors) == (read, write)
    problem = {} if read and write else {MANAGEMENT_EVENTS_OFF: BOTH}
    assert reasons(reading(trail(selectors=selectors))) == problem


def test_read_and_write_may_come_from_two_logging_trails_but_not_from_a_stopped_one() -> None:
    reads = trail(name="Reads", selectors={"EventSelectors": [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}]})
    writes = trail(name="Writes", selectors={"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]})
    stopped_writes = trail(name="Writes", logging=False)
    assert reasons(reading(reads, writes)) == {}
    assert reasons(reading(reads, stopped_writes)) == {MANAGEMENT_EVENTS_OFF: BOTH}


# -------------------------------------------------------------------------------- rule


@pytest.mark.parametrize(
    ("state", "targets", "expected"),
    [
        ("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", 1, set()),
        ("ENABLED", 1, {RULE_READ_ONLY_EVENTS_OFF}),
        ("DISABLED", 1, {RULE_DISABLED}),
        (None, 0, {RULE_MISSING}),
        ("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", 0, {RULE_NO_TARGET}),
        ("DISABLED", 0, {RULE_DISABLED, RULE_NO_TARGET}),
    ],
)
def test_the_forwarder_rule_blinds_only_the_eventbridge_source(state: str | None, targets: int, expected: set[str]) -> None:
    found = reasons(reading(trail(), rule_=rule(state, targets)))
    assert found == {reason: (EVENTBRIDGE,) for reason in expected}
    # Without the EventBridge queue the rule is not judged.
    assert reasons(RegionReading(ACCOUNT, "us-east-1", (trail(),), rule(state, targets), sources=(S3_TRAIL,))) == {}


def test_a_rule_state_the_model_does_not_know_fails_closed() -> None:
    odd = RuleReading({"Name": "aws-root-activity-forwarder", "State": "ENABLED_SOMEHOW"}, ({"Id": "x", "Arn": "arn"},))
    assert reasons(reading(trail(), rule_=odd)) == {RULE_DISABLED: (EVENTBRIDGE,)}


# ------------------------------------------------------------------ failure and merging


def test_a_failed_read_is_check_failed_for_every_configured_source() -> None:
    failed = RegionReading(ACCOUNT, "us-east-1", failed="access_denied", sources=BOTH)
    assert evaluate([failed], now=5.0) == (PathProblem(ACCOUNT, "us-east-1", BOTH, CHECK_FAILED, 5.0),)


def test_one_problem_per_account_region_and_reason_with_its_sources_joined() -> None:
    # No trail (both sources) and no rule (EventBridge): two reasons, one problem each.
    problems = evaluate([reading(rule_=rule(None))], now=7.0)
    assert problems == (
        PathProblem(ACCOUNT, "us-east-1", BOTH, NO_LOGGING_TRAIL, 7.0),
        PathProblem(ACCOUNT, "us-east-1", (EVENTBRIDGE,), RULE_MISSING, 7.0),
    )
    assert len({(p.account_id, p.region, p.reason) for p in problems}) == len(problems)


def test_since_stays_while_the_problem_persists_and_restarts_when_it_changes() -> None:
    first = evaluate([reading(trail(logging=False))], now=100.0)
    again = evaluate([reading(trail(logging=False))], first, now=200.0)
    assert [p.since for p in again] == [100.0]
    changed = evaluate([reading(trail(selectors={"EventSelectors": [{"ReadWriteType": "WriteOnly"}]}))], again, now=300.0)
    assert [(p.reason, p.since) for p in changed] == [(MANAGEMENT_EVENTS_OFF, 300.0)]
    assert evaluate([reading(trail())], changed, now=400.0) == ()
    # Other regions keep their own since.
    east2 = RegionReading(ACCOUNT, "us-east-2", sources=BOTH, rule=rule())
    both = evaluate([reading(), east2], now=500.0)
    later = evaluate([reading(trail()), east2], both, now=600.0)
    assert [(p.region, p.since) for p in later] == [("us-east-2", 500.0)]


# ------------------------------------------------------------------- vanished accounts

DAY = 86400.0


def test_an_account_that_vanishes_without_closing_is_reported_until_it_comes_back() -> None:
    roster = next_roster(Roster(), ["a", "b", "c"], [], now=0.0, keep_seconds=7 * DAY)
    assert left_organization(roster) == ()
    gone = next_roster(roster, ["a", "b"], [], now=10.0, keep_seconds=7 * DAY)
    assert left_organization(gone) == (PathProblem("c", "", (ALL,), LEFT_ORGANIZATION, 10.0),)
    still = next_roster(gone, ["a", "b"], [], now=20.0, keep_seconds=7 * DAY)
    assert left_organization(still) == (PathProblem("c", "", (ALL,), LEFT_ORGANIZATION, 10.0),)
    back = next_roster(still, ["a", "b", "c"], [], now=30.0, keep_seconds=7 * DAY)
    assert left_organization(back) == ()


def test_an_account_seen_closing_or_filtered_never_counts_as_left() -> None:
    roster = next_roster(Roster(), ["a", "b"], [], now=0.0, keep_seconds=DAY)
    # b is SUSPENDED (skipped, so present) and then gone: it was seen closing.
    closing = next_roster(roster, ["a"], ["b"], now=1.0, keep_seconds=DAY)
    assert left_organization(closing) == ()
    assert left_organization(next_roster(closing, ["a"], [], now=2.0, keep_seconds=DAY)) == ()
    # Filtered out or moved to another shard: still in the organization.
    assert left_organization(next_roster(roster, ["a"], ["b"], now=1.0, keep_seconds=DAY)) == ()


def test_a_vanished_account_is_reported_for_the_keep_time_only() -> None:
    roster = next_roster(next_roster(Roster(), ["a", "c"], [], 0.0, DAY), ["a"], [], 10.0, DAY)
    assert [p.account_id for p in left_organization(next_roster(roster, ["a"], [], 10.0 + DAY - 1, DAY))] == ["c"]
    expired = next_roster(roster, ["a"], [], 10.0 + DAY, DAY)
    assert left_organization(expired) == ()
    assert left_organization(next_roster(expired, ["a"], [], 10.0 + 2 * DAY, DAY)) == ()


def test_vanished_accounts_survive_a_restart_through_the_roster_file(tmp_path: Any) -> None:
    """The engine hook: snapshots published in organization mode, a restart in between."""
    from exporter.config.settings import load_settings
    from exporter.discovery.accounts import Account, SkippedAccount
    from exporter.engine.state import ExporterState, Snapshot
    from exporter.engine.vanished import VanishedAccounts, roster_path

    settings = load_settings(overrides={"state_file": tmp_path / "state.json"})

    def start() -> ExporterState:
        state = ExporterState(600)
        VanishedAccounts(settings, state)
        return state

    state = start()
    state.publish(Snapshot(accounts=(Account("210000000001", "a"), Account("210000000002", "b"), Account("210000000003", "c"))))
    assert not state.monitoring_problems.get("organization")
    # b is seen closing (skipped), c is simply gone; a failed discovery changes nothing.
    state.publish(Snapshot(accounts=(Account("210000000001", "a"),), discovery_error="access_denied"))
    assert not state.monitoring_problems.get("organization")
    state.publish(Snapshot(accounts=(Account("210000000001", "a"),), skipped_accounts=(SkippedAccount("210000000002", "b", "suspended"),)))
    (problem,) = state.monitoring_problems["organization"]
    assert (problem.account_id, problem.region, problem.sources, problem.reason) == ("210000000003", "", (ALL,), LEFT_ORGANIZATION)
    assert roster_path(settings.state_file).is_file()
    # After a restart it is still reported, with the same since, before any sweep.
    again = start()
    assert again.monitoring_problems["organization"] == (problem,)
    again.publish(Snapshot(accounts=(Account("210000000001", "a"), Account("210000000003", "c"))))
    assert again.monitoring_problems["organization"] == ()
