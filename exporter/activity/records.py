"""Read CloudTrail records from files, SQS message bodies and fetched S3 objects.

No AWS calls here: the collector fetches, this module parses. Every reader yields
`Record` items and, for input it cannot use, `RecordError` items that name where the
problem is (file, line or record index) and why; one bad record never stops the rest.

Accepted file shapes (plain or gzip, detected by content, not by name):

* a CloudTrail log file: ``{"Records": [record, ...]}``
* one EventBridge envelope: ``{"detail-type": "AWS API Call via CloudTrail", "detail": record}``
* one bare record, or a JSON array of records and/or envelopes
* JSON lines: one record or envelope per line

SQS message bodies (`parse_sqs_message`):

* an EventBridge envelope whose `detail` is a CloudTrail record -> a record
* an S3 event notification (``{"Records": [{"eventSource": "aws:s3", "s3": {...}}]}``),
  an EventBridge "Object Created" event, or a CloudTrail SNS notification
  (``{"s3Bucket": ..., "s3ObjectKey": [...]}``), each optionally wrapped in an SNS
  envelope -> the CloudTrail log objects to fetch
* ``s3:TestEvent`` -> nothing to do (`test_event` is true)
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class Record:
    """One CloudTrail record and where it came from (e.g. ``trail.json.gz record 3``)."""

    location: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RecordError:
    """Input that could not be used. `fatal` means the whole source was unreadable."""

    location: str
    reason: str
    fatal: bool = False

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass(frozen=True, slots=True)
class S3ObjectRef:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class SqsMessage:
    """What one SQS message body holds. An empty message (all fields empty) is ignorable."""

    records: tuple[Record, ...] = ()
    objects: tuple[S3ObjectRef, ...] = ()
    errors: tuple[RecordError, ...] = ()
    test_event: bool = False
    skipped_keys: tuple[str, ...] = ()  # digest/Insights files and non-create events


def read_records_file(path: str | Path) -> Iterator[Record | RecordError]:
    """Records in one local file; an unreadable file yields one fatal RecordError."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        yield RecordError(name, f"cannot read file: {exc.strerror or exc}", fatal=True)
        return
    yield from parse_records_bytes(data, name)


def parse_records_bytes(data: bytes, name: str) -> Iterator[Record | RecordError]:
    """Records in one document (any shape listed in the module docstring)."""
    text = _decode(data, name)
    if isinstance(text, RecordError):
        yield text
        return
    if not text.strip():
        return
    try:
        document = _loads(text)
    except json.JSONDecodeError as whole_error:
        yield from _json_lines(text, name, whole_error)
        return
    yield from _document(document, name)


def parse_cloudtrail_object(data: bytes, ref: S3ObjectRef) -> Iterator[Record | RecordError]:
    """Records in one fetched CloudTrail log object (gzipped ``{"Records": [...]}``)."""
    name = str(ref)
    text = _decode(data, name)
    if isinstance(text, RecordError):
        yield text
        return
    try:
        document = _loads(text)
    except json.JSONDecodeError as exc:
        yield RecordError(name, f"not valid JSON ({exc.msg} at line {exc.lineno})", fatal=True)
        return
    if not isinstance(document, Mapping) or not isinstance(document.get("Records"), list):
        yield RecordError(name, "not a CloudTrail log file (no Records list)", fatal=True)
        return
    yield from _records_list(document["Records"], name)


def parse_sqs_message(body: str, message_id: str = "") -> SqsMessage:
    """Records and S3 objects named by one SQS message body; see the module docstring."""
    name = f"sqs message {message_id}".rstrip()
    try:
        document = _loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        return SqsMessage(errors=(RecordError(name, f"body is not JSON ({exc})"),))
    document = _unwrap_sns(document)
    if not isinstance(document, Mapping):
        return SqsMessage(errors=(RecordError(name, "body is not a JSON object"),))

    if document.get("Event") == "s3:TestEvent":
        return SqsMessage(test_event=True)
    if "detail" in document:
        # S3's own EventBridge notifications ("Object Created"), not CloudTrail records of S3
        # API calls, which also come from source aws.s3 but with a CloudTrail detail-type.
        if (
            document.get("source") == "aws.s3"
            and isinstance(document.get("detail"), Mapping)
            and "CloudTrail" not in str(document.get("detail-type", ""))
        ):
            return _eventbridge_s3(document["detail"], name)
        items = list(_document(document, name))
        return SqsMessage(
            records=tuple(i for i in items if isinstance(i, Record)),
            errors=tuple(i for i in items if isinstance(i, RecordError)),
        )
    if isinstance(document.get("Records"), list):
        return _s3_notification(document["Records"], name)
    if "s3Bucket" in document:
        return _cloudtrail_sns(document, name)
    return SqsMessage(errors=(RecordError(name, "neither an EventBridge event nor an S3 notification"),))


def is_cloudtrail_log_key(key: str) -> bool:
    """True for CloudTrail log objects; digest and Insights files are not root records."""
    return key.endswith(".json.gz") and "CloudTrail-Digest/" not in key and "CloudTrail-Insight/" not in key


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        # A hostile or broken file can nest arrays deeper than the parser's stack.
        raise json.JSONDecodeError("nested too deeply", text if isinstance(text, str) else "", 0) from None


def _decode(data: bytes, name: str) -> str | RecordError:
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            return RecordError(name, f"not a valid gzip file ({exc})", fatal=True)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            return RecordError(name, "UTF-16 text, not UTF-8: save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)", fatal=True)
        return RecordError(
            name, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): CloudTrail records are UTF-8 JSON, plain or gzip", fatal=True
        )


