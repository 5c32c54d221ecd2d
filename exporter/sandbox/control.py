"""A small HTTP API to change a running sandbox: inject root activity for a demo or a test.

    POST /inject  {"kind": "console-login", "account_id": "210000000003", "mfa": false}
    POST /inject  {"record": {...a CloudTrail record...}}

    POST /inject  {"kind": "stop-trail", "account_id": "210000000003", "region": "eu-west-1"}

A kind of exporter.sandbox.actions.ACTIONS is a real call on moto that blinds (or restores)
one path; the sandbox also delivers that call's CloudTrail record. Answers {"eventID": ...}
of that record.

Optional fields: "paths" (subset of ["lookup", "eventbridge", "s3"], default all), "when"
(ISO time), "source_ip", "event_name". Answers {"eventID": ...}.

Fault rules (exporter/sandbox/faults.py, docs/faults.md), for a sandbox in its own process:

    POST   /faults  {"kind": "throttle", "service": "iam", "share": 0.5}
    GET    /faults  the rules, with how often each fired, and every firing by (kind, service, operation)
    DELETE /faults  remove every rule (and reset the counts)

A rule takes the fields of `FaultInjector.add`: "kind" and optional "service",
"operation", "account", "access_key", "share", "limit", "seconds". Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter.sandbox.actions import ACTIONS
from exporter.sandbox.faults import KINDS as FAULT_KINDS, FaultInjector
from exporter.sandbox.records import KINDS, MFA_DEVICES, make_record
from exporter.sandbox.server import Sandbox

_RULE_FIELDS = {"service": str, "operation": str, "account": str, "access_key": str, "share": float, "limit": int, "seconds": float}


def fault_request(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """Add one fault rule from a JSON body; answers the rule as stored."""
    kind = body.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}, got {kind!r}")
    unknown = set(body) - {"kind", *_RULE_FIELDS}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; a rule takes kind, {', '.join(_RULE_FIELDS)}")
    match: dict[str, Any] = {}
    for field, kind_of in _RULE_FIELDS.items():
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str,) if kind_of is str else (int, float)):
            raise ValueError(f"{field} must be a {'string' if kind_of is str else 'number'}, got {value!r}")
        match[field] = kind_of(value)
    if not 0.0 <= match.get("share", 1.0) <= 1.0:
        raise ValueError("share must be between 0 and 1")
    if match.get("limit", 0) < 0 or match.get("seconds", 0.0) < 0:
        raise ValueError("limit and seconds must not be negative")
    rule = FaultInjector.install(sandbox).add(kind, **match)
    return _rule_json(rule)


def faults_state(sandbox: Sandbox) -> dict[str, Any]:
    injector = FaultInjector.install(sandbox)
    rules = [_rule_json(r) for r in injector.rules()]
    injected = [{"kind": k, "service": s, "operation": o, "count": n} for (k, s, o), n in sorted(injector.firings().items())]
    return {"rules": rules, "injected": injected, "total": sum(i["count"] for i in injected)}


def _rule_json(rule: Any) -> dict[str, Any]:
    return {f: getattr(rule, f) for f in ("kind", *_RULE_FIELDS, "fired")}


def inject_request(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    record = body.get("record")
    if record is None:
        kind = body.get("kind", "console-login")
        if kind not in KINDS and kind not in ACTIONS:
            raise ValueError(f"kind must be one of {', '.join((*KINDS, *ACTIONS))}, got {kind!r}")
        account = str(body.get("account_id", ""))
        if not (len(account) == 12 and account.isdigit()):
            raise ValueError(f"account_id must be a 12-digit account id, got {account!r}")
        known = [a.id for a in sandbox.scenario.all_accounts]
        if account not in known:
            raise ValueError(f"account {account} is not in the running scenario; its accounts are {', '.join(known)}")
        if kind in ACTIONS:
            region = body.get("region")
            if region is not None and not isinstance(region, str):
                raise ValueError(f"region must be a region name, got {region!r}")
            return {"eventID": sandbox.monitoring.act(kind, account, region).get("eventID")}
        options: dict[str, Any] = {"mfa": bool(body.get("mfa", True))}
        if body.get("mfa_kind"):
            if body["mfa_kind"] not in MFA_DEVICES:
                raise ValueError(f"mfa_kind must be one of {', '.join(MFA_DEVICES)}, got {body['mfa_kind']!r}")
            options["mfa_kind"] = str(body["mfa_kind"])
        if body.get("when"):
            options["when"] = datetime.fromisoformat(str(body["when"]).replace("Z", "+00:00"))
        for key in ("source_ip", "event_name"):
            if body.get(key):
                options[key] = str(body[key])
        record = make_record(kind, account, partition=sandbox.partition, **options)
    if not isinstance(record, dict):
        raise ValueError("record must be a JSON object")
    paths = set(body.get("paths") or ["lookup", "eventbridge", "s3"])
    unknown = paths - {"lookup", "eventbridge", "s3"}
    if unknown:
        raise ValueError(f"paths must be among lookup, eventbridge, s3; got {sorted(unknown)}")
    sandbox.inject(record, lookup="lookup" in paths, eventbridge="eventbridge" in paths, s3="s3" in paths,
                   lookup_delay=float(body.get("lookup_delay", 0)))
    return {"eventID": record.get("eventID")}


class ControlServer:
    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, data: dict[str, Any]) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                handlers = {"/inject": inject_request, "/faults": fault_request}
                handler = handlers.get(self.path)
                if handler is None:
                    self._answer(404, {"error": "unknown path; POST /inject or /faults"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("body must be a JSON object")
                    with lock:
                        self._answer(200, handler(sandbox, body))
                except (ValueError, TypeError) as exc:
                    self._answer(400, {"error": str(exc)})

            def do_GET(self) -> None:
                if self.path != "/faults":
                    self._answer(404, {"error": "unknown path; GET /faults"})
                    return
                self._answer(200, faults_state(sandbox))

            def do_DELETE(self) -> None:
                if self.path != "/faults":
                    self._answer(404, {"error": "unknown path; DELETE /faults"})
                    return
                with lock:
                    FaultInjector.install(sandbox).clear()
                self._answer(200, faults_state(sandbox))

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
