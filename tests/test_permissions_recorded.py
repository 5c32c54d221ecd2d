"""The shipped IAM policies allow every AWS operation the exporter performs, and nothing else.

The representative workload calls every operation of every principal; what it records, as
IAM actions, must be exactly what deploy/iam/actions.json grants (less its `not_recorded`
permissions, each with its reason), so a grant the code no longer needs fails here.
tests/test_aws_permissions_files.py ties actions.json to the policies and README's table.

Every request is reported by a botocore `before-call` hook (exporter.aws.OPERATION_OBSERVERS)
with the principal that signs it: the exporter's own credentials (`exporter`), an assumed
member role (`member_role`) or an `sts:AssumeRoot` session (`assume_root_session`). Besides
this representative workload, conftest records the whole suite and fails the session on any
operation deploy/iam/actions.json does not allow for its principal.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from exporter.sandbox import MANAGEMENT_ACCOUNT_ID, Sandbox
from exporter.sandbox.records import make_record

from .test_monitoring_checks_sandbox import create_rule, create_trail
from .conftest import (
    IAM_ACTIONS_FILE,
    ROOT,
    OperationRecorder,
    disallowed_operations,
    iam_action,
    load_iam_actions,
    report_measurement,
    running_exporter,
    sample,
    sandbox_settings,
)

MEMBER = "210000000003"  # dev-sandbox: has the member role
ALLOWED_WRITES = {
    "iam:GenerateCredentialReport",
    "sqs:DeleteMessage",
    "sts:AssumeRole",
    "sts:AssumeRoot",
}
# Verbs of actions that only read (kms:Decrypt returns plaintext of a trail file, changes nothing).
READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Receive", "Decrypt")


def _policy_actions(path: Path) -> set[str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    statements = document["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    actions: set[str] = set()
    for statement in statements:
        assert "NotAction" not in statement, f"{path.name}: NotAction grants everything else"
        if statement.get("Effect") != "Allow":
            continue
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def _is_write(action: str) -> bool:
    return not action.split(":", 1)[1].startswith(READ_PREFIXES)


def test_policies_allow_no_write_beyond_the_four() -> None:
    files = sorted((ROOT / "deploy" / "iam").glob("*-policy.json"))
    assert {f.name for f in files} >= {"exporter-policy.json", "member-role-policy.json", "member-role-trust-policy.json"}
    granted = set().union(*(_policy_actions(f) for f in files))
    assert not [a for a in granted if "*" in a or "?" in a], "no wildcard actions"
    assert {a for a in granted if _is_write(a)} <= ALLOWED_WRITES
    # What AWS grants an AssumeRoot session (the audit task policy) is read-only too.
    session = load_iam_actions()["principals"]["assume_root_session"]["actions"]
    assert not [a for a in session if _is_write(a)]
    # The member role can change nothing but ask for a credential report.
    assert {a for a in _policy_actions(ROOT / "deploy/iam/member-role-policy.json") if _is_write(a)} == {"iam:GenerateCredentialReport"}


def test_comparison_flags_what_the_policies_do_not_allow() -> None:
    actions = load_iam_actions()
    recorded = [
        ("exporter", "organizations:ListAccountsForParent"),
        ("exporter", "sts:GetCallerIdentity"),  # needs no permission
        ("exporter", "sqs:DeleteMessageBatch"),  # authorized by sqs:DeleteMessage
        ("member_role", "iam:GetCredentialReport"),
        ("member_role", "sts:GetCallerIdentity"),
        ("assume_root_session", "iam:GetUser"),
    ]
    assert disallowed_operations(recorded, actions) == []
    bad = [
        ("member_role", "organizations:ListAccounts"),  # only the exporter's own role reads the organization
        ("assume_root_session", "iam:GenerateCredentialReport"),  # not in the audit task policy
        ("exporter", "iam:DeleteLoginProfile"),
        ("exporter", "sqs:SendMessage"),
        ("exporter", "sqs:ChangeMessageVisibilityBatch"),  # the exporter never returns a message early
        ("somebody", "iam:GetUser"),
    ]
    assert disallowed_operations(recorded + bad, actions) == [
        "assume_root_session: iam:GenerateCredentialReport",
        "exporter: iam:DeleteLoginProfile",
        "exporter: sqs:ChangeMessageVisibilityBatch (IAM action sqs:ChangeMessageVisibility)",
        "exporter: sqs:SendMessage",
        "member_role: organizations:ListAccounts",
        "somebody: iam:GetUser (unknown principal)",
    ]
    # One action removed from a copy of actions.json: the same green recording turns red.
    del actions["principals"]["exporter"]["actions"]["sqs:DeleteMessage"]
    assert disallowed_operations(recorded, actions) == ["exporter: sqs:DeleteMessageBatch (IAM action sqs:DeleteMessage)"]


def unused_grants(recorded: Iterable[tuple[str, str]], actions: Mapping[str, Any]) -> list[str]:
    """What actions.json grants a principal that no recorded call needed, as readable lines;
    `not_recorded` permissions (checked by AWS on another service's request) excepted."""
    used = {(principal, iam_action(operation)) for principal, operation in recorded}
    unused = []
    for name, principal in actions["principals"].items():
        for action in principal["actions"]:
            if (name, action) not in used and action not in principal.get("not_recorded", {}):
                unused.append(f"{name}: {action}")
    for name, principal in actions["principals"].items():
        for action in principal.get("not_recorded", {}):
            if (name, action) in used:
                unused.append(f"{name}: {action} is recorded: drop it from not_recorded")
    return sorted(unused)


def test_comparison_flags_grants_nothing_calls() -> None:
    actions = load_iam_actions()
    everything = [(name, action) for name, p in actions["principals"].items() for action in p["actions"] if action not in p.get("not_recorded", {})]
    assert unused_grants(everything, actions) == []
    # The batch operation the exporter calls stands for the IAM action that authorizes it.
    batch = [(p, "sqs:DeleteMessageBatch" if a == "sqs:DeleteMessage" else a) for p, a in everything]
    assert unused_grants(batch, actions) == []
    assert unused_grants([c for c in everything if c != ("exporter", "organizations:ListRoots")], actions) == ["exporter: organizations:ListRoots"]
    actions["principals"]["exporter"]["actions"]["organizations:ListAccounts"] = "always"
    assert unused_grants(everything, actions) == ["exporter: organizations:ListAccounts"]
    assert unused_grants(everything + [("exporter", "kms:Decrypt")], actions) == [
        "exporter: kms:Decrypt is recorded: drop it from not_recorded",
        "exporter: organizations:ListAccounts",
    ]


_CONFTEST = """
import os
from pathlib import Path

from tests.conftest import _PermissionsPlugin


def pytest_configure(config):
    config.pluginmanager.register(_PermissionsPlugin(Path(os.environ["ACTIONS_FILE"])), "permissions-under-test")
"""

_TEST = """
import asyncio

import pytest

from exporter.aws.client import Aws, AwsError


def test_delete_messages():
    async def run():
        async with Aws(endpoint_url="http://127.0.0.1:1", max_attempts=1, connect_timeout=1) as aws:
            sqs = await aws.client("sqs")
            with pytest.raises(AwsError):
                await aws.call(sqs, "DeleteMessageBatch", QueueUrl="http://127.0.0.1:1/123456789012/q",
                               Entries=[{"Id": "0", "ReceiptHandle": "r"}])

    asyncio.run(run())
"""


def test_an_operation_outside_the_policies_fails_a_green_session(tmp_path: Path) -> None:
    """End to end through pytest: the hook in a real client, the plugin, the exit status."""
    (tmp_path / "conftest.py").write_text(_CONFTEST)
    (tmp_path / "test_one.py").write_text(_TEST)
    actions = load_iam_actions()
    del actions["principals"]["exporter"]["actions"]["sqs:DeleteMessage"]
    broken = tmp_path / "actions-without-delete.json"
    broken.write_text(json.dumps(actions))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PYTHONPATH=str(ROOT), AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="not-real", AWS_DEFAULT_REGION="us-east-1")

    def run(actions_file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
            cwd=tmp_path, env=env | {"ACTIONS_FILE": str(actions_file)}, capture_output=True, text=True, timeout=120,
        )

    green = run(IAM_ACTIONS_FILE)
    assert green.returncode == 0, green.stdout + green.stderr
    assert "1 passed" in green.stdout and "all allowed" in green.stdout
    red = run(broken)
    assert red.returncode == 1, red.stdout + red.stderr
    assert "1 passed" in red.stdout, "the test itself passes; the permissions check fails the session"
    assert "exporter: sqs:DeleteMessageBatch (IAM action sqs:DeleteMessage)" in red.stdout


