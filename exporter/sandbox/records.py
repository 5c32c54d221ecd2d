"""CloudTrail records in their native JSON form, for the sandbox to serve and inject.

The shapes follow AWS's documented examples (root `ConsoleLogin` with
`additionalEventData.MFAUsed`, root API calls with `userIdentity.type` `Root`, an IAM user
sign-in for contrast). Times are ISO 8601 UTC with a `Z`, as CloudTrail writes them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from exporter.aws.partitions import DEFAULT_PARTITION, global_region, task_policy_arn

KINDS = (
    "console-login",
    "console-login-failure",
    "password-recovery",
    "api-call",
    "break-glass",
    "iam-user-login",
    "iam-user-named-root-login",
    "root-temporary-key-call",
    "assume-root",
    "primary-email-update",
    "stop-logging",
)


def _time(when: datetime | None) -> str:
    return (when or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# The MFAIdentifier of a root console login by device kind: AWS's root example (mfa/...)
# and the serial shape of a root FIDO key in the IAM API reference (u2f/root/...).
MFA_DEVICES: dict[str, str] = {
    "totp": "arn:{partition}:iam::{account}:mfa/root-account-mfa-device",
    "u2f": "arn:{partition}:iam::{account}:u2f/root/security-key-EXAMPLE1234567890",
}


def _root_identity(account_id: str, partition: str, mfa: bool | None = None) -> dict[str, Any]:
    identity: dict[str, Any] = {
        "type": "Root",
        "principalId": account_id,
        "arn": f"arn:{partition}:iam::{account_id}:root",
        "accountId": account_id,
    }
    if mfa is not None:
        # A person signed in to the console as root: temporary keys from the console session.
        identity["accessKeyId"] = "ASIA" + uuid.uuid4().hex[:16].upper()
        identity["sessionContext"] = {
            "sessionIssuer": {},
            "webIdFederationData": {},
            "attributes": {"creationDate": _time(None), "mfaAuthenticated": "true" if mfa else "false"},
        }
    return identity


def make_record(
    kind: str,
    account_id: str,
    *,
    when: datetime | None = None,
    mfa: bool = True,
    mfa_kind: str = "totp",
    source_ip: str = "203.0.113.10",
    event_name: str | None = None,
    event_id: str | None = None,
    access_key_id: str | None = None,
    target_account_id: str | None = None,
    task_policy: str = "S3UnlockBucketPolicy",
    partition: str = DEFAULT_PARTITION,
) -> dict[str, Any]:
    """A CloudTrail record of `kind` (one of KINDS) in `account_id`.

    `root-temporary-key-call`: a Root record made with a temporary `ASIA` key outside the
    console (default event s3 `PutBucketPolicy`). A root GetSessionToken session and an
    sts:AssumeRoot session write exactly this; only an `assume-root` record issuing
    `access_key_id` tells them apart. `assume-root` and `primary-email-update` are calls by
    an IAM role of `account_id` (the management account) aimed at `target_account_id`.
    `mfa_kind` (one of MFA_DEVICES) is the device a console login with `mfa` names.
    `partition`: the ARNs' partition; the record is in its global region, where CloudTrail
    records sign-ins and IAM calls."""
    base: dict[str, Any] = {
        "eventVersion": "1.09",
        "eventTime": _time(when),
        "sourceIPAddress": source_ip,
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
        "requestParameters": None,
        "eventID": event_id or str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": True,
        "recipientAccountId": account_id,
        "eventCategory": "Management",
        "awsRegion": global_region(partition),
    }
    if kind in ("console-login", "console-login-failure"):
        ok = kind == "console-login"
        base.update(
            eventSource="signin.amazonaws.com",
            eventName="ConsoleLogin",
            userIdentity=_root_identity(account_id, partition),
            responseElements={"ConsoleLogin": "Success" if ok else "Failure"},
            additionalEventData={
                "LoginTo": "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true",
                "MobileVersion": "No",
                # AWS's own root example writes "YES"; IAM users get "Yes".
                "MFAUsed": "YES" if mfa else "No",
            },
        )
        if mfa:
            base["additionalEventData"]["MFAIdentifier"] = MFA_DEVICES[mfa_kind].format(partition=partition, account=account_id)
        if not ok:
            base["errorMessage"] = "Failed authentication"
        return base
    if kind == "password-recovery":
        base.update(
            eventSource="signin.amazonaws.com",
            eventName="PasswordRecoveryRequested",
            userIdentity=_root_identity(account_id, partition),
            responseElements={"PasswordRecoveryRequested": "Success"},
            additionalEventData={"MFAUsed": "No"},
        )
        return base
    if kind in ("iam-user-login", "iam-user-named-root-login"):
        name = "root" if kind == "iam-user-named-root-login" else "alice"
        base.update(
            eventSource="signin.amazonaws.com",
            eventName="ConsoleLogin",
            userIdentity={
                "type": "IAMUser",
                "principalId": "AIDACKCEVSQ6C2EXAMPLE",
                "arn": f"arn:{partition}:iam::{account_id}:user/{name}",
                "accountId": account_id,
                "userName": name,
            },
            responseElements={"ConsoleLogin": "Success"},
            additionalEventData={"MobileVersion": "No", "MFAUsed": "Yes" if mfa else "No"},
        )
        return base
    if kind == "api-call":
        base.update(
            eventType="AwsApiCall",
            eventSource="s3.amazonaws.com",
            eventName=event_name or "CreateBucket",
            userIdentity=_root_identity(account_id, partition, mfa),
            # A top-level field of the record (eventVersion 1.08+), never inside userIdentity.
            sessionCredentialFromConsole="true",
            requestParameters={"bucketName": "payments-archive", "Host": "payments-archive.s3.amazonaws.com"},
            responseElements=None,
            readOnly=False,
            requestID=uuid.uuid4().hex[:16].upper(),
        )
        return base
    if kind == "break-glass":
        # Deleting the root user's own access key: a root-only task.
        base.update(
            eventType="AwsApiCall",
            eventSource="iam.amazonaws.com",
            eventName=event_name or "DeleteAccessKey",
            userIdentity=_root_identity(account_id, partition, mfa),
            sessionCredentialFromConsole="true",
            requestParameters={"accessKeyId": f"AKIA{account_id}RK00"},
            responseElements=None,
            requestID=str(uuid.uuid4()),
        )
        return base
    if kind == "root-temporary-key-call":
        identity = _root_identity(account_id, partition)
        identity["accessKeyId"] = access_key_id or _temporary_key()
        identity["sessionContext"] = {"attributes": {"creationDate": _time(when), "mfaAuthenticated": "false"}}
        base.update(
            eventType="AwsApiCall",
            eventSource="s3.amazonaws.com",
            eventName=event_name or "PutBucketPolicy",
            userIdentity=identity,
            userAgent="aws-cli/2.22.0 md/Botocore#1.35.0",
            requestParameters={"bucketName": "payments-archive", "Host": "payments-archive.s3.amazonaws.com", "policy": ""},
            responseElements=None,
            readOnly=(event_name or "PutBucketPolicy").startswith(("Get", "List")),
            requestID=uuid.uuid4().hex[:16].upper(),
        )
        return base
    if kind in ("assume-root", "primary-email-update"):
        target = target_account_id or account_id
        base.update(eventType="AwsApiCall", userIdentity=_role_identity(account_id, when, partition), userAgent="aws-cli/2.22.0 md/Botocore#1.35.0",
                    requestID=str(uuid.uuid4()))
        if kind == "assume-root":
            issued = (when or datetime.now(timezone.utc)) + timedelta(seconds=900)
            base["userIdentity"]["sessionContext"]["assumedRoot"] = "true"  # where AWS's example puts it
            base.update(
                eventSource="sts.amazonaws.com",
                eventName="AssumeRoot",
                requestParameters={"targetPrincipal": target, "taskPolicyArn": {"arn": task_policy_arn(partition, task_policy)}},
                responseElements={"credentials": {
                    "accessKeyId": access_key_id or _temporary_key(),
                    "sessionToken": "<session token>",
                    # CloudTrail's own spelling of STS expirations, not ISO 8601.
                    "expiration": issued.astimezone(timezone.utc).strftime("%b %d, %Y, %I:%M:%S %p"),
                }},
                readOnly=True,
            )
        else:
            base.update(
                eventSource="account.amazonaws.com",
                eventName=event_name or "AcceptPrimaryEmailUpdate",
                requestParameters={"accountId": target, "primaryEmail": "HIDDEN_DUE_TO_SECURITY_REASONS",
                                   "otp": "HIDDEN_DUE_TO_SECURITY_REASONS"},
                responseElements={"status": "ACCEPTED"},
                readOnly=False,
            )
        return base
    if kind == "stop-logging":
        # Tampering by an IAM user (the record only: `inject --kind stop-trail` really stops one).
        return management_call_record(
            account_id, "cloudtrail.amazonaws.com", "StopLogging",
            {"name": f"arn:aws:cloudtrail:us-east-1:{account_id}:trail/management-events"}, when=when, source_ip=source_ip,
        )
    raise ValueError(f"unknown record kind {kind!r}; one of: {', '.join(KINDS)}")


def _temporary_key() -> str:
    return "ASIA" + uuid.uuid4().hex[:16].upper()


def _role_identity(account_id: str, when: datetime | None, partition: str) -> dict[str, Any]:
    """An administrator's role session in `account_id`."""
    return {
        "type": "AssumedRole",
        "principalId": "AROACKCEVSQ6C2EXAMPLE:admin",
        "arn": f"arn:{partition}:sts::{account_id}:assumed-role/RootAccessAdmin/admin",
        "accountId": account_id,
        "accessKeyId": _temporary_key(),
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": "AROACKCEVSQ6C2EXAMPLE",
                              "arn": f"arn:{partition}:iam::{account_id}:role/RootAccessAdmin", "accountId": account_id,
                              "userName": "RootAccessAdmin"},
            "webIdFederationData": {},
            "attributes": {"creationDate": _time(when), "mfaAuthenticated": "false"},
        },
    }


