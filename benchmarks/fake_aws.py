"""A fast fake AWS endpoint for benchmarks: N accounts, fixed latency, CloudTrail's rate limit.

It answers exactly the operations the exporter uses, in AWS's own wire protocols, from a
single asyncio process with a minimal HTTP/1.1 parser (keep-alive, thousands of
connections). It is not a simulator: every account answers from a formula of its index,
so the server spends its time on HTTP, not on state.

- Organizations, CloudTrail and EventBridge: JSON 1.1 (`X-Amz-Target`). IAM and STS: query protocol
  (form-encoded `Action=...`, XML answers).
- Which service: the SigV4 credential scope (`Credential=AKID/date/region/service/...`).
- Which account: encoded in the access key id that the fake `AssumeRole` hands out
  (`ASIA` + 12-digit account id + `FAKE`); any other key is the management account.
- Every request waits `latency` seconds, then is counted by operation and account.
- `LookupEvents` allows 2 requests per second per account and region (a one-second
  sliding window, like AWS's documented limit) and answers `ThrottlingException` beyond.
  It answers no events, or, after `POST /__lookup_events?records=1`, one root console sign-in
  per account (the same event id on every poll, as CloudTrail would).
- The proof-of-sight canary: `GetCallerIdentity` (STS, on the regional endpoint) answers
  the caller of the access key (the member role session `AssumeRole` handed out, with the
  session name it was asked for; the management account's own key is the IAM user
  `aws-root-exporter`) and writes its CloudTrail record in the region of the call; a
  `LookupEvents` with `EventName=GetCallerIdentity` in that account and region answers the
  records in its `StartTime`..`EndTime` (the last few per account and region), with no
  delivery delay. After `POST /__canary?forward=1` each record is also put on the SQS
  queue as the EventBridge event the forwarder rule would send (`forward=0`: no more).
- The configuration checks: CloudTrail `DescribeTrails`, `GetTrailStatus`,
  `GetEventSelectors` and EventBridge (JSON 1.1, `AWSEvents.*`) `DescribeRule`,
  `ListTargetsByRule` answer a healthy deployment in every account and region: a logging
  multi-region organization trail with all management events, and the forwarder rule in
  state `ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS` with one target.
- SQS (JSON 1.0, `AmazonSQS.*`): one in-memory queue for any queue URL. `POST /__sqs_send`
  with a message body enqueues it; `ReceiveMessage` long-polls (answers as soon as a message
  is there, or after `WaitTimeSeconds`); `DeleteMessageBatch` removes messages.

- Faults (off by default; see docs/soak.md): a share of AWS requests, drawn with a seeded
  random generator, is answered with a fault instead: `throttle` (HTTP 400 with the
  service's throttling code: `Throttling` for IAM and STS, `TooManyRequestsException` for
  Organizations, `ThrottlingException` for CloudTrail and SQS), `server_error` (HTTP 500
  `InternalFailure`), `reset` (the connection is reset without an answer) or `hang` (held
  `hang_seconds`, then answered normally). Set with `--throttle 0.05 --server-error 0.01
  ...` or at runtime with `POST /__faults` and a JSON body
  (`{"throttle": 0.05, "reset": 0.005, "hang": 0.001, "hang_seconds": 15, "seed": 7}`;
  the shares given replace all shares, `{}` switches faults off). Every fault is counted by
  kind and operation in `/__stats` (`faults`).

Run: `python -m benchmarks.fake_aws --accounts 1000 --latency 0.05`; it prints
`LISTENING <port>`. `GET /__stats` returns the counts as JSON, `POST /__reset` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import random
import resource
import signal
import socket
import struct
import time
from datetime import datetime, timedelta, timezone
import uuid
from urllib.parse import parse_qsl

from exporter.posture.credential_report import REPORT_HEADER
from exporter.monitoring.canary import EVENT_NAME as CANARY_EVENT_NAME
from exporter.monitoring.canary import EXPORTER_PRINCIPAL_NAME
from exporter.sandbox.records import caller_identity_record, eventbridge_envelope, make_record

MANAGEMENT_ID = "100000000000"
ORGANIZATION_ID = "o-benchmark01"
ROOT_ID = "r-bench"
PAGE_SIZE = 20  # Organizations' maximum page size for ListAccountsForParent
LOOKUP_EVENTS_PER_SECOND = 2
CREDENTIAL_SECONDS = 3600
VISIBILITY_TIMEOUT = 30.0  # seconds a received message stays hidden, as SQS's default
# Canary records kept per account and region: more than a lookup window holds at the
# default intervals (bound 900 s + 2 x interval 300 s = 5 canaries), so none is missed.
CANARY_RECORDS_KEPT = 8
ORGANIZATION_TRAIL = f"arn:aws:cloudtrail:us-east-1:{MANAGEMENT_ID}:trail/organization-trail"
# The operations whose answer depends on the region of the endpoint called.
REGIONAL = {
    "sts:GetCallerIdentity",
    "cloudtrail:LookupEvents",
    "events:DescribeRule",
    "events:ListTargetsByRule",
}

# Fault kinds, in the order a request's random draw is compared with their shares.
FAULT_KINDS = ("throttle", "server_error", "reset", "hang")
THROTTLE_CODES = {
    "iam": "Throttling",
    "sts": "Throttling",
    "organizations": "TooManyRequestsException",
    "cloudtrail": "ThrottlingException",
    "sqs": "ThrottlingException",
    "events": "ThrottlingException",
}

XMLNS = {"iam": "https://iam.amazonaws.com/doc/2010-05-08/", "sts": "https://sts.amazonaws.com/doc/2011-06-15/"}


def account_ids(count: int) -> list[str]:
    """The organization's accounts: the management account first, then members."""
    return [MANAGEMENT_ID] + [str(200000000000 + i) for i in range(1, count)]


