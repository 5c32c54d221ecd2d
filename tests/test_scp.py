"""The SCP root-fence rule (exporter/scp/evaluate.py), on hand-built organizations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from exporter.scp.evaluate import (
    FenceState,
    OrgTree,
    ScpInputs,
    ScpPolicy,
    evaluate,
    evaluate_inputs,
    glob_match,
)
from exporter.metrics.scp import scp_metric_families

DOCS = Path(__file__).resolve().parent.parent / "docs"

ROOT = "r-abcd"
OU_PROD = "ou-abcd-prod0001"
OU_PROD_EU = "ou-abcd-prodeu01"  # under prod
OU_PROD_EU_WEB = "ou-abcd-euweb001"  # under prod/eu
OU_DEV = "ou-abcd-dev00001"
MGMT = "000000000000"
A_ROOT = "111111111111"  # directly under the root
A_PROD = "222222222222"
A_WEB = "333333333333"  # prod/eu/web
A_DEV = "444444444444"

FULL_ACCESS = ScpPolicy(
    "p-FullAWSAccess",
    "FullAWSAccess",
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    aws_managed=True,
)


def org(**overrides) -> OrgTree:
    args = dict(
        root_id=ROOT,
        ou_parents={OU_PROD: ROOT, OU_PROD_EU: OU_PROD, OU_PROD_EU_WEB: OU_PROD_EU, OU_DEV: ROOT},
        account_parents={MGMT: ROOT, A_ROOT: ROOT, A_PROD: OU_PROD, A_WEB: OU_PROD_EU_WEB, A_DEV: OU_DEV},
        management_account_id=MGMT,
    )
    args.update(overrides)
    return OrgTree(**args)


def policy(pid: str, *statements: dict) -> ScpPolicy:
    return ScpPolicy(pid, pid, json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def deny(condition=None, action="*", **extra) -> dict:
    stmt = {"Effect": "Deny", "Resource": "*", **extra}
    if action is not None:
        stmt["Action"] = action
    if condition is not None:
        stmt["Condition"] = condition
    return stmt


ROOT_LIKE = {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}}
FENCE = policy("p-fence001", deny(ROOT_LIKE))


def run(policies, targets, **kwargs):
    base_targets = {FULL_ACCESS.policy_id: {ROOT, MGMT, A_ROOT, A_PROD, A_WEB, A_DEV, OU_PROD, OU_DEV}}
    base_targets.update(targets)
    return evaluate(org(), [FULL_ACCESS, *policies], base_targets, **kwargs)


def states(results) -> dict[str, str]:
    return {account: result.state.value for account, result in results.items()}


# --- inheritance --------------------------------------------------------------------


def test_fence_at_root_covers_every_member_account():
    results = run([FENCE], {FENCE.policy_id: {ROOT}})
    assert states(results) == {
        MGMT: "not_applicable",
        A_ROOT: "fenced",
        A_PROD: "fenced",
        A_WEB: "fenced",
        A_DEV: "fenced",
    }
    assert results[A_WEB].policy_ids == ("p-fence001",)
    assert results[A_WEB].exceptions == ()
    assert results[A_WEB].code == "fence"


def test_fence_only_through_one_ou():
    results = run([FENCE], {FENCE.policy_id: {OU_DEV}})
    assert results[A_DEV].state is FenceState.fenced
    assert results[A_PROD].state is FenceState.not_fenced
    assert results[A_ROOT].state is FenceState.not_fenced
    assert results[A_PROD].code == "no_fence"


def test_fence_two_levels_up_reaches_nested_account():
    results = run([FENCE], {FENCE.policy_id: {OU_PROD}})
    assert results[A_WEB].state is FenceState.fenced  # prod -> eu -> web -> account
    assert results[A_PROD].state is FenceState.fenced
    assert results[A_DEV].state is FenceState.not_fenced


def test_fence_attached_to_the_account_itself():
    results = run([FENCE], {FENCE.policy_id: {A_DEV}})
    assert states(results)[A_DEV] == "fenced"
    assert states(results)[A_WEB] == "not_fenced"


def test_nearest_fencing_policy_first():
    other = policy("p-fence002", deny({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}}))
    results = run([FENCE, other], {FENCE.policy_id: {ROOT}, other.policy_id: {OU_PROD_EU}})
    assert results[A_WEB].policy_ids == ("p-fence002", "p-fence001")
    assert results[A_DEV].policy_ids == ("p-fence001",)


def test_detached_policy_is_re_evaluated():
    attached = run([FENCE], {FENCE.policy_id: {OU_PROD}})
    assert attached[A_WEB].state is FenceState.fenced
    detached = run([FENCE], {FENCE.policy_id: set()})
    assert detached[A_WEB].state is FenceState.not_fenced
    moved = run([FENCE], {FENCE.policy_id: {OU_DEV}})
    assert moved[A_WEB].state is FenceState.not_fenced
    assert moved[A_DEV].state is FenceState.fenced


def test_orphan_parent_chain_does_not_loop():
    tree = org(ou_parents={OU_PROD: OU_DEV, OU_DEV: OU_PROD})
    results = evaluate(tree, [FENCE], {FENCE.policy_id: {ROOT}})
    assert results[A_PROD].state is FenceState.not_fenced
    assert results[A_ROOT].state is FenceState.fenced


# --- which statements fence ---------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"aws:userid": "111111111111"}},
        {"StringEquals": {"aws:PrincipalType": "Account"}},
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}},
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/root"}},
        {"StringLike": {"aws:SourceArn": "arn:aws:iam::*:root"}},
        {"StringEquals": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},  # literal, no wildcard
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:ROOT"}},  # values are case-sensitive
        {"Bool": {"aws:PrincipalArn": "true"}},
    ],
)
def test_wrong_condition_is_not_a_fence(condition):
    p = policy("p-wrong001", deny(condition))
    result = run([p], {p.policy_id: {ROOT}})[A_PROD]
    assert result.state is FenceState.not_fenced
    assert result.policy_ids == ()


def test_non_root_arn_is_no_fence_and_not_conditional():
    p = policy("p-wrong001", deny({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/Admin"}}))
    result = run([p], {p.policy_id: {ROOT}})[A_PROD]
    assert (result.code, result.conditional_policy_ids) == ("no_fence", ())


def test_unknown_key_is_reported_conditional():
    p = policy("p-wrong001", deny({"StringEquals": {"aws:userid": A_PROD}}))
    result = run([p], {p.policy_id: {ROOT}})[A_PROD]
    assert result.code == "conditional_only"
    assert result.conditional_policy_ids == ("p-wrong001",)


def test_extra_narrowing_condition_is_conditional_not_a_fence():
    p = policy(
        "p-region01",
        deny({**ROOT_LIKE, "StringNotEquals": {"aws:RequestedRegion": ["eu-west-1"]}}),
    )
    result = run([p], {p.policy_id: {ROOT}})[A_DEV]
    assert result.state is FenceState.not_fenced
    assert result.conditional_policy_ids == ("p-region01",)


def test_conditional_reported_next_to_a_real_fence():
    p = policy("p-region01", deny({**ROOT_LIKE, "Bool": {"aws:MultiFactorAuthPresent": "false"}}))
    result = run([FENCE, p], {p.policy_id: {ROOT}, FENCE.policy_id: {OU_DEV}})[A_DEV]
    assert result.state is FenceState.fenced
    assert result.conditional_policy_ids == ("p-region01",)


@pytest.mark.parametrize(
    "condition",
    [
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
        {"stringlike": {"AWS:PRINCIPALARN": "arn:aws:iam::*:root"}},
        {"STRINGLIKE": {"aws:principalarn": ["arn:aws:iam::*:role/x", "arn:aws:iam::*:root"]}},
        {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
        {"arnEquals": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},  # ArnEquals takes wildcards
        {"ArnLike": {"aws:PrincipalArn": "arn:*:iam::*:root"}},
        {"StringEquals": {"aws:PrincipalArn": f"arn:aws:iam::{A_DEV}:root"}},
        {"StringEqualsIgnoreCase": {"aws:PrincipalArn": f"ARN:AWS:IAM::{A_DEV}:ROOT"}},
        {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{A_DEV}:root"}},
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::????????????:root"}},
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::4444*:root"}},
        {"StringLike": {"aws:PrincipalArn": "*:root"}},
        {"ForAnyValue:StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
        {"forallvalues:arnlike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
        {"ArnLikeIfExists": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
        # "everyone except the break-glass role" also denies root
        {"ArnNotLike": {"aws:PrincipalArn": ["arn:aws:iam::*:role/BreakGlass"]}},
        {"StringNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}},
        # two matching operators on the same key: both hold
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}, "ArnLike": {"aws:PrincipalArn": "*:*:*:*:*:root"}},
    ],
)
def test_root_principal_match_variants_fence(condition):
    p = policy("p-fence009", deny(condition))
    assert run([p], {p.policy_id: {OU_DEV}})[A_DEV].state is FenceState.fenced


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"aws:PrincipalArn": f"arn:aws:iam::{A_PROD}:root"}},  # another account
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::2222*:root"}},
        {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*"}},  # ArnLike: `*` stays in its part
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::???:root"}},
        {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},  # denies all but root
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::${aws:PrincipalAccount}:root"}},
    ],
)
def test_root_principal_non_matches(condition):
    p = policy("p-fence009", deny(condition))
    assert run([p], {p.policy_id: {OU_DEV}})[A_DEV].state is FenceState.not_fenced


def test_other_partition_needs_a_matching_arn():
    gov = org(partition="aws-us-gov")
    assert evaluate(gov, [FENCE], {FENCE.policy_id: {ROOT}})[A_DEV].state is FenceState.not_fenced
    any_partition = policy("p-anypart1", deny({"ArnLike": {"aws:PrincipalArn": "arn:*:iam::*:root"}}))
    results = evaluate(gov, [any_partition], {any_partition.policy_id: {ROOT}})
    assert results[A_DEV].state is FenceState.fenced


def test_unconditional_deny_all_fences_root_too():
    p = policy("p-quaran01", deny())
    assert run([p], {p.policy_id: {OU_DEV}})[A_DEV].state is FenceState.fenced


@pytest.mark.parametrize("action", ["*", ["*"], ["s3:*", "*"], "*:*"])
def test_action_forms_covering_everything(action):
    p = policy("p-fence001", deny(ROOT_LIKE, action=action))
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].state is FenceState.fenced


def test_statement_as_single_object_not_list():
    content = json.dumps({"Version": "2012-10-17", "Statement": deny(ROOT_LIKE)})
    p = ScpPolicy("p-single01", "single", content)
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].state is FenceState.fenced


def test_partial_action_list_is_not_a_full_fence():
    p = policy("p-iamonly1", deny(ROOT_LIKE, action=["iam:*", "s3:*"]))
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].state is FenceState.not_fenced


def test_allow_statements_are_ignored():
    p = policy("p-allow001", {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": ROOT_LIKE})
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].state is FenceState.not_fenced


def test_effect_deny_is_case_sensitive_like_iam():
    p = policy("p-lower001", {**deny(ROOT_LIKE), "Effect": "deny"})
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].state is FenceState.not_fenced


@pytest.mark.parametrize(
    "scope",
    [
        {"Resource": "arn:aws:s3:::critical-bucket"},
        {"Resource": ["arn:aws:s3:::a", "arn:aws:s3:::b"]},
    ],
)
def test_resource_scoped_deny_is_not_a_fence(scope):
    p = policy("p-scoped01", {**deny(ROOT_LIKE), **scope})
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].state is FenceState.not_fenced


def test_not_resource_deny_is_not_a_fence():
    stmt = deny(ROOT_LIKE)
    del stmt["Resource"]
    stmt["NotResource"] = "arn:aws:s3:::logs"
    p = policy("p-scoped01", stmt)
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].state is FenceState.not_fenced


# --- sts:AssumeRoot sessions ---------------------------------------------------------

NOT_ASSUMED_ROOT = {"Null": {"aws:AssumedRoot": "true"}}


@pytest.mark.parametrize(
    "exemption",
    [
        {"Null": {"aws:AssumedRoot": "true"}},
        {"null": {"AWS:ASSUMEDROOT": ["true"]}},
        {"Null": {"aws:AssumedRoot": True}},
        {"BoolIfExists": {"aws:AssumedRoot": "false"}},
    ],
)
def test_fence_exempting_assume_root_sessions_still_fences(exemption):
    # The shape of AWS's sample SCP and of Control Tower's root control with ExemptAssumeRoot.
    p = policy("p-exempt01", deny({"ArnLike": {"aws:PrincipalArn": ["arn:aws:iam::*:root"]}, **exemption}))
    result = run([p], {p.policy_id: {ROOT}})[A_DEV]
    assert result.state is FenceState.fenced
    assert result.assumed_root_exempt
    assert "AssumeRoot" in result.reason


@pytest.mark.parametrize(
    "other",
    [
        {"Null": {"aws:AssumedRoot": "false"}},  # deny only inside AssumeRoot sessions
        {"Bool": {"aws:AssumedRoot": "false"}},  # absent key: Bool does not match root credentials
        {"StringEquals": {"aws:AssumedRoot": "true"}},
    ],
)
def test_other_assumed_root_conditions_are_conditional(other):
    p = policy("p-exempt02", deny({**ROOT_LIKE, **other}))
    result = run([p], {p.policy_id: {ROOT}})[A_DEV]
    assert result.state is FenceState.not_fenced
    assert result.conditional_policy_ids == ("p-exempt02",)


def test_strict_fence_preferred_over_exempting_one():
    exempt = policy("p-exempt01", deny({**ROOT_LIKE, **NOT_ASSUMED_ROOT}))
    results = run([exempt, FENCE], {exempt.policy_id: {ROOT}, FENCE.policy_id: {OU_DEV}})
    assert results[A_DEV].policy_ids == ("p-fence001",)
    assert not results[A_DEV].assumed_root_exempt
    assert results[A_PROD].policy_ids == ("p-exempt01",)
    assert results[A_PROD].assumed_root_exempt


def test_exemption_plus_narrowing_condition_is_conditional():
    p = policy("p-exempt03", deny({**ROOT_LIKE, **NOT_ASSUMED_ROOT, "StringEquals": {"aws:RequestedRegion": "us-east-1"}}))
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].code == "conditional_only"


def test_exempting_fence_with_unknown_targets_makes_unknown():
    p = policy("p-exempt01", deny({**ROOT_LIKE, **NOT_ASSUMED_ROOT}))
    results = run([p], {}, unreadable={p.policy_id: "ListTargetsForPolicy: AccessDeniedException"})
    assert results[A_DEV].state is FenceState.unknown


# --- NotAction and sensitive actions --------------------------------------------------


def test_not_action_fences_with_exceptions():
    p = policy("p-notact01", deny(ROOT_LIKE, action=None, NotAction=["s3:PutBucketPolicy", "iam:EnableMFADevice"]))
    result = run([p], {p.policy_id: {ROOT}})[A_DEV]
    assert result.state is FenceState.fenced
    assert result.exceptions == ("iam:EnableMFADevice", "s3:PutBucketPolicy")
    assert "except" in result.reason


def test_not_action_star_denies_nothing():
    p = policy("p-notact02", deny(ROOT_LIKE, action=None, NotAction="*"))
    assert run([p], {p.policy_id: {ROOT}})[A_DEV].state is FenceState.not_fenced


def test_full_deny_wins_over_not_action_exceptions():
    p = policy("p-notact01", deny(ROOT_LIKE, action=None, NotAction=["s3:*"]))
    results = run([p, FENCE], {p.policy_id: {ROOT}, FENCE.policy_id: {OU_DEV}})
    assert results[A_DEV].exceptions == ()
    assert results[A_DEV].policy_ids == ("p-fence001",)
    assert results[A_PROD].exceptions == ("s3:*",)


SENSITIVE = ["iam:CreateAccessKey", "iam:CreateUser", "s3:PutBucketPolicy"]


def test_sensitive_list_not_covered_by_iam_only_deny():
    p = policy("p-iamonly1", deny(ROOT_LIKE, action="iam:*"))
    result = run([p], {p.policy_id: {ROOT}}, sensitive_actions=SENSITIVE)[A_DEV]
    assert result.state is FenceState.not_fenced


def test_sensitive_list_covered_by_statements_of_two_policies():
    iam = policy("p-iamonly1", deny(ROOT_LIKE, action="iam:*"))
    s3 = policy("p-s3only01", deny(ROOT_LIKE, action=["S3:PutBucket*"]))  # actions: any case
    results = run([iam, s3], {iam.policy_id: {ROOT}, s3.policy_id: {OU_DEV}}, sensitive_actions=SENSITIVE)
    assert results[A_DEV].state is FenceState.fenced
    assert set(results[A_DEV].policy_ids) == {"p-iamonly1", "p-s3only01"}
    assert results[A_PROD].state is FenceState.not_fenced


def test_sensitive_list_with_not_action():
    allowed_s3 = policy("p-notact01", deny(ROOT_LIKE, action=None, NotAction=["s3:PutBucketPolicy"]))
    allowed_sts = policy("p-notact02", deny(ROOT_LIKE, action=None, NotAction=["sts:*"]))
    results = run([allowed_s3], {allowed_s3.policy_id: {ROOT}}, sensitive_actions=SENSITIVE)
    assert results[A_DEV].state is FenceState.not_fenced  # s3:PutBucketPolicy is an exception
    results = run([allowed_sts], {allowed_sts.policy_id: {ROOT}}, sensitive_actions=SENSITIVE)
    assert results[A_DEV].state is FenceState.fenced
    assert results[A_DEV].exceptions == ("sts:*",)


def test_full_deny_covers_any_sensitive_list():
    assert run([FENCE], {FENCE.policy_id: {ROOT}}, sensitive_actions=SENSITIVE)[A_DEV].state is FenceState.fenced


# --- states that are not fence / no fence -------------------------------------------


def test_management_account_is_not_applicable_even_with_fence():
    results = run([FENCE], {FENCE.policy_id: {ROOT, MGMT}})
    assert results[MGMT].state is FenceState.not_applicable
    assert results[MGMT].code == "management_account"


def test_scp_disabled():
    results = run([FENCE], {FENCE.policy_id: {ROOT}}, scp_enabled=False)
    assert {r.code for a, r in results.items() if a != MGMT} == {"scp_disabled"}
    assert {r.state for a, r in results.items() if a != MGMT} == {FenceState.not_fenced}
    assert results[MGMT].state is FenceState.not_applicable


def test_unreadable_policy_on_path_is_unknown():
    broken = ScpPolicy("p-broken01", "broken", None)
    results = run([broken], {broken.policy_id: {OU_PROD}}, unreadable={"p-broken01": "AccessDeniedException"})
    assert results[A_WEB].state is FenceState.unknown
    assert results[A_WEB].code == "unreadable_policy"
    assert "AccessDeniedException" in results[A_WEB].reason
    assert results[A_DEV].state is FenceState.not_fenced  # not on its path


def test_unreadable_only_in_unreadable_mapping():
    results = run([], {"p-broken01": {ROOT}}, unreadable={"p-broken01": "ThrottlingException"})
    assert results[A_DEV].state is FenceState.unknown


def test_readable_fence_wins_over_unreadable():
    broken = ScpPolicy("p-broken01", "broken", None)
    results = run([FENCE, broken], {FENCE.policy_id: {OU_DEV}, broken.policy_id: {ROOT}}, unreadable={"p-broken01": "x"})
    assert results[A_DEV].state is FenceState.fenced
    assert results[A_PROD].state is FenceState.unknown


def test_invalid_json_content_is_unknown():
    broken = ScpPolicy("p-broken01", "broken", "{not json")
    result = run([broken], {broken.policy_id: {ROOT}})[A_DEV]
    assert result.state is FenceState.unknown
    assert "not a JSON policy document" in result.reason


def test_unknown_targets_of_a_fence_is_unknown_everywhere():
    results = run([FENCE], {}, unreadable={FENCE.policy_id: "ListTargetsForPolicy: AccessDenied"})
    assert {results[a].state for a in (A_ROOT, A_PROD, A_WEB, A_DEV)} == {FenceState.unknown}


def test_unknown_targets_of_a_harmless_policy_do_not_matter():
    harmless = policy("p-harmles1", {"Effect": "Allow", "Action": "*", "Resource": "*"})
    results = run([harmless], {}, unreadable={harmless.policy_id: "ListTargetsForPolicy: AccessDenied"})
    assert results[A_DEV].state is FenceState.not_fenced


@given(
    attached=st.sets(st.sampled_from([ROOT, OU_PROD, OU_PROD_EU, OU_PROD_EU_WEB, OU_DEV, A_ROOT, A_PROD, A_WEB, A_DEV])),
    fence_attached=st.sets(st.sampled_from([ROOT, OU_PROD, OU_DEV, A_WEB])),
)
def test_property_unreadable_never_makes_fenced(attached, fence_attached):
    broken = ScpPolicy("p-broken01", "broken", None)
    with_broken = run([FENCE, broken], {FENCE.policy_id: fence_attached, broken.policy_id: attached})
    without = run([FENCE], {FENCE.policy_id: fence_attached})
    for account, result in with_broken.items():
        if result.state is FenceState.fenced:
            assert without[account].state is FenceState.fenced
        if without[account].state is FenceState.not_fenced:
            assert result.state in (FenceState.not_fenced, FenceState.unknown)


# --- the shipped policies -------------------------------------------------------------


def _json_from_docs(heading: str) -> str:
    text = (DOCS / "scp.md").read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1)


def test_shipped_fence_policy_fences_every_member_account():
    content = (DOCS / "root-fence-scp.json").read_text()
    shipped = ScpPolicy("p-shipped1", "DenyRootUser", content)
    results = run([shipped], {shipped.policy_id: {ROOT}})
    members = [r for a, r in results.items() if a != MGMT]
    assert all(r.state is FenceState.fenced and r.exceptions == () and not r.assumed_root_exempt for r in members)
    assert len(content.encode()) <= 5120  # SCP size quota


def test_documented_variant_fences_with_exceptions():
    content = _json_from_docs("### Variant: keep the root-only tasks")
    variant = ScpPolicy("p-variant1", "DenyRootUserExceptTasks", content)
    result = run([variant], {variant.policy_id: {ROOT}})[A_DEV]
    assert result.state is FenceState.fenced
    assert "s3:DeleteBucketPolicy" in result.exceptions
    assert "iam:CreateAccessKey" not in result.exceptions
    assert not result.assumed_root_exempt
    assert len(content.encode()) <= 5120


def test_documented_assume_root_variant_fences_root_credentials():
    content = _json_from_docs("### Variant: centralized root access")
    variant = ScpPolicy("p-variant2", "DenyRootCredentials", content)
    result = run([variant], {variant.policy_id: {ROOT}})[A_DEV]
    assert result.state is FenceState.fenced
    assert result.assumed_root_exempt
    assert result.exceptions == ()


# --- evaluate_inputs and metrics ----------------------------------------------------


def test_evaluate_inputs_matches_evaluate():
    inputs = ScpInputs(
        org=org(),
        policies=(FULL_ACCESS, FENCE),
        targets={FENCE.policy_id: frozenset({OU_DEV})},
        scp_enabled=True,
    )
    assert evaluate_inputs(inputs) == evaluate(org(), [FULL_ACCESS, FENCE], {FENCE.policy_id: {OU_DEV}})


class _Static(Collector):
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def test_metric_families_exposition():
    broken = ScpPolicy("p-broken01", "broken", None)
    results = run([FENCE, broken], {FENCE.policy_id: {OU_DEV}, broken.policy_id: {OU_PROD}})
    registry = CollectorRegistry()
    registry.register(_Static(scp_metric_families(results, scp_enabled=True)))
    text = generate_latest(registry).decode()

    def value(name, **labels):
        return registry.get_sample_value(name, labels)

    assert value("aws_root_scp_policy_type_enabled") == 1.0
    for account, state in [(A_DEV, "fenced"), (A_ROOT, "not_fenced"), (MGMT, "not_applicable"), (A_WEB, "unknown")]:
        for other in ("fenced", "not_fenced", "not_applicable", "unknown"):
            # fenced and not_applicable are 0 when not current (rules read their zeros); the others absent.
            want = 1.0 if other == state else (0.0 if other in ("fenced", "not_applicable") else None)
            assert value("aws_root_scp_fence_state", account_id=account, state=other) == want, (account, other)
    assert value("aws_root_scp_fence_info", account_id=A_DEV, policy_id="p-fence001") == 1.0
    # Only fenced accounts have an info series: none with an empty policy_id.
    assert value("aws_root_scp_fence_info", account_id=A_ROOT, policy_id="") is None
    fenced = [account for account, result in results.items() if result.state is FenceState.fenced]
    assert fenced == [A_DEV]
    assert text.count("aws_root_scp_fence_info{") == len(fenced)
    assert 'policy_id=""' not in text
    zeros_kept = {"fenced", "not_applicable"}
    assert text.count('aws_root_scp_fence_state{') == sum(len(zeros_kept | {r.state.value}) for r in results.values())


def test_metric_families_scp_disabled():
    families = scp_metric_families({}, scp_enabled=False)
    enabled = next(f for f in families if f.name == "aws_root_scp_policy_type_enabled")
    assert [s.value for s in enabled.samples] == [0.0]


def test_metrics_documented_in_docs():
    text = (DOCS / "scp.md").read_text()
    metrics = text.split("## Metrics", 1)[1]
    rows = re.findall(r"^\| `(aws_root_[a-z_]+)` \| (\w+) \|([^|]*)\|", metrics, re.MULTILINE)
    documented = {name: (kind, re.findall(r"`(\w+)`", labels)) for name, kind, labels in rows}
    families = scp_metric_families({A_DEV: run([], {})[A_DEV]}, scp_enabled=True)
    exposed = {f.name: (f.type, list(f.labels)) for f in families}
    assert documented == exposed


# --- IAM glob ---------------------------------------------------------------------------

_plain = st.text(alphabet=st.characters(blacklist_characters="*?"), max_size=20)


@given(_plain)
def test_glob_without_wildcards_is_equality(value):
    assert glob_match(value, value)
    assert not glob_match(value + "x", value)


@given(_plain, _plain)
def test_glob_star_matches_any_infix(prefix, middle):
    assert glob_match(prefix + "*", prefix + middle)
    assert glob_match("*" + prefix, middle + prefix)
    assert glob_match("?" * len(middle), middle)


def test_glob_regex_characters_are_literal():
    assert glob_match("a.b", "a.b")
    assert not glob_match("a.b", "axb")
    assert glob_match("iam:*", "IAM:CreateUser", ignore_case=True)
    assert not glob_match("iam:*", "IAM:CreateUser")