def eventbridge_envelope(record: dict[str, Any]) -> dict[str, Any]:
    """The event EventBridge puts on the default bus for a CloudTrail record."""
    signin = record.get("eventType") == "AwsConsoleSignIn"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS Console Sign In via CloudTrail" if signin else "AWS API Call via CloudTrail",
        "source": "aws.signin" if signin else "aws." + str(record.get("eventSource", "")).split(".")[0],
        "account": record.get("recipientAccountId"),
        "time": record.get("eventTime"),
        "region": record.get("awsRegion", "us-east-1"),
        "resources": [],
        "detail": record,
    }


def lookup_username(record: dict[str, Any]) -> str:
    """The `Username` CloudTrail LookupEvents reports for a record."""
    identity = record.get("userIdentity") or {}
    if identity.get("type") == "Root":
        return "root"
    if identity.get("userName"):
        return str(identity["userName"])
    arn = str(identity.get("arn", ""))
    return arn.rsplit("/", 1)[-1] if "/" in arn else ""


def caller_identity_record(
    caller: dict[str, Any], partition: str = "aws", when: datetime | None = None, role_id: str | None = None
) -> dict[str, Any]:
    """The CloudTrail record of an sts:GetCallerIdentity call, in the shape of a real one
    (tests/fixtures/canary/get-caller-identity.json): read-only, a management event,
    recorded in the region of the endpoint called. `caller` holds what the sandbox saw: arn,
    user_id, account, access_key_id, region, user_agent, source_ip, role_arn (a role session)."""
    account, region = str(caller["account"]), str(caller["region"])
    if caller.get("role_arn"):
        role_arn = str(caller["role_arn"]).replace("arn:aws:", f"arn:{partition}:", 1)
        role_name = role_arn.rsplit("/", 1)[-1]
        session = str(caller["arn"]).rsplit("/", 1)[-1]
        issuer_id = role_id or "AROA" + uuid.uuid5(uuid.NAMESPACE_URL, role_arn).hex[:17].upper()
        identity: dict[str, Any] = {
            "type": "AssumedRole",
            "principalId": f"{issuer_id}:{session}",
            "arn": f"arn:{partition}:sts::{account}:assumed-role/{role_name}/{session}",
            "accountId": account,
            "accessKeyId": caller["access_key_id"],
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": issuer_id, "arn": role_arn, "accountId": account, "userName": role_name},
                "webIdFederationData": {},
                "attributes": {"creationDate": _time(caller.get("session_created") or when), "mfaAuthenticated": "false"},
            },
        }
    else:
        # An IAM user's record (CloudTrail User Guide, "CloudTrail userIdentity element"):
        # its unique id (AIDA...), its ARN with the user's path, the access key it signed with.
        arn = str(caller["arn"])
        name = arn.rsplit("/", 1)[-1]
        if ":iam::" not in arn:  # moto's answer for a key no IAM user owns: arn:aws:sts::<account>:user/moto
            arn = f"arn:{partition}:iam::{account}:user/{name}"
        identity = {
            "type": "IAMUser",
            "principalId": caller["user_id"],
            "arn": arn,
            "accountId": account,
            "accessKeyId": caller["access_key_id"],
            "userName": name,
        }
    return {
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": _time(when),
        "eventSource": "sts.amazonaws.com",
        "eventName": "GetCallerIdentity",
        "awsRegion": region,
        "sourceIPAddress": caller.get("source_ip") or "127.0.0.1",
        "userAgent": caller.get("user_agent") or "aws-sdk",
        "requestParameters": None,
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": f"sts.{region}.amazonaws.com",
        },
    }


def management_call_record(
    account_id: str,
    event_source: str,
    event_name: str,
    request_parameters: dict[str, Any] | None,
    *,
    region: str = "us-east-1",
    user: str = "sandbox-admin",
    when: datetime | None = None,
    source_ip: str = "203.0.113.10",
    partition: str = "aws",
) -> dict[str, Any]:
    """A write management call by an IAM user of `account_id` (StopLogging, DisableRule,
    PurgeQueue, RemoveAccountFromOrganization, ...), in the shape CloudTrail writes it."""
    return {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDA" + uuid.uuid5(uuid.NAMESPACE_DNS, f"{account_id}/{user}").hex[:17].upper(),
            "arn": f"arn:{partition}:iam::{account_id}:user/{user}",
            "accountId": account_id,
            "accessKeyId": "AKIA" + uuid.uuid5(uuid.NAMESPACE_OID, f"{account_id}/{user}").hex[:16].upper(),
            "userName": user,
        },
        "eventTime": _time(when),
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": "aws-cli/2.22.0 md/Botocore#1.35.0",
        "requestParameters": request_parameters,
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account_id,
        "eventCategory": "Management",
    }