def _json_lines(text: str, name: str, whole_error: json.JSONDecodeError) -> Iterator[Record | RecordError]:
    lines = text.splitlines()
    parsed: list[tuple[int, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parsed.append((number, _loads(line)))
        except json.JSONDecodeError as exc:
            parsed.append((number, exc))
    if not any(isinstance(value, Mapping) and value for _, value in parsed):
        # No line holds a whole object: a single broken (pretty-printed) document,
        # reported once, where it broke, rather than as one error per line.
        yield RecordError(name, f"not valid JSON or JSON lines ({whole_error.msg} at line {whole_error.lineno})", fatal=True)
        return
    for number, value in parsed:
        where = f"{name} line {number}"
        if isinstance(value, json.JSONDecodeError):
            yield RecordError(where, f"not valid JSON ({value.msg} at column {value.colno})")
        else:
            yield from _item(value, where)


def _document(document: Any, name: str) -> Iterator[Record | RecordError]:
    if isinstance(document, list):
        for index, item in enumerate(document):
            yield from _item(item, f"{name} record {index}")
    elif isinstance(document, Mapping) and "Records" in document and "detail" not in document:
        records = document["Records"]
        if not isinstance(records, list):
            yield RecordError(name, "Records is not a list", fatal=True)
            return
        yield from _records_list(records, name)
    else:
        yield from _item(document, name)


def _records_list(records: list[Any], name: str) -> Iterator[Record | RecordError]:
    for index, item in enumerate(records):
        yield from _item(item, f"{name} record {index}")


def _item(item: Any, where: str) -> Iterator[Record | RecordError]:
    if not isinstance(item, Mapping):
        yield RecordError(where, f"a record must be a JSON object, got {type(item).__name__}")
        return
    if "detail" in item and ("detail-type" in item or "source" in item):
        detail = item["detail"]
        if not isinstance(detail, Mapping):
            yield RecordError(where, "EventBridge event detail is not a JSON object")
            return
        yield Record(where, detail)
        return
    yield Record(where, item)


def _unwrap_sns(document: Any) -> Any:
    # S3 -> SNS -> SQS (and CloudTrail's own SNS topic) wraps the payload as a string.
    if isinstance(document, Mapping) and document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        try:
            return _loads(document["Message"])
        except json.JSONDecodeError:
            return document
    return document


def _s3_notification(entries: list[Any], name: str) -> SqsMessage:
    objects: list[S3ObjectRef] = []
    errors: list[RecordError] = []
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        where = f"{name} record {index}"
        s3 = entry.get("s3") if isinstance(entry, Mapping) else None
        bucket = s3.get("bucket") if isinstance(s3, Mapping) else None
        obj = s3.get("object") if isinstance(s3, Mapping) else None
        bucket_name = bucket.get("name") if isinstance(bucket, Mapping) else None
        key = obj.get("key") if isinstance(obj, Mapping) else None
        if not isinstance(bucket_name, str) or not isinstance(key, str) or not bucket_name or not key:
            errors.append(RecordError(where, "S3 notification without s3.bucket.name and s3.object.key"))
            continue
        if isinstance(entry, Mapping) and not str(entry.get("eventName", "ObjectCreated:")).startswith("ObjectCreated:"):
            skipped.append(unquote_plus(key))
            continue
        _add_object(objects, skipped, bucket_name, unquote_plus(key))  # keys arrive URL-encoded
    return SqsMessage(objects=tuple(objects), errors=tuple(errors), skipped_keys=tuple(skipped))


def _eventbridge_s3(detail: Mapping[str, Any], name: str) -> SqsMessage:
    bucket = detail.get("bucket")
    obj = detail.get("object")
    bucket_name = bucket.get("name") if isinstance(bucket, Mapping) else None
    key = obj.get("key") if isinstance(obj, Mapping) else None
    if not isinstance(bucket_name, str) or not isinstance(key, str) or not bucket_name or not key:
        return SqsMessage(errors=(RecordError(name, "S3 event without detail.bucket.name and detail.object.key"),))
    objects: list[S3ObjectRef] = []
    skipped: list[str] = []
    _add_object(objects, skipped, bucket_name, key)  # EventBridge keys are not URL-encoded
    return SqsMessage(objects=tuple(objects), skipped_keys=tuple(skipped))


def _cloudtrail_sns(document: Mapping[str, Any], name: str) -> SqsMessage:
    bucket = document.get("s3Bucket")
    keys = document.get("s3ObjectKey")
    if not isinstance(bucket, str) or not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return SqsMessage(errors=(RecordError(name, "CloudTrail notification without s3Bucket and s3ObjectKey list"),))
    objects: list[S3ObjectRef] = []
    skipped: list[str] = []
    for key in keys:
        _add_object(objects, skipped, bucket, key)
    return SqsMessage(objects=tuple(objects), skipped_keys=tuple(skipped))


def _add_object(objects: list[S3ObjectRef], skipped: list[str], bucket: str, key: str) -> None:
    if is_cloudtrail_log_key(key):
        objects.append(S3ObjectRef(bucket, key))
    else:
        skipped.append(key)


def parse_event_time(value: Any) -> datetime | None:
    """A record's `eventTime` as an aware datetime, None when it is missing or not ISO 8601.
    CloudTrail writes UTC with a Z; a naive value (e.g. re-serialised by a tool) is UTC too."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
