"""classify(): real-format CloudTrail records (tests/fixtures/cloudtrail) and properties."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.activity.assume_root_keys import AssumeRootKeys, issued_key
from exporter.activity.classify import RECOVERY_SIGNALS, SIGNALS, MalformedRecord, Verdict, assume_root_evidence, classify
from exporter.config.settings import BreakGlassWindow

FIXTURES = Path(__file__).parent / "fixtures" / "cloudtrail"
ACCOUNT = "111122223333"
TARGET = "222222222222"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def verdict(name: str, windows: tuple[BreakGlassWindow, ...] = ()) -> Verdict:
    result = classify(load(name), windows)
    assert result is not None, name
    return result


@pytest.mark.parametrize(
    ("name", "outcome", "mfa"),
    [
        ("root_console_login_mfa_upper_yes.json", "success", "true"),
        ("root_console_login_mfa_yes.json", "success", "true"),
        ("root_console_login_no_mfa.json", "success", "false"),
        ("root_console_login_failure.json", "failure", "false"),
    ],
)
def test_root_console_login(name: str, outcome: str, mfa: str) -> None:
    v = verdict(name)
    assert (v.kind, v.outcome, v.mfa) == ("console_login", outcome, mfa)
    assert v.account_id == ACCOUNT
    assert v.event_source == "signin.amazonaws.com"
    assert v.region == "us-east-1"
    assert v.source_ip == "192.0.2.10"
    assert v.category is None and v.assumed_root is False and v.approved is False
    assert v.event_time.tzinfo is not None


@pytest.mark.parametrize(
    ("extra", "mfa_kind"),
    [
        ({"MFAUsed": "Yes", "MFAIdentifier": "arn:aws:iam::111122223333:u2f/root/passkey-1-ABCDEF"}, "u2f"),
        ({"MFAUsed": "YES", "MFAIdentifier": "arn:aws:iam::111122223333:mfa/root-account-mfa-device"}, "totp"),
        # Partitions, and AWS's varying case.
        ({"MFAUsed": "Yes", "MFAIdentifier": "arn:aws-us-gov:iam::111122223333:U2F/root/key"}, "u2f"),
        ({"MFAUsed": "yes", "MFAIdentifier": "arn:aws-cn:iam::111122223333:MFA/root"}, "totp"),
        # A hardware TOTP token is named by its serial, not an ARN.
        ({"MFAUsed": "Yes", "MFAIdentifier": "GAHT12345678"}, "totp"),
        ({"MFAUsed": "Yes", "MFAIdentifier": " gakt12345678 "}, "totp"),
        ({"MFAUsed": "No"}, "none"),
        ({"MFAUsed": "No", "MFAIdentifier": ""}, "none"),
        ({"MFAUsed": "Yes"}, "unknown"),
        ({}, "unknown"),
        # Forms no AWS document shows: never guessed into a kind.
        ({"MFAUsed": "Yes", "MFAIdentifier": "arn:aws:iam::111122223333:sms-mfa/root"}, "unknown"),
        ({"MFAUsed": "Yes", "MFAIdentifier": "arn:aws:iam::111122223333:user/u2f/x"}, "unknown"),
        ({"MFAUsed": "Yes", "MFAIdentifier": "root-account-mfa-device"}, "unknown"),
        ({"MFAUsed": "Yes", "MFAIdentifier": ["arn:aws:iam::111122223333:u2f/root/k"]}, "unknown"),
    ],
)
def test_console_login_factor_kind(extra: dict[str, Any], mfa_kind: str) -> None:
    record = load("root_console_login_mfa_yes.json")
    record["additionalEventData"] = {"LoginTo": "https://console.aws.amazon.com/", **extra}
    assert verdict_of(record).mfa_kind == mfa_kind


def test_factor_kind_only_for_console_logins() -> None:
    assert verdict("root_password_recovery_requested.json").mfa_kind is None
    assert verdict("root_create_access_key.json").mfa_kind is None
    assert verdict("root_console_login_no_mfa.json").mfa_kind == "none"


def test_login_outcome_falls_back_to_error_message_without_response_elements() -> None:
    record = load("root_console_login_failure.json")
    record["responseElements"] = None
    assert verdict_of(record).outcome == "failure"


def verdict_of(record: dict[str, Any], windows: tuple[BreakGlassWindow, ...] = ()) -> Verdict:
    result = classify(record, windows)
    assert result is not None
    return result


def test_event_fields_copied_from_record() -> None:
    v = verdict("root_console_login_no_mfa.json")
    assert v.event_id == "deb1e1f9-c99b-4612-8e9f-21f93b5d79c0"
    assert v.event_time == datetime(2026, 11, 20, 10, 24, 34, tzinfo=UTC)
    assert v.event_name == "ConsoleLogin"


@pytest.mark.parametrize(
    "name",
    [
        "iam_user_named_root_console_login.json",  # userName "root" but type IAMUser
        "root_invoked_by_service.json",
        "root_aws_service_event.json",
    ],
)
def test_not_root_activity(name: str) -> None:
    assert classify(load(name)) is None


def test_same_record_as_root_is_root_activity() -> None:
    # Guards the negative cases above: they are None for the stated reason only.
    record = load("iam_user_named_root_console_login.json")
    record["userIdentity"] = {"type": "Root", "accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root"}
    assert verdict_of(record).kind == "console_login"
    record = load("root_invoked_by_service.json")
    del record["userIdentity"]["invokedBy"]
    assert verdict_of(record).kind == "api_call"
    record["userIdentity"]["invokedBy"] = "signin.amazonaws.com"
    assert verdict_of(record).kind == "api_call"
    record = load("root_aws_service_event.json")
    record["eventType"] = "AwsApiCall"
    assert verdict_of(record).kind == "api_call"


def test_password_recovery_is_a_signin_event_not_a_login() -> None:
    v = verdict("root_password_recovery_requested.json")
    assert (v.kind, v.signin_event, v.outcome, v.mfa) == ("signin_other", "PasswordRecoveryRequested", "success", "unknown")


def test_unknown_signin_event_name_is_bounded() -> None:
    record = load("root_password_recovery_requested.json")
    record["eventName"] = "SomeNewSigninEvent"
    v = verdict_of(record)
    assert (v.kind, v.signin_event, v.event_name) == ("signin_other", "other", "SomeNewSigninEvent")


def test_root_api_call_denied() -> None:
    v = verdict("root_api_call_access_denied.json")
    assert (v.kind, v.outcome, v.category, v.mfa, v.assumed_root) == ("api_call", "failure", "administrative", "unknown", False)
    assert v.error_code == "AccessDenied"
    assert v.region == "eu-west-1"


def test_root_api_call_success_with_mfa_from_session_context() -> None:
    v = verdict("root_console_session_list_access_keys.json")
    assert (v.kind, v.outcome, v.category, v.mfa) == ("api_call", "success", "read_only", "true")
    # A console session has an ASIA key but is a person using root: not assumed_root.
    assert v.assumed_root is False


def test_read_only_from_name_prefix_when_read_only_missing() -> None:
    v = verdict("root_api_call_describe_no_readonly.json")
    assert v.category == "read_only"
    record = load("root_api_call_describe_no_readonly.json")
    record["eventName"] = "RunInstances"
    assert verdict_of(record).category == "administrative"


def test_read_only_flag_wins_over_name() -> None:
    record = load("root_api_call_describe_no_readonly.json")
    record["readOnly"] = False
    assert verdict_of(record).category == "administrative"


def test_assume_root_call() -> None:
    v = verdict("assume_root_call.json")
    assert v.kind == "assume_root_call"
    assert v.account_id == TARGET  # the target, not the calling management account
    assert (v.task_policy, v.outcome, v.region) == ("S3UnlockBucketPolicy", "success", "us-west-2")
    assert v.assumed_root is False


def test_assume_root_call_with_arn_target_and_denied() -> None:
    v = verdict("assume_root_call_arn_target.json")
    assert (v.account_id, v.task_policy) == (TARGET, "IAMAuditRootUserCredentials")
    denied = verdict("assume_root_call_denied.json")
    assert (denied.outcome, denied.error_code) == ("failure", "AccessDenied")


def test_assume_root_call_odd_parameters_are_bounded() -> None:
    record = load("assume_root_call.json")
    record["requestParameters"] = {"targetPrincipal": "not-an-account", "taskPolicyArn": "arn:aws:iam::aws:policy/root-task/Made Up"}
    v = verdict_of(record)
    assert (v.account_id, v.task_policy) == ("unknown", "other")
    record["requestParameters"] = None
    assert verdict_of(record).task_policy == "other"
    record["requestParameters"] = {"targetPrincipal": TARGET, "taskPolicyArn": "arn:aws:iam::aws:policy/root-task/SQSUnlockQueuePolicy"}
    assert verdict_of(record).task_policy == "SQSUnlockQueuePolicy"


def test_assumed_root_session_with_marker() -> None:
    v = verdict("assumed_root_session_marker.json")
    assert (v.kind, v.account_id, v.assumed_root, v.category) == ("api_call", TARGET, True, "break_glass")


def keys_from(*records: dict[str, Any]) -> AssumeRootKeys:
    """The ledger after the exporter saw these AssumeRoot records."""
    keys = AssumeRootKeys()
    for record in records:
        v = verdict_of(record)
        learned = issued_key(record, v.account_id, v.task_policy or "other")
        assert learned is not None
        keys.learn(*learned)
    return keys


def test_asia_key_alone_is_root_use_awaiting_its_assume_root_record() -> None:
    # Issue 12, trap 1: an ASIA key doing what a task policy allows proves nothing.
    v = verdict("assumed_root_session_asia_only.json")
    assert (v.assumed_root, v.category, v.mfa) == (False, "read_only", "false")
    assert v.awaiting_key == "ASIAI44QH8DHBEXAMPLE"


def test_get_session_token_session_doing_put_bucket_policy_is_root_use() -> None:
    record = load("assumed_root_session_asia_only.json")
    record["userIdentity"]["accessKeyId"] = "ASIAQNZGKIQY5EXAMPLE"  # minted by root's own GetSessionToken
    record["eventSource"], record["eventName"], record["readOnly"] = "s3.amazonaws.com", "PutBucketPolicy", False
    keys = keys_from(load("assume_root_call.json"))
    v = classify(record, (), keys)
    assert v is not None
    assert (v.kind, v.assumed_root, v.category) == ("api_call", False, "break_glass")


def test_key_issued_by_a_seen_assume_root_record_is_a_privileged_task() -> None:
    record = load("assumed_root_session_asia_only.json")
    record["eventSource"], record["eventName"], record["readOnly"] = "s3.amazonaws.com", "PutBucketPolicy", False
    v = classify(record, (), keys_from(load("assume_root_call.json")))
    assert v is not None and (v.assumed_root, v.awaiting_key) == (True, None)


def test_issued_key_for_another_account_is_no_evidence() -> None:
    record = load("assumed_root_session_asia_only.json")
    record["userIdentity"]["accountId"] = record["recipientAccountId"] = "333333333333"
    v = classify(record, (), keys_from(load("assume_root_call.json")))
    assert v is not None and v.assumed_root is False


def test_assume_root_expiration_in_cloudtrail_format() -> None:
    learned = issued_key(load("assume_root_call.json"), TARGET, "S3UnlockBucketPolicy")
    assert learned is not None
    key, issued = learned
    assert key == "ASIAI44QH8DHBEXAMPLE"
    assert issued.expires == datetime(2026, 11, 22, 10, 7, 11, tzinfo=UTC).timestamp()


def test_denied_assume_root_call_issues_no_key() -> None:
    assert issued_key(load("assume_root_call_denied.json"), TARGET, "other") is None


def test_a_record_without_event_id_counts_and_its_key_is_evidence() -> None:
    # AWS's own example (IAM User Guide, "Track privileged tasks") has no eventID: it is
    # counted under an id made from its content (the same copy twice has the same id), and
    # its key is evidence for the member's records.
    record = load("assume_root_call.json")
    del record["eventID"]
    verdict = classify(record)
    assert verdict is not None and verdict.kind == "assume_root_call"
    assert verdict.event_id.startswith("content-sha256:")
    assert classify(json.loads(json.dumps(record))).event_id == verdict.event_id
    assert classify({**record, "eventTime": "2024-11-22T09:53:12Z"}).event_id != verdict.event_id
    evidence = assume_root_evidence(record)
    assert evidence is not None
    key, issued = evidence
    assert (key, issued.account_id, issued.task_policy) == ("ASIAI44QH8DHBEXAMPLE", TARGET, "S3UnlockBucketPolicy")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(errorCode="AccessDenied"),
        lambda r: r["userIdentity"].update(type="Root"),
        lambda r: r["requestParameters"].update(targetPrincipal="someone"),
        lambda r: r.update(eventName="AssumeRole"),
        lambda r: r.update(responseElements=None),
    ],
)
def test_no_assume_root_evidence(mutate: Any) -> None:
    record = load("assume_root_call.json")
    mutate(record)
    assert assume_root_evidence(record) is None


def test_marker_on_the_callers_assume_root_record_does_not_make_it_root() -> None:
    # AWS's example puts assumedRoot on the caller's AssumedRole record: that is the call.
    v = verdict("assume_root_call.json")
    assert (v.kind, v.assumed_root) == ("assume_root_call", False)


def test_console_session_is_never_awaiting_a_key() -> None:
    record = load("assumed_root_session_asia_only.json")
    record["sessionCredentialFromConsole"] = "true"  # top-level, as CloudTrail writes it
    assert (verdict_of(record).assumed_root, verdict_of(record).awaiting_key) == (False, None)


def test_session_credential_from_console_inside_user_identity_is_not_read() -> None:
    # Trap 2: no real record has it there; reading it would be trusting our own old layout.
    record = load("assumed_root_session_asia_only.json")
    record["userIdentity"]["sessionCredentialFromConsole"] = "true"
    assert verdict_of(record).awaiting_key == "ASIAI44QH8DHBEXAMPLE"


def test_asia_key_without_marker_outside_task_policies_is_root_use_at_once() -> None:
    record = load("assumed_root_session_asia_only.json")
    record["eventSource"], record["eventName"] = "iam.amazonaws.com", "CreateUser"
    v = verdict_of(record)
    assert (v.assumed_root, v.awaiting_key) == (False, None)


def test_explicit_assumed_root_false_is_no_evidence() -> None:
    record = load("assumed_root_session_asia_only.json")
    record["userIdentity"]["sessionContext"]["assumedRoot"] = "false"
    assert verdict_of(record).assumed_root is False


def test_long_term_key_is_never_assumed_root() -> None:
    record = load("assumed_root_session_asia_only.json")
    record["userIdentity"]["accessKeyId"] = "AKIAIOSFODNN7EXAMPLE"
    v = verdict_of(record)
    assert (v.assumed_root, v.awaiting_key) == (False, None)


def test_console_originated_root_call_is_counted() -> None:
    # Trap 3: invokedBy signin.amazonaws.com is a person in the console, not a service.
    record = load("root_console_session_list_access_keys.json")
    record["userIdentity"]["invokedBy"] = "signin.amazonaws.com"
    record["eventName"], record["readOnly"] = "DeleteAccessKey", False
    v = verdict_of(record)
    assert (v.kind, v.category, v.assumed_root) == ("api_call", "break_glass", False)
    window = BreakGlassWindow(account_id=ACCOUNT, start=v.event_time, end=v.event_time + timedelta(hours=1), ticket="CHG-1")
    assert verdict_of(record, (window,)).approved is True


def test_aws_internal_on_a_root_record_is_counted() -> None:
    record = load("root_console_session_list_access_keys.json")
    record["userIdentity"]["invokedBy"] = "AWS Internal"
    assert verdict_of(record).kind == "api_call"


@pytest.mark.parametrize("service", ["autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com",
                                     "cloudformation.amazonaws.com", "glue.amazonaws.com"])
def test_service_acting_in_the_account_is_not_root_activity(service: str) -> None:
    record = load("root_console_session_list_access_keys.json")
    record["userIdentity"]["invokedBy"] = service
    assert classify(record) is None


def test_cross_account_copies_are_attributed_to_the_acting_account() -> None:
    # Trap 4: root of ACCOUNT acts on a bucket of TARGET; each account gets a copy.
    record = load("root_console_session_list_access_keys.json")
    record["sharedEventID"] = "5a4ec3f6-5e4c-4a6a-9b1b-7c0d2b2e0f11"
    copy_b = copy.deepcopy(record)
    copy_b["eventID"], copy_b["recipientAccountId"] = "0f6b7e1c-4d2a-4c8e-9a3b-111111111111", TARGET
    a, b = verdict_of(record), verdict_of(copy_b)
    assert a.account_id == b.account_id == ACCOUNT
    assert a.shared_event_id == b.shared_event_id == "5a4ec3f6-5e4c-4a6a-9b1b-7c0d2b2e0f11"


@pytest.mark.parametrize("event_name", ["PasswordUpdated", "PasswordRecoveryRequested", "CheckMfa"])
def test_signin_failure_from_response_elements_without_error_code(event_name: str) -> None:
    # Trap 5.
    record = load("root_password_recovery_requested.json")
    record["eventName"] = event_name
    record["responseElements"] = {event_name: "Failure"}
    record.pop("errorCode", None)
    record.pop("errorMessage", None)
    assert verdict_of(record).outcome == "failure"
    record["responseElements"] = {event_name: "Success"}
    assert verdict_of(record).outcome == "success"


def test_recovery_signals_by_iam_principals() -> None:
    base = load("assume_root_call.json")
    cases = [
        ("account.amazonaws.com", "StartPrimaryEmailUpdate", {"accountId": TARGET, "primaryEmail": "HIDDEN_DUE_TO_SECURITY_REASONS"},
         TARGET, "primary_email_update_started"),
        ("account.amazonaws.com", "AcceptPrimaryEmailUpdate", {"accountId": TARGET, "otp": "HIDDEN_DUE_TO_SECURITY_REASONS"},
         TARGET, "primary_email_updated"),
        ("iam.amazonaws.com", "DisableOrganizationsRootSessions", None, "999988887777", "root_sessions_disabled"),
        ("iam.amazonaws.com", "DisableOrganizationsRootCredentialsManagement", None, "999988887777",
         "root_credentials_management_disabled"),
    ]
    for source, name, params, account, signal in cases:
        record = {**copy.deepcopy(base), "eventSource": source, "eventName": name, "requestParameters": params,
                  "responseElements": None}
        v = verdict_of(record)
        assert (v.kind, v.account_id, v.recovery_signal, v.outcome) == ("recovery_signal", account, signal, "success"), name


def test_root_password_created_in_an_assume_root_session_is_a_signal_and_a_task() -> None:
    record = load("assumed_root_session_asia_only.json")
    record["eventName"], record["readOnly"], record["requestParameters"] = "CreateLoginProfile", False, None
    v = classify(record, (), keys_from(load("assume_root_call.json")))
    assert v is not None and (v.assumed_root, v.recovery_signal) == (True, "root_password_created")
    record["requestParameters"] = {"userName": "alice"}
    assert verdict_of(record).recovery_signal is None


def test_other_principals_ordinary_calls_are_nothing() -> None:
    record = {**load("assume_root_call.json"), "eventSource": "iam.amazonaws.com", "eventName": "CreateLoginProfile"}
    assert classify(record) is None


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("root_create_access_key.json", "break_glass"),  # no userName: root's own key
        ("root_create_access_key_for_iam_user.json", "administrative"),
        ("root_enable_mfa_device.json", "break_glass"),
        ("root_put_bucket_versioning_mfa_delete.json", "break_glass"),
        ("root_close_account.json", "break_glass"),
        ("root_create_user.json", "administrative"),
    ],
)
def test_break_glass_tasks(name: str, category: str) -> None:
    v = verdict(name)
    assert (v.kind, v.category) == ("api_call", category)


def test_mfa_task_without_user_name_is_break_glass_and_with_other_user_is_not() -> None:
    record = load("root_enable_mfa_device.json")
    record["eventName"] = "DeactivateMFADevice"
    del record["requestParameters"]["userName"]
    assert verdict_of(record).category == "break_glass"
    record["requestParameters"]["userName"] = "alice"
    assert verdict_of(record).category == "administrative"


@pytest.mark.parametrize("event_name", ["DeleteSigningCertificate", "DeleteLoginProfile", "UpdateAccessKey"])
def test_own_credential_tasks_without_user_name_are_break_glass(event_name: str) -> None:
    record = load("root_create_access_key_for_iam_user.json")
    record["eventName"] = event_name
    assert verdict_of(record).category == "administrative"  # names the IAM user alice
    record["requestParameters"] = {"certificateId": "EXAMPLE"} if "Certificate" in event_name else None
    assert verdict_of(record).category == "break_glass"


def test_versioning_without_mfa_delete_is_not_break_glass() -> None:
    record = load("root_put_bucket_versioning_mfa_delete.json")
    del record["requestParameters"]["VersioningConfiguration"]["MfaDelete"]
    assert verdict_of(record).category == "administrative"


def window(account: str, start: str, end: str) -> BreakGlassWindow:
    return BreakGlassWindow(account_id=account, start=start, end=end, ticket="CHG-1")


def test_windows() -> None:
    # root_create_access_key.json happened at 2026-11-23T16:00:00Z in 111122223333.
    inside = window(ACCOUNT, "2026-11-23T15:00:00Z", "2026-11-23T17:00:00Z")
    edge = window(ACCOUNT, "2026-11-23T16:00:00Z", "2026-11-23T16:30:00Z")
    before = window(ACCOUNT, "2026-11-23T10:00:00Z", "2026-11-23T15:59:59Z")
    other_account = window("444455556666", "2026-11-23T15:00:00Z", "2026-11-23T17:00:00Z")
    assert verdict("root_create_access_key.json", (inside,)).approved is True
    assert verdict("root_create_access_key.json", (edge,)).approved is True
    assert verdict("root_create_access_key.json", (before,)).approved is False
    assert verdict("root_create_access_key.json", (other_account,)).approved is False
    assert verdict("root_create_access_key.json", (before, other_account, inside)).approved is True
    assert verdict("root_create_access_key.json").approved is False


def test_window_for_assume_root_call_uses_target_account() -> None:
    w = window(TARGET, "2026-11-22T09:00:00Z", "2026-11-22T10:00:00Z")
    assert verdict("assume_root_call.json", (w,)).approved is True
    w = window("999988887777", "2026-11-22T09:00:00Z", "2026-11-22T10:00:00Z")
    assert verdict("assume_root_call.json", (w,)).approved is False


def test_account_falls_back_to_user_identity() -> None:
    record = load("root_create_user.json")
    del record["recipientAccountId"]
    assert verdict_of(record).account_id == ACCOUNT


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.update(eventID=42), "eventID"),
        (lambda r: r.pop("eventTime"), "eventTime"),
        (lambda r: r.update(eventTime="yesterday"), "eventTime"),
        (lambda r: r.pop("userIdentity"), "userIdentity"),
        (lambda r: r.update(userIdentity="Root"), "userIdentity"),
        (lambda r: r.update(recipientAccountId="x", userIdentity={"type": "Root"}), "account id"),
        (lambda r: r.update(eventName=None), "eventName"),
    ],
)
def test_malformed_root_records(mutate: Any, reason: str) -> None:
    record = load("root_create_user.json")
    mutate(record)
    with pytest.raises(MalformedRecord, match=reason):
        classify(record)


def test_non_object_record_is_malformed() -> None:
    with pytest.raises(MalformedRecord):
        classify(["not", "a", "record"])  # type: ignore[arg-type]


def test_incomplete_non_root_record_is_simply_not_root() -> None:
    assert classify({"userIdentity": {"type": "AssumedRole"}}) is None
    assert classify({"eventType": "AwsServiceEvent", "eventID": "x"}) is None
    with pytest.raises(MalformedRecord, match="userIdentity"):
        classify({"eventType": "AwsApiCall", "eventID": "x"})


def test_naive_event_time_is_utc() -> None:
    record = load("root_create_user.json")
    record["eventTime"] = "2026-11-23T17:05:00"
    assert verdict_of(record).event_time == datetime(2026, 11, 23, 17, 5, tzinfo=UTC)


def test_verdict_to_json() -> None:
    data = verdict("root_console_login_failure.json").to_json()
    assert data["event_time"] == "2026-11-20T11:10:29Z"
    assert json.loads(json.dumps(data)) == data


# --- properties -----------------------------------------------------------------------

ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=20,
)
interesting_keys = st.sampled_from(
    [
        "eventID", "eventTime", "userIdentity", "eventSource", "eventName", "eventType",
        "recipientAccountId", "requestParameters", "responseElements", "additionalEventData",
        "errorCode", "errorMessage", "readOnly", "awsRegion", "sourceIPAddress",
        "sessionCredentialFromConsole", "sharedEventID",
    ]
)
identity_keys = st.sampled_from(["type", "invokedBy", "accountId", "accessKeyId", "sessionContext"])
interesting_values = json_values | st.sampled_from(
    ["Root", "IAMUser", "AssumedRole", "AwsServiceEvent", "signin.amazonaws.com", "sts.amazonaws.com", "AssumeRoot",
     "ConsoleLogin", "2026-01-01T00:00:00Z", "2026-13-01T00:00:00Z", ACCOUNT, "ASIAX", "true", "YES", ""]
)


def check(record: Any) -> None:
    try:
        result = classify(record)
    except MalformedRecord:
        return
    if result is None:
        return
    identity = record.get("userIdentity")
    assert isinstance(identity, dict)
    if result.kind == "assume_root_call":
        assert record.get("eventName") == "AssumeRoot"
    elif result.kind == "recovery_signal":
        assert (record.get("eventSource"), record.get("eventName")) in RECOVERY_SIGNALS
        assert result.recovery_signal in SIGNALS and identity.get("type") != "Root"
    else:
        assert identity.get("type") == "Root"
    assert result.outcome in ("success", "failure")
    assert result.mfa in ("true", "false", "unknown")
    assert result.event_time.tzinfo is not None


@given(json_values)
def test_arbitrary_json_never_raises_other_errors(value: Any) -> None:
    check(value)


@given(st.dictionaries(interesting_keys, interesting_values, max_size=10), st.dictionaries(identity_keys, interesting_values, max_size=6))
def test_arbitrary_records_never_raise_other_errors(record: dict[str, Any], identity: dict[str, Any]) -> None:
    record["userIdentity"] = identity
    check(record)


def value_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return []
    found = []
    for key, child in value.items():
        found.append((*prefix, key))
        found.extend(value_paths(child, (*prefix, key)))
    return found


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_fixtures_never_raise_other_errors(data: st.DataObject) -> None:
    # Mutate fields that exist in real records (replace with any JSON value, or delete),
    # so the search reaches the deep branches a random dict never gets to.
    record = copy.deepcopy(load(data.draw(st.sampled_from(ALL_FIXTURES))))
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(value_paths(record)))
        parent: Any = record
        for part in path[:-1]:
            parent = parent[part]
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(interesting_values)
        if not record:
            break
    check(record)


@given(st.sampled_from(ALL_FIXTURES), interesting_values.filter(lambda v: v != "Root"))
def test_non_root_type_never_yields_root_verdict(name: str, identity_type: Any) -> None:
    record = copy.deepcopy(load(name))
    record["userIdentity"]["type"] = identity_type
    try:
        result = classify(record)
    except MalformedRecord:
        return
    assert result is None or result.kind in ("assume_root_call", "recovery_signal")
