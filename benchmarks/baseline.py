"""The baseline: the same per-account calls as a cron script would make them, with boto3.

Per account: AssumeRole, GetAccountSummary, GetCredentialReport, ListVirtualMFADevices and
the security alternate contact (GetAlternateContact), the reads of the exporter's cold sweep.

Sequential, one account after another, a fresh client per account (the usual
`boto3.client("iam", aws_access_key_id=...)` after `sts.assume_role`), the organization
listed with `ListAccounts`. No concurrency, no caching: what the exporter is compared with.
"""

from __future__ import annotations

import resource
import time

import boto3
from botocore.config import Config


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sequential_sweep(endpoint_url: str, role_name: str = "AwsRootExporterReadOnly", region: str = "us-east-1") -> dict:
    """One full posture pass over the organization; returns wall and CPU seconds and counts."""
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    session = boto3.session.Session(aws_access_key_id="AKIDBASELINE00000000", aws_secret_access_key="secret", region_name=region)
    wall, cpu = time.monotonic(), _cpu()
    org = session.client("organizations", endpoint_url=endpoint_url, config=config)
    sts = session.client("sts", endpoint_url=endpoint_url, config=config)
    # The security alternate contact, read as the exporter reads it: by the management account,
    # a member with AccountId, its own account without.
    account_api = session.client("account", endpoint_url=endpoint_url, config=config)
    management = sts.get_caller_identity()["Account"]
    accounts = [a["Id"] for page in org.get_paginator("list_accounts").paginate() for a in page["Accounts"] if a["Status"] == "ACTIVE"]
    collected = 0
    for account_id in accounts:
        if account_id == management:
            iam = session.client("iam", endpoint_url=endpoint_url, config=config)
        else:
            creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/{role_name}", RoleSessionName="cron")["Credentials"]
            iam = boto3.client(
                "iam",
                region_name=region,
                endpoint_url=endpoint_url,
                config=config,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
        summary = iam.get_account_summary()["SummaryMap"]
        report = iam.get_credential_report()["Content"]
        devices = iam.list_virtual_mfa_devices(AssignmentStatus="Assigned")["VirtualMFADevices"]
        own = {} if account_id == management else {"AccountId": account_id}
        try:
            contact = account_api.get_alternate_contact(AlternateContactType="SECURITY", **own)["AlternateContact"]
        except account_api.exceptions.ResourceNotFoundException:
            contact = None
        if "AccountMFAEnabled" in summary and b"<root_account>" in report and isinstance(devices, list) and contact is not None:
            collected += 1
    return {"wall": time.monotonic() - wall, "cpu": _cpu() - cpu, "accounts": len(accounts), "collected": collected}


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline")
    parser.add_argument("--endpoint-url", required=True)
    args = parser.parse_args()
    print(json.dumps(sequential_sweep(args.endpoint_url)), flush=True)


if __name__ == "__main__":
    main()
