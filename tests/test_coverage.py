"""Proof of sight, judged purely: canary recognition (exporter/monitoring/canary.py) and every
state transition of a path (exporter/monitoring/coverage.py), with the clock passed in."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from exporter.activity.classify import classify, eventbridge_pattern
from exporter.config.settings import CANARY_BOUNDS_SECONDS, load_settings
from exporter.monitoring.canary import canary_pattern, forwarded, is_canary
from exporter.monitoring.coverage import (
    BLIND,
    CANARY_MISSING,
    CANARY_NOT_FORWARDED,
    PENDING,
    PROVEN,
    Coverage,
    configured_sources,
    monitored_regions,
)
from exporter.monitoring.problems import EVENTBRIDGE, LOOKUP, S3_TRAIL, PathProblem

FIXTURE = Path(__file__).parent / "fixtures" / "canary" / "stratus__get_caller_identity_assumed_role_regional.json"
A, B = "111111111111", "222222222222"
REGION = "eu-west-1"
BOUNDS = {EVENTBRIDGE: 300.0, S3_TRAIL: 900.0, LOOKUP: 900.0}
INTERVAL = 300.0
# How long a path stays proven after its last canary (or pending after its first attempt):
# the bound plus two intervals, one lost canary being tolerated.
LIMIT = {source: bound + 2 * INTERVAL for source, bound in BOUNDS.items()}
SESSION = "aws-root-exporter"
ARN_A = f"arn:aws:sts::{A}:assumed-role/AwsRootExporterReadOnly/{SESSION}"
T0 = 1_000_000.0


def coverage(sources=(EVENTBRIDGE, S3_TRAIL, LOOKUP)) -> Coverage:
    return Coverage(sources, BOUNDS, INTERVAL, SESSION)


def canary_record(account: str = A, session: str = SESSION) -> dict:
    """The published record with the exporter's identity in `account`."""
    record = copy.deepcopy(json.loads(FIXTURE.read_text()))
    role_id = record["userIdentity"]["sessionContext"]["sessionIssuer"]["principalId"]
    record["userIdentity"]["arn"] = f"arn:aws:sts::{account}:assumed-role/AwsRootExporterReadOnly/{session}"
    record["userIdentity"]["principalId"] = f"{role_id}:{session}"
    record["userIdentity"]["accountId"] = account
    return record


# ---------------------------------------------------------------- recognition


def test_the_published_record_is_a_read_only_management_event_on_a_regional_endpoint() -> None:
    record = json.loads(FIXTURE.read_text())
    assert (record["readOnly"], record["managementEvent"], record["eventCategory"]) == (True, True, "Management")
    assert record["tlsDetails"]["clientProvidedHostHeader"] == f"sts.{record['awsRegion']}.amazonaws.com"


def test_a_canary_is_recognised_by_its_session_name_or_a_learned_identity() -> None:
    assert is_canary(canary_record(), known_arns=())
    # Not the exporter's session, but an identity it made canaries with (its own credentials).
    own = canary_record(session="someone")
    assert not is_canary(own, known_arns=())
    assert is_canary(own, known_arns={own["userIdentity"]["arn"]})
    # A configured session name.
    assert is_canary(canary_record(session="root-watch"), known_arns=(), session_name="root-watch")
    # Anybody else's GetCallerIdentity, and the exporter's other calls, are not canaries.
    published = json.loads(FIXTURE.read_text())
    assert not is_canary(published, known_arns=())
    other_call = canary_record() | {"eventName": "GetSessionToken"}
    assert not is_canary(other_call, known_arns=())
    assert not is_canary(canary_record() | {"userIdentity": "x"}, known_arns=())