def access_key_for(account_id: str) -> str:
    return f"ASIA{account_id}FAKE"


def account_of_key(access_key_id: str) -> str:
    if len(access_key_id) == 20 and access_key_id.startswith("ASIA") and access_key_id.endswith("FAKE"):
        return access_key_id[4:16]
    return MANAGEMENT_ID


def expected_posture(account_id: str) -> dict[str, bool]:
    """What the fake says about one account's root (tests compare the exporter's view)."""
    n = int(account_id) % 7
    return {"mfa_enabled": n != 0, "root_virtual_mfa": n == 1, "access_key": n == 2}


class FakeAws:
    def __init__(self, accounts: int, latency: float, ous: int = 10, report_age: float = 3600.0) -> None:
        self.ids = account_ids(accounts)
        self.latency = latency
        self.report_generated = datetime.now(timezone.utc) - timedelta(seconds=report_age)
        # The organization: the root holds the management account and `ous` OUs; members
        # are spread over the OUs round-robin.
        self.ous = [f"ou-bnch-{i:08d}" for i in range(min(ous, max(accounts - 1, 0)))]
        self.children: dict[str, list[str]] = {ROOT_ID: [MANAGEMENT_ID]}
        for ou in self.ous:
            self.children[ou] = []
        for i, account in enumerate(self.ids[1:]):
            self.children[self.ous[i % len(self.ous)] if self.ous else ROOT_ID].append(account)
        self.lookup_records = False
        self.forward_canaries = False
        # Per account, the (role ARN, session name) of the last AssumeRole into it.
        self.sessions: dict[str, tuple[str, str]] = {}
        # Per (account, region): the canary records written there, newest last, as
        # (eventTime in epoch seconds, record).
        self.canaries: dict[tuple[str, str], collections.deque[tuple[float, dict]]] = {}
        self.queue: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self.queue_changed = asyncio.Event()
        self.fault_shares: dict[str, float] = {}
        self.hang_seconds = 15.0
        self.fault_random = random.Random(7)
        self.reset()

    def set_faults(self, shares: dict[str, float], hang_seconds: float | None = None, seed: int | None = None) -> None:
        """Answer this share of AWS requests with each fault kind (all zero: no faults)."""
        unknown = set(shares) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if any(not 0 <= share <= 1 for share in shares.values()) or sum(shares.values()) > 1:
            raise ValueError("fault shares must be between 0 and 1 and add up to at most 1")
        self.fault_shares = {kind: float(share) for kind, share in shares.items() if share}
        if hang_seconds is not None:
            self.hang_seconds = float(hang_seconds)
        if seed is not None:
            self.fault_random = random.Random(seed)

    def _draw_fault(self) -> str | None:
        draw = self.fault_random.random()
        for kind in FAULT_KINDS:
            share = self.fault_shares.get(kind, 0.0)
            if draw < share:
                return kind
            draw -= share
        return None

    def reset(self) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        # LookupEvents by its lookup attribute (`Username=root`, `EventName=...`).
        self.lookups: collections.Counter[str] = collections.Counter()
        self.by_account: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.throttled: collections.Counter[str] = collections.Counter()
        self.lookup_windows: dict[tuple[str, str], collections.deque[float]] = collections.defaultdict(collections.deque)
        self.max_lookup_per_second = 0
        self.connections = 0
        self.max_connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.faults: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    def stats(self) -> dict:
        return {
            "requests": dict(self.requests),
            "lookups": dict(self.lookups),
            "by_account": {a: dict(c) for a, c in self.by_account.items()},
            "throttled": dict(self.throttled),
            "max_lookup_events_per_second": self.max_lookup_per_second,
            "connections": self.connections,
            "queue": len(self.queue),
            "max_connections": self.max_connections,
            "faults": {kind: dict(c) for kind, c in self.faults.items()},
            "faults_total": {kind: sum(c.values()) for kind, c in self.faults.items()},
            "fault_shares": dict(self.fault_shares),
            "max_in_flight": self.max_in_flight,
            "cpu_seconds": _cpu_seconds(),
        }

    # -- HTTP ---------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.max_connections = max(self.max_connections, self.connections)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                status, content_type, payload = await self.respond(method, path, headers, body)
                if status == RESET:
                    # No answer: the peer sees the connection reset (SO_LINGER 0, then close).
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nx-amzn-RequestId: fake\r\n\r\n"
                    % (status, b"OK" if status == 200 else b"Error", content_type.encode(), len(payload))
                    + payload
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # the client went away, or the server is stopping
        finally:
            self.connections -= 1
            writer.close()

    async def respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        if path.startswith("/__stats"):
            return 200, "application/json", json.dumps(self.stats()).encode()
        if path.startswith("/__reset"):
            self.reset()
            return 200, "application/json", b"{}"
        if path.startswith("/__faults"):
            if method == "POST":
                config = json.loads(body or b"{}")
                try:
                    self.set_faults(
                        {k: v for k, v in config.items() if k not in ("hang_seconds", "seed")},
                        config.get("hang_seconds"),
                        config.get("seed"),
                    )
                except ValueError as exc:
                    return 400, "application/json", json.dumps({"error": str(exc)}).encode()
            return 200, "application/json", json.dumps({**self.fault_shares, "hang_seconds": self.hang_seconds}).encode()
        if path.startswith("/__lookup_events"):
            self.lookup_records = "records=1" in path
            return 200, "application/json", b"{}"
        if path.startswith("/__canary"):
            self.forward_canaries = "forward=1" in path
            return 200, "application/json", b"{}"
        if path.startswith("/__sqs_send"):
            message_id = self._enqueue(body.decode())
            return 200, "application/json", json.dumps({"MessageId": message_id}).encode()
        auth = headers.get("authorization", "")
        try:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            access_key, region, service = scope[0], scope[2], scope[3]
        except IndexError:
            return 403, "application/json", b'{"__type":"MissingAuthenticationTokenException","message":"no signature"}'
        account = account_of_key(access_key)
        target = headers.get("x-amz-target")
        if target:
            operation = target.rsplit(".", 1)[-1]
            params = json.loads(body or b"{}")
        elif service == "account":
            # REST-JSON: the operation is the path (/getAlternateContact), the input the body.
            name_in_path = path.split("?", 1)[0].strip("/")
            operation = name_in_path[:1].upper() + name_in_path[1:]
            params = json.loads(body or b"{}")
        else:
            params = dict(parse_qsl(body.decode()))
            operation = params.get("Action", "")
        name = f"{service}:{operation}"
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        self.requests[name] += 1
        self.by_account[account][name] += 1
        if self.fault_shares:
            fault = self._draw_fault()
            if fault is not None:
                self.faults[fault][name] += 1
                if fault == "throttle":
                    return self._error(service, target, 400, THROTTLE_CODES.get(service, "Throttling"), "Rate exceeded")
                if fault == "server_error":
                    return self._error(service, target, 500, "InternalFailure", "injected server error")
                if fault == "reset":
                    return RESET, "", b""
                await asyncio.sleep(self.hang_seconds)  # hang, then answer normally
        if name == "cloudtrail:LookupEvents" and not self._lookup_allowed(account, region):
            self.throttled[name] += 1
            self.by_account[account]["throttled:" + name] += 1
            return 400, "application/x-amz-json-1.1", b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        handler = getattr(self, "op_" + service + "_" + operation, None)
        if handler is None:
            return self._error(service, target, 400, "InvalidAction", f"{name} is not implemented by the fake")
        try:
            result = handler(account, params, region) if name in REGIONAL else handler(account, params)
            if asyncio.iscoroutine(result):
                result = await result
        except _Error as exc:
            return self._error(service, target, exc.status, exc.code, exc.message)
        if target or service == "account":
            return 200, _json_type(service), json.dumps(result).encode()
        return 200, "text/xml", _query_response(service, operation, result).encode()

    def _enqueue(self, body: str) -> str:
        message_id = str(uuid.uuid4())
        self.queue[message_id] = {"MessageId": message_id, "ReceiptHandle": message_id, "Body": body, "receives": 0, "visible_at": 0.0}
        self.queue_changed.set()
        return message_id

    def _lookup_allowed(self, account: str, region: str) -> bool:
        now = time.monotonic()
        window = self.lookup_windows[(account, region)]
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= LOOKUP_EVENTS_PER_SECOND:
            return False
        window.append(now)
        self.max_lookup_per_second = max(self.max_lookup_per_second, len(window))
        return True

    def _error(self, service: str, target: str | None, status: int, code: str, message: str) -> tuple[int, str, bytes]:
        if target or service == "account":
            return status, _json_type(service), json.dumps({"__type": code, "message": message}).encode()
        xml = (
            f'<ErrorResponse xmlns="{XMLNS.get(service, "")}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>fake</RequestId></ErrorResponse>"
        )
        return status, "text/xml", xml.encode()

    # -- Account Management (REST-JSON) ------------------------------------------------

    def op_account_GetAlternateContact(self, account: str, params: dict) -> dict:
        """Every account has a security contact (the benchmark measures scale, not findings)."""
        target = params.get("AccountId", account)
        return {"AlternateContact": {"AlternateContactType": params["AlternateContactType"], "Name": "Security",
                                     "Title": "Security", "EmailAddress": f"security+{target}@example.com", "PhoneNumber": "+1-555-0100"}}

    # -- Organizations (JSON 1.1) ------------------------------------------------------

    def op_organizations_DescribeOrganization(self, account: str, params: dict) -> dict:
        return {"Organization": {"Id": ORGANIZATION_ID, "MasterAccountId": MANAGEMENT_ID, "FeatureSet": "ALL"}}

    def op_organizations_ListRoots(self, account: str, params: dict) -> dict:
        return {"Roots": [{"Id": ROOT_ID, "Name": "Root", "Arn": f"arn:aws:organizations::{MANAGEMENT_ID}:root/{ORGANIZATION_ID}/{ROOT_ID}"}]}

    def op_organizations_ListOrganizationalUnitsForParent(self, account: str, params: dict) -> dict:
        ous = self.ous if params.get("ParentId") == ROOT_ID else []
        return {"OrganizationalUnits": [{"Id": ou, "Name": f"OU {i}"} for i, ou in enumerate(ous)]}

    def _page(self, items: list[str], params: dict) -> dict:
        start = int(params.get("NextToken") or 0)
        size = min(int(params.get("MaxResults") or PAGE_SIZE), PAGE_SIZE)
        page = [{"Id": a, "Name": f"account-{a}", "Email": f"aws+{a}@example.com", "Status": "ACTIVE", "State": "ACTIVE"} for a in items[start : start + size]]
        result: dict = {"Accounts": page}
        if start + size < len(items):
            result["NextToken"] = str(start + size)
        return result

    def op_organizations_ListAccountsForParent(self, account: str, params: dict) -> dict:
        return self._page(self.children.get(params.get("ParentId", ""), []), params)

    def op_organizations_ListAccounts(self, account: str, params: dict) -> dict:
        return self._page(self.ids, params)

    # -- CloudTrail (JSON 1.1) -----------------------------------------------------------

    def op_cloudtrail_LookupEvents(self, account: str, params: dict, region: str) -> dict:
        attributes = params.get("LookupAttributes") or [{}]
        self.lookups[f"{attributes[0].get('AttributeKey')}={attributes[0].get('AttributeValue')}"] += 1
        if attributes[0] == {"AttributeKey": "EventName", "AttributeValue": CANARY_EVENT_NAME}:
            return self._canary_events(account, region, params)
        if not self.lookup_records or attributes[0].get("AttributeKey") != "Username":
            return {"Events": []}
        when = datetime.now(timezone.utc) - timedelta(seconds=30)
        record = make_record("console-login", account, when=when, event_id=f"bench-login-{account}")
        return {
            "Events": [
                {
                    "EventId": record["eventID"],
                    "EventName": record["eventName"],
                    "EventTime": when.timestamp(),
                    "Username": "root",
                    "CloudTrailEvent": json.dumps(record),
                }
            ]
        }

    def _canary_events(self, account: str, region: str, params: dict) -> dict:
        # botocore sends the window as epoch seconds; a second either side covers a
        # serializer that drops the fraction (the exporter counts each record once anyway).
        start, end = float(params.get("StartTime") or 0) - 1, float(params.get("EndTime") or time.time()) + 1
        found = [record for when, record in reversed(self.canaries.get((account, region), ())) if start <= when <= end]
        return {
            "Events": [
                {
                    "EventId": record["eventID"],
                    "EventName": CANARY_EVENT_NAME,
                    "EventTime": datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp(),
                    "Username": record["userIdentity"]["arn"].rsplit("/", 1)[-1],
                    "CloudTrailEvent": json.dumps(record),
                }
                for record in found
            ]
        }

    def op_cloudtrail_DescribeTrails(self, account: str, params: dict) -> dict:
        trail = {
            "Name": ORGANIZATION_TRAIL,
            "TrailARN": ORGANIZATION_TRAIL,
            "HomeRegion": "us-east-1",
            "S3BucketName": "organization-trail-logs",
            "IsMultiRegionTrail": True,
            "IsOrganizationTrail": True,
            "IncludeGlobalServiceEvents": True,
            "HasCustomEventSelectors": False,
        }
        return {"trailList": [trail]}

    def op_cloudtrail_GetTrailStatus(self, account: str, params: dict) -> dict:
        return {"IsLogging": True, "LatestDeliveryTime": time.time() - 60}

    def op_cloudtrail_GetEventSelectors(self, account: str, params: dict) -> dict:
        return {"TrailARN": ORGANIZATION_TRAIL, "EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": []}]}

    # -- EventBridge (JSON 1.1) ---------------------------------------------------------

    def op_events_DescribeRule(self, account: str, params: dict, region: str) -> dict:
        name = params.get("Name", "")
        return {"Name": name, "Arn": f"arn:aws:events:{region}:{account}:rule/{name}", "State": "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", "EventBusName": "default"}

    def op_events_ListTargetsByRule(self, account: str, params: dict, region: str) -> dict:
        return {"Targets": [{"Id": "central-bus", "Arn": f"arn:aws:events:us-east-1:{MANAGEMENT_ID}:event-bus/root-activity"}]}

    # -- SQS (JSON 1.0) ------------------------------------------------------------------

    async def op_sqs_ReceiveMessage(self, account: str, params: dict) -> dict:
        deadline = time.monotonic() + float(params.get("WaitTimeSeconds") or 0)
        while not (visible := [m for m in self.queue.values() if m["visible_at"] <= time.monotonic()]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {}
            self.queue_changed.clear()
            try:
                await asyncio.wait_for(self.queue_changed.wait(), remaining)
            except TimeoutError:
                return {}
        messages = []
        for message in visible[: int(params.get("MaxNumberOfMessages") or 1)]:
            message["receives"] += 1
            message["visible_at"] = time.monotonic() + VISIBILITY_TIMEOUT
            messages.append(
                {
                    "MessageId": message["MessageId"],
                    "ReceiptHandle": message["ReceiptHandle"],
                    "Body": message["Body"],
                    "Attributes": {"ApproximateReceiveCount": str(message["receives"])},
                }
            )
        return {"Messages": messages}

    def op_sqs_DeleteMessageBatch(self, account: str, params: dict) -> dict:
        for entry in params.get("Entries", []):
            self.queue.pop(entry["ReceiptHandle"], None)
        return {"Successful": [{"Id": e["Id"]} for e in params.get("Entries", [])], "Failed": []}

    # -- STS (query) -------------------------------------------------------------------

    def op_sts_GetCallerIdentity(self, account: str, params: dict, region: str) -> str:
        session = self.sessions.get(account) if account != MANAGEMENT_ID else None
        if session is not None:
            role_arn, name = session
            arn = f"arn:aws:sts::{account}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/{name}"
            caller = {"account": account, "region": region, "arn": arn, "role_arn": role_arn, "access_key_id": access_key_for(account)}
        else:
            arn = f"arn:aws:iam::{account}:user/{EXPORTER_PRINCIPAL_NAME}"
            caller = {"account": account, "region": region, "arn": arn, "user_id": "AIDAFAKE", "access_key_id": "AKIDEXPORTER"}
        now = datetime.now(timezone.utc)
        record = caller_identity_record(caller, when=now)
        kept = self.canaries.setdefault((account, region), collections.deque(maxlen=CANARY_RECORDS_KEPT))
        kept.append((now.timestamp(), record))
        if self.forward_canaries:
            self._enqueue(json.dumps(eventbridge_envelope(record)))
        return f"<Account>{account}</Account><Arn>{arn}</Arn><UserId>AIDAFAKE</UserId>"

    def op_sts_AssumeRole(self, account: str, params: dict) -> str:
        target = params.get("RoleArn", "").split(":")[4]
        if target not in self._known:
            raise _Error(403, "AccessDenied", f"not authorized to assume {params.get('RoleArn')}")
        self.sessions[target] = (params.get("RoleArn", ""), params.get("RoleSessionName", ""))
        expiration = (datetime.now(timezone.utc) + timedelta(seconds=CREDENTIAL_SECONDS)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"<Credentials><AccessKeyId>{access_key_for(target)}</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>"
            f"<SessionToken>token</SessionToken><Expiration>{expiration}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROAFAKE:{params.get('RoleSessionName')}</AssumedRoleId><Arn>{params.get('RoleArn')}/{params.get('RoleSessionName')}</Arn></AssumedRoleUser>"
        )

    @property
    def _known(self) -> set[str]:
        known = getattr(self, "_known_set", None)
        if known is None:
            known = self._known_set = set(self.ids)
        return known

    # -- IAM (query) -------------------------------------------------------------------

    def op_iam_GetAccountSummary(self, account: str, params: dict) -> str:
        p = expected_posture(account)
        entries = {"AccountMFAEnabled": int(p["mfa_enabled"]), "AccountAccessKeysPresent": int(p["access_key"]), "AccountSigningCertificatesPresent": 0, "Users": 3}
        body = "".join(f"<entry><key>{k}</key><value>{v}</value></entry>" for k, v in entries.items())
        return f"<SummaryMap>{body}</SummaryMap>"

    def op_iam_GenerateCredentialReport(self, account: str, params: dict) -> str:
        return "<State>COMPLETE</State><Description>ready</Description>"

    def op_iam_GetCredentialReport(self, account: str, params: dict) -> str:
        p = expected_posture(account)
        created = "2020-01-01T00:00:00+00:00"
        key = "true" if p["access_key"] else "false"
        row = (
            f"<root_account>,arn:aws:iam::{account}:root,{created},not_supported,2024-05-01T10:00:00+00:00,"
            f"not_supported,not_supported,{str(p['mfa_enabled']).lower()},{key},N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,"
            "false,N/A,false,N/A"
        )
        content = base64.b64encode(f"{REPORT_HEADER}\n{row}\n".encode()).decode()
        generated = self.report_generated.strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"<Content>{content}</Content><ReportFormat>text/csv</ReportFormat><GeneratedTime>{generated}</GeneratedTime>"

    def op_iam_ListVirtualMFADevices(self, account: str, params: dict) -> str:
        members = ""
        if expected_posture(account)["root_virtual_mfa"]:
            members = (
                f"<member><SerialNumber>arn:aws:iam::{account}:mfa/root-account-mfa-device</SerialNumber>"
                f"<User><Path>/</Path><UserName>root</UserName><UserId>{account}</UserId>"
                f"<Arn>arn:aws:iam::{account}:root</Arn><CreateDate>2020-01-01T00:00:00Z</CreateDate></User></member>"
            )
        return f"<VirtualMFADevices>{members}</VirtualMFADevices><IsTruncated>false</IsTruncated>"

    def op_iam_ListOrganizationsFeatures(self, account: str, params: dict) -> str:
        return f"<OrganizationId>{ORGANIZATION_ID}</OrganizationId><EnabledFeatures><member>RootCredentialsManagement</member></EnabledFeatures>"


def _json_type(service: str) -> str:
    return "application/x-amz-json-1.0" if service == "sqs" else "application/x-amz-json-1.1"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


RESET = -1  # the status `respond` gives for "reset the connection, do not answer"


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _query_response(service: str, operation: str, result: str) -> str:
    return (
        f'<{operation}Response xmlns="{XMLNS[service]}"><{operation}Result>{result}</{operation}Result>'
        f"<ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></{operation}Response>"
    )


async def serve(fake: FakeAws, host: str, port: int) -> None:
    server = await asyncio.start_server(fake.handle, host, port, backlog=4096, limit=1 << 20)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_aws", description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request (default 0.05)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    add_fault_arguments(parser)
    args = parser.parse_args(argv)
    asyncio.run(serve(fake_from_args(args), args.host, args.port))


def add_fault_arguments(parser: argparse.ArgumentParser, defaults: dict[str, float] | None = None) -> None:
    defaults = defaults or {}
    for kind in FAULT_KINDS:
        flag = "--" + kind.replace("_", "-")
        parser.add_argument(flag, type=float, default=defaults.get(kind, 0.0), help=f"share of AWS requests answered with `{kind}` (default {defaults.get(kind, 0.0)})")
    parser.add_argument("--hang-seconds", type=float, default=defaults.get("hang_seconds", 15.0), help="seconds a `hang` holds a request")
    parser.add_argument("--seed", type=int, default=int(defaults.get("seed", 7)), help="seed of the fault draw")


def fault_config(args: argparse.Namespace) -> dict[str, float]:
    return {**{kind: getattr(args, kind) for kind in FAULT_KINDS}, "hang_seconds": args.hang_seconds, "seed": args.seed}


def fake_from_args(args: argparse.Namespace) -> FakeAws:
    fake = FakeAws(args.accounts, args.latency)
    config = fault_config(args)
    fake.set_faults({kind: config[kind] for kind in FAULT_KINDS}, config["hang_seconds"], int(config["seed"]))
    return fake


if __name__ == "__main__":
    main()