async def test_representative_workload_is_allowed(sandbox: Sandbox) -> None:
    recorder = OperationRecorder().start()
    try:
        # Posture, organization mode: member roles, credential reports, organization features,
        # and the service control policies that fence root.
        async with running_exporter(sandbox_settings(sandbox, scp_check=True)) as exporter:
            await exporter.wait_for_sweeps(1)
        # Posture through sts:AssumeRoot with the audit task policy.
        sandbox.reset()
        async with running_exporter(sandbox_settings(sandbox, assume_root_audit=True)) as exporter:
            await exporter.wait_for_sweeps(1)
        # Activity from all three sources.
        sandbox.reset()
        settings = sandbox_settings(
            sandbox,
            eventbridge_queue_url=sandbox.events_queue_url,
            s3_trail_queue_url=sandbox.trail_queue_url,
            sqs_wait_seconds=1,
            lookup_events_enabled=True,
            lookup_events_interval_seconds=5,
            include_account_ids=[MEMBER, "210000000001", MANAGEMENT_ACCOUNT_ID],
        )
        # The configuration checks read a trail and a forwarder rule in the member and the
        # exporter's own account (the sandbox seeds neither).
        for account in (MEMBER, MANAGEMENT_ACCOUNT_ID):
            create_trail(sandbox, account, "Trail")
            create_rule(sandbox, account)
        async with running_exporter(settings) as exporter:
            await exporter.wait_for_sweeps(1)
            async with asyncio.timeout(30):
                while exporter.state.monitoring_problems.get("checks") is None:
                    await asyncio.sleep(0.1)
            # The proof-of-sight canary in each account (the loop's own round may come later).
            await exporter.exporter.canary.round()
            sandbox.inject(make_record("console-login", MEMBER, mfa=True))
            async with asyncio.timeout(30):
                while True:
                    families = await exporter.metrics()
                    dupes = sum(s.value for s in families["aws_root_exporter_events_duplicate"].samples if s.name.endswith("_total"))
                    login = sample(families, "aws_root_console_logins_total", account_id=MEMBER, outcome="success", mfa="true", approved="false")
                    # Seen once and then again by the other two sources (all consumed and deleted).
                    if login == 1.0 and dupes >= 2 and exporter.state.api.requests["sqs:DeleteMessageBatch"] >= 2:
                        break
                    await asyncio.sleep(0.2)
    finally:
        recorder.stop()

    report_measurement("AWS operations of the representative workload (principal, operation, requests):")
    for line in recorder.lines():
        report_measurement("  " + line)
    assert disallowed_operations(recorder.seen, load_iam_actions()) == []
    # Nothing granted that the exporter did not call: policy, README table and code are one set.
    assert unused_grants(recorder.seen, load_iam_actions()) == []
    seen = set(recorder.seen)
    # The workload really covers every principal and source, each attributed correctly.
    assert {
        ("exporter", "organizations:DescribeOrganization"),
        ("exporter", "organizations:ListAccountsForParent"),
        ("exporter", "iam:ListOrganizationsFeatures"),
        ("exporter", "organizations:ListPolicies"),
        ("exporter", "organizations:DescribePolicy"),
        ("exporter", "organizations:ListTargetsForPolicy"),
        ("exporter", "sts:AssumeRole"),
        ("exporter", "sts:AssumeRoot"),
        ("exporter", "iam:GetCredentialReport"),
        ("exporter", "cloudtrail:LookupEvents"),
        ("exporter", "sqs:ReceiveMessage"),
        ("exporter", "sqs:DeleteMessageBatch"),
        ("exporter", "s3:GetObject"),
        ("member_role", "iam:GetCredentialReport"),
        ("member_role", "iam:GetAccountSummary"),
        ("member_role", "cloudtrail:LookupEvents"),
        ("member_role", "cloudtrail:DescribeTrails"),
        ("member_role", "cloudtrail:GetTrailStatus"),
        ("member_role", "cloudtrail:GetEventSelectors"),
        ("member_role", "events:DescribeRule"),
        ("member_role", "events:ListTargetsByRule"),
        ("exporter", "cloudtrail:DescribeTrails"),
        ("exporter", "events:ListTargetsByRule"),
        ("member_role", "sts:GetCallerIdentity"),  # the proof-of-sight canary
        ("assume_root_session", "iam:GetUser"),
        ("assume_root_session", "iam:ListMFADevices"),
    } <= seen
    assert {p for p, _ in seen} == {"exporter", "member_role", "assume_root_session"}
    # No principal does another's work: organization reads and assuming are the exporter's only
    # (the member role's one STS call is the canary, which asks STS who it is).
    assert not [op for p, op in seen if p != "exporter" and op.split(":")[0] in ("organizations", "sts", "sqs", "s3") and op != "sts:GetCallerIdentity"]