def test_forwarded_reads_the_session_name_or_the_exporters_own_principal() -> None:
    assert forwarded(ARN_A)
    assert forwarded(f"arn:aws-us-gov:sts::{A}:assumed-role/R/{SESSION}")
    assert not forwarded(f"arn:aws:sts::{A}:assumed-role/R/other-{SESSION}x")
    # The exporter's own role (exporter-principal.yaml), whatever its session is called
    # (EKS Pod Identity: eks-<cluster>-<pod>-<uuid>), and an IAM user of that name.
    assert forwarded(f"arn:aws:sts::{A}:assumed-role/aws-root-exporter/eks-prod-aws-root-ex-1f2e3d4c")
    assert forwarded(f"arn:aws:iam::{A}:user/aws-root-exporter")
    assert forwarded(f"arn:aws-cn:iam::{A}:user/ci/aws-root-exporter")
    assert not forwarded(f"arn:aws:sts::{A}:assumed-role/aws-root-exporter-dev/i-0abc")
    assert not forwarded(f"arn:aws:iam::{A}:user/someone")
    assert not forwarded(f"arn:aws:iam::{A}:role/aws-root-exporter")
    assert not forwarded("garbage")


def own_principal_record(kind: str, account: str = A) -> dict:
    """The published record as made by the exporter's own principal: its role under another
    session name (Pod Identity), or an IAM user (sandbox, access keys outside AWS)."""
    record = canary_record(account, session="eks-prod-aws-root-ex-1f2e3d4c")
    identity = record["userIdentity"]
    if kind == "role":
        identity["arn"] = f"arn:aws:sts::{account}:assumed-role/aws-root-exporter/eks-prod-aws-root-ex-1f2e3d4c"
        identity["sessionContext"]["sessionIssuer"]["userName"] = "aws-root-exporter"
    else:
        record["userIdentity"] = {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLEEXPORTER01",
            "arn": f"arn:aws:iam::{account}:user/aws-root-exporter",
            "accountId": account,
            "accessKeyId": "AKIAEXAMPLEEXPORTER0",
            "userName": "aws-root-exporter",
        }
    return record


def test_a_canary_is_never_root_activity() -> None:
    assert classify(canary_record()) is None


def _matches(pattern, record) -> bool:
    """moto's EventBridge matcher (the one the sandbox's rules use) on the event of `record`."""
    from moto.events.models import EventPattern

    return EventPattern.load(json.dumps(pattern)).matches_event({"detail": record})


def test_the_rule_forwards_the_canary_and_no_other_get_caller_identity() -> None:
    assert canary_pattern() in eventbridge_pattern()["$or"]
    assert _matches(eventbridge_pattern(), canary_record())
    assert _matches(eventbridge_pattern(), own_principal_record("role"))
    assert _matches(eventbridge_pattern(), own_principal_record("user"))
    assert is_canary(own_principal_record("role"), known_arns=()) and is_canary(own_principal_record("user"), known_arns=())
    assert not _matches(eventbridge_pattern(), canary_record(session="ci-deploy"))
    assert not _matches(eventbridge_pattern(), json.loads(FIXTURE.read_text()))
    someone = own_principal_record("user")
    someone["userIdentity"]["userName"] = "someone"
    assert not _matches(eventbridge_pattern(), someone)
    assert _matches(canary_pattern("root-watch"), canary_record(session="root-watch"))


# ---------------------------------------------------------------- settings and regions


def test_monitored_regions_default_to_the_lookup_regions_then_the_global_region() -> None:
    settings = SimpleNamespace(monitored_regions=[], lookup_events_regions=[])
    assert monitored_regions(settings, "aws") == ["us-east-1"]
    assert monitored_regions(settings, "aws-us-gov") == ["us-gov-west-1"]
    assert monitored_regions(settings, "aws-cn") == ["cn-north-1"]
    settings.lookup_events_regions = ["eu-west-1"]
    assert monitored_regions(settings, "aws") == ["eu-west-1"]
    settings.monitored_regions = ["us-east-1", "eu-central-1"]
    assert monitored_regions(settings, "aws") == ["us-east-1", "eu-central-1"]


def test_configured_sources_follow_the_settings() -> None:
    settings = load_settings(overrides={"lookup_events_enabled": False})
    assert configured_sources(settings) == ()
    settings = load_settings(overrides={"eventbridge_queue_url": "https://sqs.us-east-1.amazonaws.com/111111111111/q", "lookup_events_enabled": True})
    assert configured_sources(settings) == (EVENTBRIDGE, LOOKUP)
    assert settings.canary_bounds_seconds == CANARY_BOUNDS_SECONDS


