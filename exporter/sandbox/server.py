"""The sandbox organization: moto in server mode on 127.0.0.1, extended and seeded.

`Sandbox(scenario).start()` runs moto's threaded server in this process; `python -m
exporter.sandbox --scenario FILE` runs it as its own process and prints one JSON line
(`{"endpoint_url": ..., "control_url": ...}`) once it is ready.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from exporter.monitoring.canary import EXPORTER_PRINCIPAL_NAME
from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID, Account, Scenario

EVENTS_QUEUE = "root-activity-events"
TRAIL_QUEUE = "org-trail-notifications"
TRAIL_BUCKET = f"org-cloudtrail-{MANAGEMENT_ACCOUNT_ID}"

# Fake credentials for the exporter's principal: the access key of the IAM user EXPORTER_USER
# in the management account, as an operator running the exporter outside AWS would make it.
SANDBOX_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIASANDBOXEXPORTER0",
    "AWS_SECRET_ACCESS_KEY": "sandbox-secret-access-key-not-real",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# The IAM user name the forwarder's canary pattern accepts, so that the management account,
# reached with these credentials, is proven on EventBridge too.
EXPORTER_USER = EXPORTER_PRINCIPAL_NAME


def check_port(host: str, port: int) -> None:
    """Raise OSError when `port` cannot be listened on (0 means any free port: always can).
    moto's server thread dies on a port in use, and ThreadedMotoServer.start() then waits
    for it forever."""
    if port:
        with socket.socket() as probe:
            # As the HTTP server binds (SO_REUSEADDR): a port in TIME_WAIT is free to it.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))


class Sandbox:
    def __init__(self, scenario: Scenario, host: str = "127.0.0.1", port: int = 0) -> None:
        self.scenario = scenario
        self.host = host
        self.port = port
        self._server: Any = None
        self.ou_ids: dict[str, str] = {}
        self.root_id = ""
        self.organization_id = ""
        self.events_queue_url = ""
        self.trail_queue_url = ""
        # SCP name -> policy id of the scenario's service control policies (set by seed()).
        self.scp_ids: dict[str, str] = {}
        self.monitoring: Any = None  # exporter.sandbox.monitoring.Monitoring, from start()

    @property
    def partition(self) -> str:
        return self.scenario.organization.partition

    @property
    def region(self) -> str:
        """Where the sandbox answers: its partition's global-service region (us-east-1,
        us-gov-west-1, cn-north-1). moto files each request under the partition of the
        region it is signed for, so the exporter must use this region too."""
        from exporter.aws.partitions import global_region

        return global_region(self.partition)

    @property
    def trail_bucket(self) -> str:
        return TRAIL_BUCKET

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> Sandbox:
        from moto.server import ThreadedMotoServer

        from exporter.sandbox import moto_ext

        check_port(self.host, self.port)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_ext.install()
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        from exporter.sandbox.monitoring import Monitoring

        self.monitoring = Monitoring(self)
        # Every GetCallerIdentity made to this server (found by the Host it was sent to) is a canary.
        moto_ext.caller_identity_hooks[self.endpoint_url.removeprefix("http://")] = self.monitoring.canary
        # moto's backends are global to the process: another moto server in it (a test's own)
        # may have left an organization behind, which seeding on top of would collide with.
        self.reset()
        return self

    def stop(self) -> None:
        from exporter.sandbox import moto_ext

        if self._server is not None:
            moto_ext.caller_identity_hooks.pop(self.endpoint_url.removeprefix("http://"), None)
            self._server.stop()
            self._server = None
        if self.monitoring is not None:
            self.monitoring.scheduler.stop()
            self.monitoring = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def seed(self) -> None:
        """Build the organization and every root user directly in moto's backends."""
        from moto.organizations import utils as org_utils
        from moto.organizations.models import organizations_backends

        from exporter.sandbox import moto_ext
        from exporter.sandbox.scps import seed_scps

        org = organizations_backends[MANAGEMENT_ACCOUNT_ID][self.partition]
        org.create_organization(region=self.region, FeatureSet="ALL")
        self.root_id = org.org.root_id
        for account in org.accounts:
            if account.id == MANAGEMENT_ACCOUNT_ID:
                account.name = self.scenario.management.name
                account.email = self.scenario.management.root_email
        moto_ext.set_root_features(MANAGEMENT_ACCOUNT_ID, self.scenario.organization.root_access_features, self.partition)
        moto_ext.set_account_trusted_access(MANAGEMENT_ACCOUNT_ID, self.scenario.organization.account_trusted_access, self.partition)
        original_id = org_utils.make_random_account_id
        try:
            for spec in self.scenario.accounts:
                org_utils.make_random_account_id = lambda spec=spec: spec.id
                org.create_account(AccountName=spec.name, Email=spec.root_email)
                parent = self._ou(org, spec.ou)
                if parent != self.root_id:
                    org.move_account(AccountId=spec.id, SourceParentId=self.root_id, DestinationParentId=parent)
                self._account_state(org, spec)
        finally:
            org_utils.make_random_account_id = original_id
        for spec in self.scenario.all_accounts:
            if spec.security_contact:
                moto_ext.set_security_contact(spec.id, spec.name, self.partition)
            self._seed_root(spec)
            self._seed_iam(spec)
            for record in spec.cloudtrail_events:
                moto_ext.add_cloudtrail_record(spec.id, str(record.get("awsRegion") or self.region), record)
        self._seed_exporter_user()
        self.scp_ids = seed_scps(org, self.scenario, self.root_id, self.ou_ids)
        self.organization_id = org.org.id
        sqs = self.client("sqs")
        self.events_queue_url = sqs.create_queue(QueueName=EVENTS_QUEUE)["QueueUrl"]
        self.trail_queue_url = sqs.create_queue(QueueName=TRAIL_QUEUE)["QueueUrl"]
        bucket: dict[str, Any] = {"Bucket": TRAIL_BUCKET}
        if self.region != "us-east-1":  # S3 wants the region named anywhere else
            bucket["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client("s3").create_bucket(**bucket)
        self.monitoring.seed()

    def client(self, service: str) -> Any:
        """A boto3 client of the management account (the sandbox's own plumbing, over HTTP)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=SANDBOX_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=SANDBOX_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def inject(
        self,
        record: dict[str, Any],
        *,
        lookup: bool = True,
        eventbridge: bool = True,
        s3: bool = True,
        lookup_delay: float = 0.0,
    ) -> None:
        """Deliver a new CloudTrail record the way AWS would: to LookupEvents history; as an
        event on its account's default bus in its region, through the forwarder and central
        rules to the root-activity queue; and in an organization-trail log file announced on
        the S3 notification queue. The last two only while a trail records it there."""
        self.monitoring.deliver(record, lookup=lookup, eventbridge=eventbridge, s3=s3, delays={"lookup_events": lookup_delay})

    def write_trail_file(
        self, records: list[dict[str, Any]], account: str, region: str = "us-east-1", body: bytes | None = None, organization: bool = True
    ) -> str:
        """Write a gzipped log file where a trail would (an organization trail's key names the
        organization) and announce it on SQS. Written in moto's backends, as AWS delivers: no
        request of the sandbox's own shows to fault rules or request counts."""
        from moto.s3.models import s3_backends
        from moto.sqs import sqs_backends

        now = datetime.now(timezone.utc)
        prefix = f"AWSLogs/{self.organization_id}/{account}" if organization else f"AWSLogs/{account}"
        key = (
            f"{prefix}/CloudTrail/{region}/{now:%Y/%m/%d}/"
            f"{account}_CloudTrail_{region}_{now:%Y%m%dT%H%MZ}_{uuid.uuid4().hex[:16]}.json.gz"
        )
        data = body if body is not None else gzip.compress(json.dumps({"Records": records}).encode())
        s3_backends[MANAGEMENT_ACCOUNT_ID][self.partition].put_object(TRAIL_BUCKET, key, data)
        notification = {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": region,
                    "eventTime": now.isoformat().replace("+00:00", "Z"),
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "bucket": {"name": TRAIL_BUCKET, "arn": f"arn:{self.partition}:s3:::{TRAIL_BUCKET}"},
                        "object": {"key": key, "size": len(data)},
                    },
                }
            ]
        }
        sqs_backends[MANAGEMENT_ACCOUNT_ID][self.region].send_message(self.trail_queue_url.rsplit("/", 1)[-1], json.dumps(notification))
        return key

    def _ou(self, org: Any, path: str) -> str:
        parent = self.root_id
        walked: list[str] = []
        for name in [p for p in path.split("/") if p]:
            walked.append(name)
            key = "/".join(walked)
            if key not in self.ou_ids:
                self.ou_ids[key] = org.create_organizational_unit(ParentId=parent, Name=name)["OrganizationalUnit"]["Id"]
            parent = self.ou_ids[key]
        return parent

    @staticmethod
    def _account_state(org: Any, spec: Account) -> None:
        """State, JoinedMethod and JoinedTimestamp as Organizations reports them (moto: always ACTIVE, CREATED, now)."""
        account = org.get_account_by_id(spec.id)
        account.state = spec.state
        # The retired Status field has no PENDING_ACTIVATION or CLOSED: such accounts are
        # ACTIVE and SUSPENDED there.
        account.status = {"PENDING_ACTIVATION": "ACTIVE", "CLOSED": "SUSPENDED"}.get(spec.state, spec.state)
        account.joined_method = spec.joined_method
        if spec.joined is not None:
            account.create_time = spec.joined.astimezone(timezone.utc).replace(tzinfo=None)

    def _seed_iam(self, spec: Account) -> None:
        """IAM users with their own virtual MFA devices, and virtual devices assigned to nobody."""
        from moto.iam import iam_backends

        iam = iam_backends[spec.id][self.partition]
        for user in spec.iam_users:
            iam.create_user(region_name=self.region, user_name=user.name, path="/", tags=[])
            if user.virtual_mfa:
                device = iam.create_virtual_mfa_device(device_name=user.name, path="/")
                iam.enable_mfa_device(user.name, device.serial_number, "123456", "654321")
        for name in spec.unassigned_virtual_mfa:
            iam.create_virtual_mfa_device(device_name=name, path="/")

    def _seed_exporter_user(self) -> None:
        """The exporter's IAM user owning SANDBOX_ENV's access key: moto's GetCallerIdentity
        then answers `arn:<partition>:iam::<management>:user/aws-root-exporter` with an
        `AIDA...` user id, as IAM does (moto answers `arn:aws:sts::<account>:user/moto` for a
        key it does not know, and gives users lowercase ids)."""
        from moto.iam import iam_backends
        from moto.iam.models import generate_access_key_id_from_account_id

        iam = iam_backends[MANAGEMENT_ACCOUNT_ID][self.partition]
        user = iam.create_user(region_name=self.region, user_name=EXPORTER_USER, path="/", tags=[])
        user.id = generate_access_key_id_from_account_id(MANAGEMENT_ACCOUNT_ID, prefix="AIDA", total_length=21)
        key = iam.create_access_key(EXPORTER_USER)
        del iam.access_keys[key.access_key_id]
        key.access_key_id = SANDBOX_ENV["AWS_ACCESS_KEY_ID"]
        key.secret_access_key = SANDBOX_ENV["AWS_SECRET_ACCESS_KEY"]
        iam.access_keys[key.access_key_id] = key

    def _seed_root(self, spec: Account) -> None:
        from exporter.sandbox import moto_ext

        state = moto_ext.root_state(spec.id)
        state.partition = self.partition
        self._root_state(state, spec, spec.root)
        state.deny_assume_role = spec.assume_role == "denied"
        state.report_generation_seconds = spec.credential_report.generation_seconds
        state.report_malformed = spec.credential_report.malformed
        state.throttle_iam = "throttle_iam" in spec.faults
        state.iam_faults = {f.operation: f.error for f in spec.faults if not isinstance(f, str)}
        stale = spec.credential_report.stale_root
        if stale is not None:
            earlier = moto_ext.RootState(spec.id, partition=self.partition)
            self._root_state(earlier, spec, stale)
            moto_ext.set_cached_report(spec.id, earlier, datetime.now(timezone.utc) - timedelta(hours=1))

    @staticmethod
    def _root_state(state: Any, spec: Account, root: Any) -> None:
        from exporter.sandbox import moto_ext

        state.password = root.password == "present"
        state.password_report = root.password_report
        state.password_last_used = root.password_last_used
        state.password_last_used_report = root.password_last_used_report
        state.summary_password_key = root.summary_password_key
        state.virtual_mfa_name = root.virtual_mfa_name
        state.report_columns = spec.credential_report.columns
        state.report_upper_booleans = spec.credential_report.booleans == "upper"
        if root.mfa != "none":
            state.add_mfa(root.mfa)
        for kind in root.extra_mfa:
            state.add_mfa(kind)
        for slot, key in root.key_slots():
            state.access_keys.append(
                moto_ext.RootKey(
                    access_key_id=f"AKIA{spec.id}RK{slot:02d}",
                    active=key.active,
                    created=key.created or state.created + timedelta(days=30 * slot),
                    last_used=key.last_used,
                    last_used_region=key.last_used_region,
                    last_used_service=key.last_used_service,
                    slot=slot,
                )
            )
        for n, cert in enumerate(root.signing_certificates):
            state.certificates.append(moto_ext.RootCertificate(f"CERT{spec.id}{n}".ljust(32, "0"), cert.active))

    def reset(self, scenario: Scenario | None = None) -> None:
        """Forget everything moto holds and seed again (the server keeps running)."""
        from moto.moto_api._internal.models import moto_api_backend

        if scenario is not None:
            self.scenario = scenario
        moto_api_backend.reset()
        self.ou_ids = {}
        self.seed()

    # -- changes while running (tests and demos) ---------------------------------------------

    def root(self, account_id: str) -> Any:
        """The live root state of an account, to change posture between sweeps."""
        from exporter.sandbox import moto_ext

        return moto_ext.root_state(account_id)
