"""`classify` command: run the root-activity classifier over CloudTrail files.

Prints one JSON object per root, `sts:AssumeRoot` or recovery-signal record to `out`, in
file order, for example::

    {"eventID": "deb1e1f9-...", "account_id": "111122223333", "event_time": "2026-11-20T10:24:34Z",
     "event_name": "ConsoleLogin", "event_source": "signin.amazonaws.com", "kind": "console_login",
     "outcome": "success", "mfa": "false", "category": null, "assumed_root": false,
     "approved": false, "signin_event": null, "task_policy": null, "region": "us-east-1",
     "source_ip": "192.0.2.10", "error_code": "", "shared_event_id": "", "awaiting_key": null,
     "recovery_signal": null, "mfa_kind": "none", "location": "trail.json.gz record 0"}

`mfa_kind` is the factor of a console login (`u2f`, `totp`, `none`, `unknown`), null for
every other record.

A call, by any principal, that can blind the monitor (`exporter.activity.tamper`: a trail
stopped, deleted or narrowed, a rule or queue changed, an account leaving the
organization) prints a line of its own with `"kind": "monitoring_tamper"`, for example::

    {"kind": "monitoring_tamper", "eventID": "10163ed2-...", "account_id": "143434273843",
     "event_name": "StopLogging", "outcome": "success", "event_time": "2024-07-31T13:06:24Z",
     "event_source": "cloudtrail.amazonaws.com", "region": "us-east-1",
     "principal_arn": "arn:aws:iam::143434273843:user/christophe",
     "detail": "trail org-trail", "location": "trail.json.gz record 3"}

With `scope` (the `--config` file's `forwarder_rule_name` and queue URLs) a rule or queue
change prints a tamper line only for the monitoring's own rules and queues; without one
(no configuration file) every rule and queue counts, as nothing shows a change benign.

A Root record that tampers prints two lines, the root one first. A malformed root record
that tampers is reported on `err` and still prints its tamper line.

`awaiting_key` names the `ASIA` key of a record counted as root use because no
AssumeRoot record among the files issued it (it could have been a privileged task).

Records that are neither root activity nor tampering print nothing. Problems go to `err`, one line each,
naming the file and the line or record index.

AssumeRoot sessions are correlated across every file given, in two passes: the first
collects the access keys that `sts:AssumeRoot` records issued, the second classifies, so a
member's Root record made with such a key is `assumed_root` whichever file or order holds
the AssumeRoot record. A Root record whose key no AssumeRoot record issued is root use.

`-` as a file name reads standard input (any of the shapes above, also gzip), as Unix tools
do: ``aws s3 cp s3://trail/....json.gz - | aws-root-exporter classify -``.

Exit status:

* 0: records were read and classified, even if some records were malformed (they are
  reported on `err`): one bad record in a 10 000-record trail file is data, not a tool
  failure. Whether any record is root activity does not change it: that is the output.
* 2: at least one file could not be read at all (missing, unreadable, not UTF-8, broken
  gzip, not JSON of any accepted shape); the other files are still processed and printed.
  Also 2 when no record of any input could be classified (every input empty, or every
  record malformed): a run that judged nothing must not pass a CI check as "no root
  activity". A readable file without records says so on `err` without failing the run
  when other files held records.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import BinaryIO, TextIO

from exporter.activity.assume_root_keys import AssumeRootKeys
from exporter.activity.classify import MalformedRecord, assume_root_evidence, classify
from exporter.activity.records import Record, RecordError, parse_records_bytes, read_records_file
from exporter.activity.tamper import TamperScope, classify_tamper
from exporter.config.settings import BreakGlassWindow

EXIT_OK = 0
EXIT_UNREADABLE = 2
STDIN = "-"
STDIN_NAME = "stdin"


def run_classify(
    paths: list[str],
    windows: Sequence[BreakGlassWindow],
    out: TextIO,
    err: TextIO,
    stdin: BinaryIO | None = None,
    scope: TamperScope | None = None,
) -> int:
    """Classify every record in `paths` (`-`: `stdin`, default the process's standard input);
    see the module docstring for output, `scope` and exit status."""
    inputs = _Inputs(stdin)
    keys = _issued_keys(paths, inputs)
    status = EXIT_OK
    judged = rejected = 0
    for path in paths:
        items = 0
        for item in inputs.items(path):
            items += 1
            if not isinstance(item, Record):
                err.write(f"{item}\n")
                if item.fatal:
                    status = EXIT_UNREADABLE
                rejected += 1
                continue
            tamper = classify_tamper(item.data, scope)
            try:
                verdict = classify(item.data, windows, keys)
            except MalformedRecord as exc:
                err.write(f"{item.location}: malformed record: {exc}\n")
                rejected += 1
                verdict = None
                if tamper is None:
                    continue
            # A tamper verdict is a judgement even when the root classifier rejected the record.
            judged += 1
            if verdict is not None:
                data = verdict.to_json()
                line = {"eventID": data.pop("event_id"), **data, "location": item.location}
                out.write(json.dumps(line, sort_keys=False) + "\n")
            if tamper is not None:
                data = tamper.to_json()
                line = {"kind": "monitoring_tamper", "eventID": data.pop("event_id"), **data, "location": item.location}
                out.write(json.dumps(line, sort_keys=False) + "\n")
        if items == 0:
            err.write(f"{_name(path)}: holds no CloudTrail records\n")
    if judged == 0 and status == EXIT_OK:
        status = EXIT_UNREADABLE
        if rejected:
            err.write("classify: nothing was classified: every record was rejected (see above)\n")
    return status


class _Inputs:
    """Each input's records. Standard input is read once and kept: both passes need it."""

    def __init__(self, stdin: BinaryIO | None) -> None:
        self._stdin = stdin
        self._stdin_data: bytes | RecordError | None = None

    def items(self, path: str) -> Iterator[Record | RecordError]:
        if path != STDIN:
            return read_records_file(path)
        if self._stdin_data is None:
            try:
                self._stdin_data = (self._stdin or sys.stdin.buffer).read()
            except OSError as exc:
                self._stdin_data = RecordError(STDIN_NAME, f"cannot read standard input: {exc.strerror or exc}", fatal=True)
        if isinstance(self._stdin_data, RecordError):
            return iter([self._stdin_data])
        return parse_records_bytes(self._stdin_data, STDIN_NAME)


def _name(path: str) -> str:
    return STDIN_NAME if path == STDIN else path


def _issued_keys(paths: list[str], inputs: _Inputs) -> AssumeRootKeys:
    # Unbounded: the files given are the whole evidence, and an offline run has no clock to
    # expire keys by. Problems are reported by the second pass, once.
    keys = AssumeRootKeys(max_keys=2**62)
    for path in paths:
        for item in inputs.items(path):
            evidence = assume_root_evidence(item.data) if isinstance(item, Record) else None
            if evidence is not None:
                keys.learn(*evidence)
    return keys