# ---------------------------------------------------------------- transitions


def test_pending_until_the_first_canary_comes_back_then_proven() -> None:
    c = coverage()
    assert c.state(A, REGION, EVENTBRIDGE, T0).state == PENDING  # not even tried
    c.attempted(A, REGION, T0)
    c.made(A, ARN_A, T0)
    assert c.state(A, REGION, EVENTBRIDGE, T0 + 10).state == PENDING
    assert c.seen(A, REGION, EVENTBRIDGE, "e1", event_time=T0, arrival=T0 + 42)
    assert c.state(A, REGION, EVENTBRIDGE, T0 + 50).state == PROVEN
    # The other sources have not delivered it yet.
    assert c.state(A, REGION, S3_TRAIL, T0 + 50).state == PENDING
    assert c.delays()[EVENTBRIDGE].buckets[3] == 1  # 42 s: the le=60 bucket
    assert c.delays()[EVENTBRIDGE].total == 42


def test_restart_never_seen_goes_blind_after_bound_plus_two_intervals() -> None:
    c = coverage()  # a fresh process: nothing seen
    c.attempted(A, REGION, T0)
    c.made(A, ARN_A, T0)
    due = T0 + LIMIT[S3_TRAIL]
    assert c.state(A, REGION, S3_TRAIL, due - 1).state == PENDING
    assert c.state(A, REGION, S3_TRAIL, due) == c.state(A, REGION, S3_TRAIL, due + 600)
    assert c.state(A, REGION, S3_TRAIL, due).state == BLIND
    assert c.state(A, REGION, S3_TRAIL, due).since == due
    assert c.state(A, REGION, S3_TRAIL, due).reason == CANARY_MISSING
    # A canary made before the restart (recognised by session name) still proves the path.
    c.seen(A, REGION, S3_TRAIL, "before-restart", event_time=T0 - 60, arrival=T0 + 200)
    assert c.state(A, REGION, S3_TRAIL, T0 + 200).state == PROVEN


def test_a_failing_role_stops_the_canaries_and_the_path_goes_blind_after_its_bound() -> None:
    c = coverage()
    c.attempted(A, REGION, T0)
    c.made(A, ARN_A, T0)
    c.seen(A, REGION, EVENTBRIDGE, "e1", event_time=T0, arrival=T0 + 5)
    # From here the role fails: canaries are still attempted, none is made, none comes back.
    for n in range(1, 4):
        c.attempted(A, REGION, T0 + n * INTERVAL)
    last_good = T0 + LIMIT[EVENTBRIDGE]
    assert c.state(A, REGION, EVENTBRIDGE, last_good - 1).state == PROVEN
    blind = c.state(A, REGION, EVENTBRIDGE, last_good)
    assert (blind.state, blind.since, blind.reason) == (BLIND, last_good, CANARY_MISSING)
    # The role works again: the next canary proves the path at once.
    c.seen(A, REGION, EVENTBRIDGE, "e2", event_time=last_good + 100, arrival=last_good + 110)
    assert c.state(A, REGION, EVENTBRIDGE, last_good + 110).state == PROVEN


def test_one_lost_canary_does_not_blind_the_path() -> None:
    c = coverage((EVENTBRIDGE,))
    c.attempted(A, REGION, T0)
    c.seen(A, REGION, EVENTBRIDGE, "e1", event_time=T0, arrival=T0 + 5)
    # The canary of T0 + INTERVAL is lost (EventBridge delivers best effort); the next one,
    # made at T0 + 2 x INTERVAL, comes back within the bound.
    arrival = T0 + 2 * INTERVAL + BOUNDS[EVENTBRIDGE] - 1
    assert c.state(A, REGION, EVENTBRIDGE, arrival).state == PROVEN
    c.seen(A, REGION, EVENTBRIDGE, "e3", event_time=T0 + 2 * INTERVAL, arrival=arrival)
    assert c.state(A, REGION, EVENTBRIDGE, arrival).state == PROVEN
    # Two lost in a row: blind.
    assert c.state(A, REGION, EVENTBRIDGE, T0 + 2 * INTERVAL + LIMIT[EVENTBRIDGE]).state == BLIND


