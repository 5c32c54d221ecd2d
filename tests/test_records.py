"""Readers of CloudTrail files, SQS message bodies and S3 objects; the classify CLI."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exporter.activity.classify_cli import run_classify
from exporter.activity.records import (
    Record,
    RecordError,
    S3ObjectRef,
    parse_cloudtrail_object,
    parse_records_bytes,
    parse_sqs_message,
    read_records_file,
)
from exporter.config.settings import BreakGlassWindow

FIXTURES = Path(__file__).parent / "fixtures" / "cloudtrail"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


LOGIN = load("root_console_login_no_mfa.json")
DENIED = load("root_api_call_access_denied.json")
IAM_ROOT_NAMED = load("iam_user_named_root_console_login.json")


def envelope(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "6f1c3a2e-1111-2222-3333-444455556666",
        "detail-type": "AWS Console Sign In via CloudTrail",
        "source": "aws.signin",
        "account": record["recipientAccountId"],
        "time": record["eventTime"],
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    }


def event_ids(items: list[Record | RecordError]) -> list[str]:
    return [i.data["eventID"] for i in items if isinstance(i, Record)]


def errors(items: list[Record | RecordError]) -> list[RecordError]:
    return [i for i in items if isinstance(i, RecordError)]


def test_gzipped_cloudtrail_log_file(tmp_path: Path) -> None:
    path = tmp_path / "111122223333_CloudTrail_us-east-1_20261120T1025Z_abc.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": [LOGIN, IAM_ROOT_NAMED, DENIED]}).encode()))
    items = list(read_records_file(path))
    assert event_ids(items) == [LOGIN["eventID"], IAM_ROOT_NAMED["eventID"], DENIED["eventID"]]
    assert items[2].location == f"{path} record 2"


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "trail.json"
    path.write_bytes(gzip.compress(json.dumps({"Records": [LOGIN]}).encode()))
    assert event_ids(list(read_records_file(path))) == [LOGIN["eventID"]]


def test_plain_log_file_with_malformed_record_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "trail.json"
    path.write_text(json.dumps({"Records": [LOGIN, "garbage", DENIED]}))
    items = list(read_records_file(path))
    assert event_ids(items) == [LOGIN["eventID"], DENIED["eventID"]]
    (error,) = errors(items)
    assert error.location == f"{path} record 1" and "JSON object" in error.reason and not error.fatal


def test_single_eventbridge_envelope(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(envelope(LOGIN), indent=2))
    assert event_ids(list(read_records_file(path))) == [LOGIN["eventID"]]


def test_json_array_of_records_and_envelopes(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([envelope(LOGIN), DENIED]))
    assert event_ids(list(read_records_file(path))) == [LOGIN["eventID"], DENIED["eventID"]]


def test_json_lines_with_bad_line_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([json.dumps(envelope(LOGIN)), "{not json", "", json.dumps(DENIED)]) + "\n")
    items = list(read_records_file(path))
    assert event_ids(items) == [LOGIN["eventID"], DENIED["eventID"]]
    (error,) = errors(items)
    assert error.location == f"{path} line 2" and not error.fatal


def test_broken_single_document_is_one_fatal_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"Records": [LOGIN]}, indent=2)[:-5])
    items = list(read_records_file(path))
    assert len(items) == 1 and isinstance(items[0], RecordError) and items[0].fatal


def test_unreadable_and_corrupt_gzip_files(tmp_path: Path) -> None:
    missing = list(read_records_file(tmp_path / "missing.json"))
    assert len(missing) == 1 and missing[0].fatal and "cannot read" in missing[0].reason
    path = tmp_path / "cut.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": [LOGIN]}).encode())[:30])
    cut = list(read_records_file(path))
    assert len(cut) == 1 and cut[0].fatal and "gzip" in cut[0].reason


def test_envelope_with_non_object_detail() -> None:
    items = list(parse_records_bytes(json.dumps({"detail-type": "x", "detail": "oops"}).encode(), "e.json"))
    assert len(errors(items)) == 1 and not event_ids(items)


def test_sqs_eventbridge_body() -> None:
    message = parse_sqs_message(json.dumps(envelope(LOGIN)), "m-1")
    assert [r.data["eventID"] for r in message.records] == [LOGIN["eventID"]]
    assert message.objects == () and message.errors == ()


S3_KEY = "AWSLogs/o-exampleorgid/111122223333/CloudTrail/us-east-1/2026/11/20/111122223333_CloudTrail_us-east-1_20261120T1025Z_Ab12Cd34.json.gz"


def s3_notification(key: str, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-20T10:30:11.123Z",
                "eventName": event_name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "cloudtrail-to-sqs",
                    "bucket": {"name": "org-trail-bucket", "arn": "arn:aws:s3:::org-trail-bucket"},
                    "object": {"key": key, "size": 1843, "eTag": "0123456789abcdef"},
                },
            }
        ]
    }


def test_sqs_s3_notification() -> None:
    message = parse_sqs_message(json.dumps(s3_notification(S3_KEY)))
    assert message.objects == (S3ObjectRef("org-trail-bucket", S3_KEY),)
    assert message.records == () and message.errors == ()


def test_sqs_s3_notification_key_is_url_decoded() -> None:
    message = parse_sqs_message(json.dumps(s3_notification("prefix+with+space/AWSLogs/x/CloudTrail/a%3Db.json.gz")))
    assert message.objects == (S3ObjectRef("org-trail-bucket", "prefix with space/AWSLogs/x/CloudTrail/a=b.json.gz"),)


def test_sqs_s3_digest_files_are_skipped_not_errors() -> None:
    key = "AWSLogs/o-exampleorgid/111122223333/CloudTrail-Digest/us-east-1/2026/11/20/x_CloudTrail-Digest_us-east-1_t.json.gz"
    message = parse_sqs_message(json.dumps(s3_notification(key)))
    assert message.objects == () and message.errors == () and message.skipped_keys == (key,)


def test_sqs_s3_test_event() -> None:
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-20T10:00:00.000Z", "Bucket": "org-trail-bucket", "RequestId": "R", "HostId": "H"}
    message = parse_sqs_message(json.dumps(body))
    assert message.test_event and message.objects == () and message.errors == ()


def test_sqs_s3_notification_through_sns() -> None:
    sns = {"Type": "Notification", "MessageId": "x", "TopicArn": "arn:aws:sns:us-east-1:111122223333:t", "Message": json.dumps(s3_notification(S3_KEY))}
    assert parse_sqs_message(json.dumps(sns)).objects == (S3ObjectRef("org-trail-bucket", S3_KEY),)


def test_sqs_cloudtrail_sns_notification() -> None:
    body = {"s3Bucket": "org-trail-bucket", "s3ObjectKey": [S3_KEY]}
    assert parse_sqs_message(json.dumps(body)).objects == (S3ObjectRef("org-trail-bucket", S3_KEY),)


def test_sqs_eventbridge_s3_object_created() -> None:
    body = {"version": "0", "detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {"name": "org-trail-bucket"}, "object": {"key": S3_KEY}}}
    assert parse_sqs_message(json.dumps(body)).objects == (S3ObjectRef("org-trail-bucket", S3_KEY),)


def test_sqs_malformed_bodies() -> None:
    for body in ("not json", "[]", json.dumps({"hello": 1}), json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {}}]})):
        message = parse_sqs_message(body, "m-9")
        assert len(message.errors) == 1 and message.objects == () and message.records == (), body
        assert "m-9" in str(message.errors[0])


def test_parse_cloudtrail_object() -> None:
    ref = S3ObjectRef("org-trail-bucket", S3_KEY)
    items = list(parse_cloudtrail_object(gzip.compress(json.dumps({"Records": [LOGIN, 7]}).encode()), ref))
    assert event_ids(items) == [LOGIN["eventID"]]
    (error,) = errors(items)
    assert error.location == f"s3://org-trail-bucket/{S3_KEY} record 1"
    bad = list(parse_cloudtrail_object(gzip.compress(b'{"digestStartTime": "x"}'), ref))
    assert len(bad) == 1 and bad[0].fatal


def test_run_classify(tmp_path: Path) -> None:
    good = tmp_path / "trail.json.gz"
    broken_record = dict(DENIED, eventTime="not a time", eventID="bad-1")
    good.write_bytes(gzip.compress(json.dumps({"Records": [LOGIN, IAM_ROOT_NAMED, broken_record, DENIED]}).encode()))
    out, err = io.StringIO(), io.StringIO()
    window = BreakGlassWindow(account_id="111122223333", start="2026-11-21T13:00:00Z", end="2026-11-21T14:00:00Z")
    assert run_classify([str(good)], [window], out, err) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["eventID"] for line in lines] == [LOGIN["eventID"], DENIED["eventID"]]
    assert lines[0]["kind"] == "console_login" and lines[0]["mfa"] == "false" and lines[0]["approved"] is False
    assert lines[1]["category"] == "administrative" and lines[1]["outcome"] == "failure" and lines[1]["approved"] is True
    for key in ("account_id", "event_name", "event_source", "kind", "outcome", "mfa", "category", "assumed_root", "approved"):
        assert key in lines[0]
    assert err.getvalue().count("\n") == 1 and f"{good} record 2" in err.getvalue() and "eventTime" in err.getvalue()


def test_run_classify_correlates_assume_root_across_files_in_any_order(tmp_path: Path) -> None:
    session = load("assumed_root_session_asia_only.json")
    evasion = dict(session, eventID="9d0e3c1a-0000-4000-8000-00000000e1a5",
                   userIdentity={**session["userIdentity"], "accessKeyId": "ASIAQNZGKIQY5EXAMPLE"})
    member, management = tmp_path / "member.json", tmp_path / "management.json"
    member.write_text(json.dumps({"Records": [session, evasion]}))
    management.write_text(json.dumps({"Records": [load("assume_root_call.json")]}))
    out, err = io.StringIO(), io.StringIO()
    # The member's file comes first: the AssumeRoot record is still found.
    assert run_classify([str(member), str(management)], [], out, err) == 0
    lines = {line["eventID"]: line for line in map(json.loads, out.getvalue().splitlines())}
    assert lines[session["eventID"]]["assumed_root"] is True
    assert lines[evasion["eventID"]]["assumed_root"] is False
    assert err.getvalue() == ""
    out = io.StringIO()
    assert run_classify([str(member)], [], out, err) == 0
    assert [json.loads(line)["assumed_root"] for line in out.getvalue().splitlines()] == [False, False]
    # An AssumeRoot record without eventID (as in AWS's own example) is counted, and its
    # key is still evidence.
    call = load("assume_root_call.json")
    del call["eventID"]
    management.write_text(json.dumps({"Records": [call]}))
    out, err = io.StringIO(), io.StringIO()
    assert run_classify([str(member), str(management)], [], out, err) == 0
    verdicts = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(v["kind"], v["assumed_root"]) for v in verdicts] == [("api_call", True), ("api_call", False), ("assume_root_call", False)]
    assert err.getvalue() == ""


def test_run_classify_unreadable_file_exits_2_but_processes_others(tmp_path: Path) -> None:
    good = tmp_path / "trail.json"
    good.write_text(json.dumps({"Records": [LOGIN]}))
    out, err = io.StringIO(), io.StringIO()
    assert run_classify([str(tmp_path / "missing.json"), str(good)], [], out, err) == 2
    assert len(out.getvalue().splitlines()) == 1
    assert "missing.json" in err.getvalue()


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_yield_only_records_and_errors(data: bytes) -> None:
    for item in parse_records_bytes(data, "f"):
        assert isinstance(item, (Record, RecordError))
    for item in parse_cloudtrail_object(data, S3ObjectRef("b", "k")):
        assert isinstance(item, (Record, RecordError))


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["Records", "detail", "detail-type", "source", "s3", "bucket", "object", "name", "key", "Event",
                         "Type", "Message", "s3Bucket", "s3ObjectKey", "eventName"]) | st.text(max_size=5), children, max_size=4),
    max_leaves=15,
)


@given(json_like)
def test_any_json_message_yields_a_message(document: Any) -> None:
    for body in (json.dumps(document), json.dumps({"Type": "Notification", "Message": json.dumps(document)})):
        message = parse_sqs_message(body)
        assert all(isinstance(o, S3ObjectRef) for o in message.objects)
        assert all(isinstance(r, Record) for r in message.records)
    for item in parse_records_bytes(json.dumps(document).encode(), "f"):
        assert isinstance(item, (Record, RecordError))


def test_deeply_nested_input_is_an_error_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    items = list(parse_records_bytes(deep, "deep.json"))
    assert items and all(isinstance(i, RecordError) for i in items)
    assert parse_sqs_message(deep.decode()).errors


def test_eventbridge_cloudtrail_event_for_an_s3_call_is_a_record_not_a_notification() -> None:
    """EventBridge sends CloudTrail records of S3 API calls with source aws.s3 too."""
    from exporter.sandbox.records import eventbridge_envelope, make_record

    record = make_record("api-call", "210000000003")
    envelope = eventbridge_envelope(record)
    assert envelope["source"] == "aws.s3"
    message = parse_sqs_message(json.dumps(envelope), "m-1")
    assert message.errors == () and message.objects == ()
    assert [r.data["eventID"] for r in message.records] == [record["eventID"]]


def test_run_classify_reads_standard_input_once_for_both_passes(tmp_path: Path) -> None:
    # The member's record is judged by the AssumeRoot record that only standard input holds.
    session = load("assumed_root_session_asia_only.json")
    member = tmp_path / "member.json"
    member.write_text(json.dumps(session))
    stdin = io.BytesIO(gzip.compress(json.dumps({"Records": [load("assume_root_call.json")]}).encode()))
    out, err = io.StringIO(), io.StringIO()
    assert run_classify([str(member), "-"], [], out, err, stdin) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["location"], line["assumed_root"]) for line in lines] == [(str(member), True), ("stdin record 0", False)]
    assert err.getvalue() == ""


def test_run_classify_that_judged_nothing_exits_2(tmp_path: Path) -> None:
    empty, bad = tmp_path / "empty.json", tmp_path / "bad.json"
    empty.write_text("\n")
    bad.write_text(json.dumps({"Records": [dict(DENIED, eventTime="not a time")]}))
    out, err = io.StringIO(), io.StringIO()
    assert run_classify([str(empty), str(bad)], [], out, err) == 2
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert lines[0] == f"{empty}: holds no CloudTrail records"
    assert lines[1].startswith(f"{bad} record 0: malformed record: ")
    assert lines[2:] == ["classify: nothing was classified: every record was rejected (see above)"]
