"""Fault injection for the sandbox: a WSGI middleware in front of moto's server.

`FaultInjector.install(sandbox)` wraps the app of a running in-process `Sandbox` (the
werkzeug server looks its app up per request, so this works on a server already started).
Tests then add rules at runtime, from the test's own thread:

    faults = FaultInjector.install(sandbox)
    faults.add("throttle", service="iam", account="210000000003", share=0.5)
    faults.add("hang", service="iam", operation="GetAccountSummary", seconds=5)
    faults.clear()

A rule matches a request by service (from the SigV4 credential scope), operation (the
`X-Amz-Target` suffix or the query/form `Action`; for S3 the HTTP method), the caller's account (moto's own access
key -> account mapping) and access key id, and fires for a `share` of the matching requests
(a seeded random draw) up to `limit` times. Kinds:

- `throttle`: HTTP 400 with the service's throttling code (`Throttling` for IAM/STS,
  `ThrottlingException` for CloudTrail, `TooManyRequestsException` for Organizations,
  `RequestThrottled` for SQS; HTTP 503 `SlowDown` for S3);
- `server_error`: HTTP 500 `InternalFailure`;
- `reset`: the TCP connection is closed with SO_LINGER 0 (the client sees a reset) before
  any byte of the answer;
- `hang`: the request is held `seconds` before moto answers it normally;
- `expired_token`: HTTP 403 `ExpiredToken` (credentials AWS no longer accepts);
- `access_denied`: the service's access-denied answer (HTTP 403 `AccessDenied`, or
  `AccessDeniedException` for JSON-protocol services);
- `lookup_disorder`: the LookupEvents answer is served with its events in reverse order
  and the first event repeated at the end (a page that repeats records out of order).

Every firing is counted in `injected[(kind, service, operation)]`.
"""

from __future__ import annotations

import io
import json
import os
import random
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

KINDS = ("throttle", "server_error", "reset", "hang", "expired_token", "access_denied", "lookup_disorder")

_THROTTLE_CODES = {
    "iam": "Throttling",
    "sts": "Throttling",
    "cloudtrail": "ThrottlingException",
    "organizations": "TooManyRequestsException",
    "sqs": "RequestThrottled",
}


@dataclass
class Rule:
    kind: str
    service: str | None = None
    operation: str | None = None
    account: str | None = None
    access_key: str | None = None
    share: float = 1.0
    limit: int | None = None
    seconds: float = 30.0
    fired: int = 0

    def matches(self, request: "_Request") -> bool:
        return (
            (self.service is None or self.service == request.service)
            and (self.operation is None or self.operation == request.operation)
            and (self.account is None or self.account == request.account)
            and (self.access_key is None or self.access_key == request.access_key)
            and (self.limit is None or self.fired < self.limit)
        )


@dataclass
class _Request:
    service: str
    operation: str
    access_key: str
    account: str
    json_protocol: bool


class FaultInjector:
    """WSGI middleware; thread-safe; rules change at runtime."""

    def __init__(self, app: Callable[..., Any], seed: int = 7) -> None:
        self.app = app
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.injected: Counter[tuple[str, str, str]] = Counter()
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (service, operation, account)

    @classmethod
    def install(cls, sandbox: Any, seed: int = 7) -> "FaultInjector":
        """Wrap a started in-process Sandbox's server (idempotent: the same injector)."""
        server = sandbox._server._server  # ThreadedMotoServer -> werkzeug BaseWSGIServer
        if isinstance(server.app, FaultInjector):
            return server.app
        injector = cls(server.app, seed)
        server.app = injector
        return injector

    # -- control --------------------------------------------------------------------------

    def add(self, kind: str, **match: Any) -> Rule:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
        rule = Rule(kind, **match)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.injected.clear()
            self.requests.clear()

    def rules(self) -> list[Rule]:
        """Copies of the current rules (with how often each fired)."""
        with self._lock:
            return [Rule(**vars(r)) for r in self._rules]

    def firings(self) -> dict[tuple[str, str, str], int]:
        """Firings so far by (kind, service, operation)."""
        with self._lock:
            return dict(self.injected)

    def count(self, kind: str | None = None, service: str | None = None, operation: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (k, s, o), n in self.injected.items()
                if (kind is None or k == kind) and (service is None or s == service) and (operation is None or o == operation)
            )

    # -- WSGI -----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = self._describe(environ)
        with self._lock:
            self.requests[(request.service, request.operation, request.account)] += 1
            rule = next((r for r in self._rules if r.matches(request) and self._random.random() < r.share), None)
            if rule is not None:
                rule.fired += 1
                self.injected[(rule.kind, request.service, request.operation)] += 1
        if rule is None:
            return self.app(environ, start_response)
        if rule.kind == "hang":
            time.sleep(rule.seconds)
            return self.app(environ, start_response)
        if rule.kind == "reset":
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Point the descriptor at /dev/null: the socket's last reference goes, the
                # kernel sends a RST (linger 0), and the number stays valid for werkzeug's
                # own clean-up, so no other connection can reuse it meanwhile.
                devnull = os.open(os.devnull, os.O_RDWR)
                try:
                    os.dup2(devnull, sock.fileno())
                finally:
                    os.close(devnull)
            raise ConnectionResetError("fault injection: connection reset")
        if rule.kind == "lookup_disorder":
            return self._disorder(environ, start_response)
        if rule.kind == "throttle":
            if request.service == "s3":
                return _answer(start_response, 503, "SlowDown", "Please reduce your request rate.", False, s3=True)
            code = _THROTTLE_CODES.get(request.service, "Throttling")
            return _answer(start_response, 400, code, "Rate exceeded", request.json_protocol)
        if rule.kind == "expired_token":
            return _answer(start_response, 403, "ExpiredToken", "The security token included in the request is expired", request.json_protocol)
        if rule.kind == "access_denied":
            code = "AccessDeniedException" if request.json_protocol else "AccessDenied"
            return _answer(start_response, 403, code, "User is not authorized to perform this operation (fault injection)", request.json_protocol)
        return _answer(start_response, 500, "InternalFailure", "We encountered an internal error. Please try again.", request.json_protocol)

    def _disorder(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        if captured["status"].startswith("200"):
            try:
                data = json.loads(body)
                events = list(reversed(data.get("Events", [])))
                if events:
                    events.append(events[0])
                data["Events"] = events
                body = json.dumps(data).encode()
            except ValueError:
                pass
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    @staticmethod
    def _describe(environ: dict[str, Any]) -> _Request:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        access_key = service = ""
        if "Credential=" in auth:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            access_key = scope[0]
            service = scope[3] if len(scope) > 3 else ""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.rsplit(".", 1)[-1] if target else ""
        if not operation:
            params = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            if not params.get("Action") and environ.get("REQUEST_METHOD") == "POST" and "form" in environ.get("CONTENT_TYPE", ""):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
                params = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            operation = (params.get("Action") or [""])[0]
        if not operation and service == "s3":
            operation = environ.get("REQUEST_METHOD", "")  # REST: GET reads an object, PUT writes one
        account = ""
        if access_key:
            from moto.iam.models import get_account_id_from

            account = get_account_id_from(access_key)
        return _Request(service, operation, access_key, account, bool(target))


def _answer(start_response: Callable[..., Any], status: int, code: str, message: str, json_protocol: bool, s3: bool = False) -> list[bytes]:
    reason = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
    request_id = str(uuid.uuid4())
    if json_protocol:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id)]
    elif s3:
        body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>".encode()
        headers = [("Content-Type", "application/xml")]
    else:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {reason}", headers)
    return [body]