def test_a_canary_from_before_a_restart_or_a_return_does_not_make_the_path_due_early() -> None:
    # The LookupEvents pass reads back LIMIT: it finds a canary made before the account left
    # (or before the exporter restarted). The path is due from the new first attempt.
    c = coverage((LOOKUP,))
    c.attempted(A, REGION, T0 + 100)
    c.seen(A, REGION, LOOKUP, "old", event_time=T0 + 90 - LIMIT[LOOKUP] + 30, arrival=T0 + 101)
    assert c.state(A, REGION, LOOKUP, T0 + 100 + LIMIT[LOOKUP] - 1).state != BLIND
    found = c.state(A, REGION, LOOKUP, T0 + 100 + LIMIT[LOOKUP])
    assert (found.state, found.since) == (BLIND, T0 + 100 + LIMIT[LOOKUP])


def test_a_canary_read_back_before_the_first_attempt_is_never_blind() -> None:
    # The order a pipeline run met: the account came back, and the LookupEvents pass read a
    # canary from before it left before the canary loop reached it. Proven while that canary
    # is young enough, then pending, not blind: nothing was tried yet.
    c = coverage((LOOKUP,))
    c.seen(A, REGION, LOOKUP, "old", event_time=T0, arrival=T0 + 5)
    assert c.state(A, REGION, LOOKUP, T0 + 5).state == PROVEN
    assert c.state(A, REGION, LOOKUP, T0 + LIMIT[LOOKUP]).state == PENDING
    counts, problems = c.evaluate([(A, REGION)], T0 + LIMIT[LOOKUP] + 1)
    assert counts == {(LOOKUP, REGION, PENDING): 1} and problems == []
    # Tried now: due from this attempt.
    c.attempted(A, REGION, T0 + LIMIT[LOOKUP] + 2)
    assert c.state(A, REGION, LOOKUP, T0 + 2 * LIMIT[LOOKUP] + 1).state != BLIND
    found = c.state(A, REGION, LOOKUP, T0 + 2 * LIMIT[LOOKUP] + 2)
    assert (found.state, found.since) == (BLIND, T0 + 2 * LIMIT[LOOKUP] + 2)


def test_a_role_failing_from_the_start_goes_blind_too() -> None:
    c = coverage((LOOKUP,))
    c.attempted(A, REGION, T0)  # AssumeRole fails: nothing made, nothing seen
    assert c.state(A, REGION, LOOKUP, T0 + LIMIT[LOOKUP]).state == BLIND


def test_an_account_added_is_pending_then_proven_and_one_removed_is_forgotten() -> None:
    c = coverage((LOOKUP,))
    c.attempted(A, REGION, T0)
    c.seen(A, REGION, LOOKUP, "a1", T0, T0 + 100)
    later = T0 + 5 * INTERVAL
    c.attempted(B, REGION, later)
    counts, problems = c.evaluate([(A, REGION), (B, REGION)], later + 1)
    assert counts == {(LOOKUP, REGION, PENDING): 1, (LOOKUP, REGION, BLIND): 1}  # A's canary is old by now
    assert problems == [PathProblem(A, REGION, (LOOKUP,), CANARY_MISSING, T0 + LIMIT[LOOKUP])]
    c.seen(A, REGION, LOOKUP, "a2", later, later + 60)
    c.seen(B, REGION, LOOKUP, "b1", later, later + 60)
    counts, problems = c.evaluate([(A, REGION), (B, REGION)], later + 61)
    assert counts == {(LOOKUP, REGION, PROVEN): 2} and problems == []
    # B leaves the organization (the snapshot no longer has it): forgotten, not blind.
    c.forget([A])
    assert c.state(B, REGION, LOOKUP, later + 10_000).state == PENDING
    counts, _ = c.evaluate([(A, REGION)], later + 61)
    assert counts == {(LOOKUP, REGION, PROVEN): 1}
    # Back again: a new path, pending from its new first attempt.
    c.attempted(B, REGION, later + 20_000)
    assert c.state(B, REGION, LOOKUP, later + 20_001).state == PENDING


