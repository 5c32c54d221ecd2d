"""`classify` command: run the root-activity classifier over CloudTrail files.

Prints one JSON object per root, `sts:AssumeRoot` or recovery-signal record to `out`, in
file order, for example::

    {"eventID": "deb1e1f9-...", "account_id": "111122223333", "event_time": "2026-11-20T10:24:34Z",
     "event_name": "ConsoleLogin", "event_source": "signin.amazonaws.com", "kind": "console_login",
     "outcome": "success", "mfa": "false", "category": null, "assumed_root": false,
     "approved": false, "signin_event": null, "task_policy": null, "region": "us-east-1",
     "source_ip": "192.0.2.10", "error_code": "", "shared_event_id": "", "awaiting_key": null,
     "recovery_signal": null, "location": "trail.json.gz record 0"}

`awaiting_key` names the `ASIA` key of a record counted as root use because no
AssumeRoot record among the files issued it (it could have been a privileged task).

Records that are not root activity print nothing. Problems go to `err`, one line each,
naming the file and the line or record index.

AssumeRoot sessions are correlated across every file given, in two passes: the first
collects the access keys that `sts:AssumeRoot` records issued, the second classifies, so a
member's Root record made with such a key is `assumed_root` whichever file or order holds
the AssumeRoot record. A Root record whose key no AssumeRoot record issued is root use.

Exit status:

* 0: every file was read, even if some records in it were malformed (they are reported on
  `err`): one bad record in a 10 000-record trail file is data, not a tool failure.
* 2: at least one file could not be read at all (missing, unreadable, broken gzip, not
  JSON of any accepted shape). The other files are still processed and printed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

from exporter.activity.assume_root_keys import AssumeRootKeys
from exporter.activity.classify import MalformedRecord, assume_root_evidence, classify
from exporter.activity.records import Record, read_records_file
from exporter.config.settings import BreakGlassWindow

EXIT_OK = 0
EXIT_UNREADABLE = 2


def run_classify(paths: list[str], windows: Sequence[BreakGlassWindow], out: TextIO, err: TextIO) -> int:
    """Classify every record in `paths`; see the module docstring for output and exit status."""
    keys = _issued_keys(paths)
    status = EXIT_OK
    for path in paths:
        for item in read_records_file(path):
            if not isinstance(item, Record):
                err.write(f"{item}\n")
                if item.fatal:
                    status = EXIT_UNREADABLE
                continue
            try:
                verdict = classify(item.data, windows, keys)
            except MalformedRecord as exc:
                err.write(f"{item.location}: malformed record: {exc}\n")
                continue
            if verdict is None:
                continue
            data = verdict.to_json()
            line = {"eventID": data.pop("event_id"), **data, "location": item.location}
            out.write(json.dumps(line, sort_keys=False) + "\n")
    return status


def _issued_keys(paths: list[str]) -> AssumeRootKeys:
    # Unbounded: the files given are the whole evidence, and an offline run has no clock to
    # expire keys by. Problems are reported by the second pass, once.
    keys = AssumeRootKeys(max_keys=2**62)
    for path in paths:
        for item in read_records_file(path):
            evidence = assume_root_evidence(item.data) if isinstance(item, Record) else None
            if evidence is not None:
                keys.learn(*evidence)
    return keys