def test_an_identity_the_rule_cannot_match_is_blind_on_eventbridge_at_once() -> None:
    c = coverage()
    own = f"arn:aws:iam::{A}:user/exporter"
    c.attempted(A, REGION, T0)
    c.made(A, own, T0 + 1)
    found = c.state(A, REGION, EVENTBRIDGE, T0 + 2)
    assert (found.state, found.since, found.reason) == (BLIND, T0 + 1, CANARY_NOT_FORWARDED)
    assert c.state(A, REGION, LOOKUP, T0 + 2).state == PENDING  # LookupEvents reads it anyway
    # A rule of the user's own that does deliver it proves the path after all.
    c.seen(A, REGION, EVENTBRIDGE, "e1", T0 + 1, T0 + 5)
    assert c.state(A, REGION, EVENTBRIDGE, T0 + 5).state == PROVEN
    assert c.known_arns() == {own}


def test_the_delay_is_observed_once_per_record_and_source() -> None:
    c = coverage()
    c.attempted(A, REGION, T0)
    assert c.seen(A, REGION, LOOKUP, "e1", T0, T0 + 400)
    before = c.delay_key()
    assert not c.seen(A, REGION, LOOKUP, "e1", T0, T0 + 460)  # the next overlapping poll
    assert c.delay_key() == before
    assert c.seen(A, REGION, EVENTBRIDGE, "e1", T0, T0 + 3)  # the same record on another path
    delays = c.delays()
    assert sum(delays[LOOKUP].buckets) == 1 and delays[LOOKUP].total == 400
    assert sum(delays[EVENTBRIDGE].buckets) == 1 and delays[S3_TRAIL].buckets == [0] * 11
    # A source that is not configured is not observed.
    c2 = coverage((LOOKUP,))
    assert not c2.seen(A, REGION, EVENTBRIDGE, "e1", T0, T0 + 3)


def test_the_key_moves_on_state_changes_only() -> None:
    c = coverage((EVENTBRIDGE,))
    k0 = c.key(T0)
    c.attempted(A, REGION, T0)
    k1 = c.key(T0)
    assert k1 != k0
    c.attempted(A, REGION, T0 + 300)  # the same path again: no change
    assert c.key(T0 + 1) == k1
    c.seen(A, REGION, EVENTBRIDGE, "e1", T0, T0 + 5)  # pending -> proven
    k2 = c.key(T0 + 5)
    assert k2 != k1
    c.seen(A, REGION, EVENTBRIDGE, "e2", T0 + 300, T0 + 305)  # proven stays proven
    assert c.key(T0 + 305) == k2
    # Time alone turns it blind: the key moves exactly then.
    due = T0 + 300 + LIMIT[EVENTBRIDGE]
    assert c.key(due - 1) == k2
    assert c.key(due) != k2
    assert c.state(A, REGION, EVENTBRIDGE, due).state == BLIND


def test_new_bounds_apply_to_every_path() -> None:
    c = coverage((S3_TRAIL,))
    c.attempted(A, REGION, T0)
    assert c.state(A, REGION, S3_TRAIL, T0 + 1000).state == PENDING
    c.configure({**BOUNDS, S3_TRAIL: 60.0}, INTERVAL)
    assert c.state(A, REGION, S3_TRAIL, T0 + 1000).state == BLIND
    assert c.state(A, REGION, S3_TRAIL, T0 + 1000).since == T0 + 60 + 2 * INTERVAL


@pytest.mark.parametrize("bounds, message", [
    ({"sqs": 60}, "canary_bounds_seconds: keys must be sources (eventbridge_sqs, s3_trail, lookup_events), got 'sqs'"),
    ({"s3_trail": -1}, "canary_bounds_seconds: s3_trail: must be a number of seconds above 0, got -1.0"),
])
def test_bad_bounds_name_the_setting(bounds, message) -> None:
    from exporter.config.files import SettingsError

    with pytest.raises(SettingsError) as raised:
        load_settings(overrides={"canary_bounds_seconds": bounds})
    assert str(raised.value) == message
