"""walk_organization + collect_scp_inputs against moto in server mode, then evaluate (exporter/scp/collect.py).

The organization is built with boto3 over real HTTP; the collector reads it with aiobotocore
(in-process `mock_aws` does not work with aiobotocore). Every API call the collector makes
is counted through a botocore event hook.
"""

from __future__ import annotations

import json
import logging
import math
import types
import urllib.request
from collections import Counter
from pathlib import Path

import boto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config
from moto.server import ThreadedMotoServer

from exporter.aws.client import Aws
from exporter.scp.evaluate import FenceState, evaluate_inputs
from exporter.discovery.organization import walk_organization
from exporter.scp.collect import collect_scp_inputs

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCP = "SERVICE_CONTROL_POLICY"
CREDENTIALS = dict(aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def endpoint():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def orgs(endpoint):
    """A boto3 Organizations client on a freshly reset moto."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()
    return boto3.client(
        "organizations",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": 1}),
        **CREDENTIALS,
    )


class Calls:
    """Counts the API calls an aiobotocore client makes; can make chosen calls fail."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.fail: dict[str, set[str]] = {}  # operation -> PolicyIds that answer AccessDenied

    def counted(self, model, **_):
        self.count[model.name] += 1

    def inject(self, model, params, **_):
        doomed = self.fail.get(model.name, set())
        body = json.loads(params.get("body") or b"{}")
        if body.get("PolicyId") in doomed:
            http = types.SimpleNamespace(status_code=400, headers={}, content=b"")
            parsed = {
                "Error": {"Code": "AccessDeniedException", "Message": "injected by the test"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            return http, parsed
        return None

    @property
    def total(self) -> int:
        return sum(self.count.values())


async def collect(endpoint: str, calls: Calls | None = None):
    calls = calls or Calls()
    session = get_session()
    async with session.create_client(
        "organizations",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=AioConfig(retries={"max_attempts": 1}),
        **CREDENTIALS,
    ) as client:
        # before-parameter-build fires once per API call (each page included), also for
        # the calls the test answers itself in before-call.
        client.meta.events.register("before-parameter-build.organizations", calls.counted)
        client.meta.events.register("before-call.organizations", calls.inject)
        aws = Aws()  # only its call/paginate wrappers are used: the client is the test's
        inputs = await collect_scp_inputs(aws, client, await walk_organization(aws, client))
    # Every call went through Aws, so the exporter's request counter saw each one.
    assert sum(aws.stats.requests.values()) == calls.total
    for operation, count in calls.count.items():
        assert aws.stats.requests[f"organizations:{operation}"] == count
    return inputs, calls


class Sandbox:
    """management -> root -> prod -> eu -> web ; root -> dev ; one account per place."""

    def __init__(self, orgs, *, enable_scp: bool = True) -> None:
        self.orgs = orgs
        self.management = orgs.create_organization(FeatureSet="ALL")["Organization"]["MasterAccountId"]
        self.root = orgs.list_roots()["Roots"][0]["Id"]
        if enable_scp:
            orgs.enable_policy_type(RootId=self.root, PolicyType=SCP)
        self.prod = self.ou("prod", self.root)
        self.eu = self.ou("eu", self.prod)
        self.web = self.ou("web", self.eu)
        self.dev = self.ou("dev", self.root)
        self.ous = [self.prod, self.eu, self.web, self.dev]
        self.acct_root = self.account("at-root")
        self.acct_prod = self.account("prod-app", self.prod)
        self.acct_web = self.account("web-app", self.web)
        self.acct_dev = self.account("dev-app", self.dev)

    def ou(self, name: str, parent: str) -> str:
        return self.orgs.create_organizational_unit(ParentId=parent, Name=name)["OrganizationalUnit"]["Id"]

    def account(self, name: str, parent: str | None = None) -> str:
        status = self.orgs.create_account(AccountName=name, Email=f"{name}@example.com")
        account_id = status["CreateAccountStatus"]["AccountId"]
        if parent:
            self.orgs.move_account(AccountId=account_id, SourceParentId=self.root, DestinationParentId=parent)
        return account_id

    def policy(self, name: str, content: str | dict) -> str:
        if isinstance(content, dict):
            content = json.dumps(content)
        created = self.orgs.create_policy(Name=name, Description=name, Type=SCP, Content=content)
        return created["Policy"]["PolicySummary"]["Id"]

    def attach(self, policy_id: str, *targets: str) -> None:
        for target in targets:
            self.orgs.attach_policy(PolicyId=policy_id, TargetId=target)


FENCE = (DOCS / "root-fence-scp.json").read_text()
WRONG_KEY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"StringLike": {"aws:userid": "*"}},
        }
    ],
}
NOT_ACTION = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "NotAction": ["iam:EnableMFADevice", "s3:DeleteBucketPolicy"],
            "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
        }
    ],
}


def expected_calls(ous: int, policies: int) -> int:
    """docs/scp.md: 4 + 2*O + max(1, ceil(P/20)) + 2*P, with no extra pages."""
    return 4 + 2 * ous + max(1, math.ceil(policies / 20)) + 2 * policies


async def test_inheritance_through_nested_ous(orgs, endpoint):
    box = Sandbox(orgs)
    fence = box.policy("DenyRootUser", FENCE)
    wrong = box.policy("DenyByUserId", WRONG_KEY)
    not_action = box.policy("DenyRootExceptTasks", NOT_ACTION)
    box.attach(fence, box.prod)  # two OUs above the web account
    box.attach(wrong, box.root)
    box.attach(not_action, box.acct_dev)

    inputs, calls = await collect(endpoint)
    results = evaluate_inputs(inputs)

    assert inputs.scp_enabled
    assert inputs.org.management_account_id == box.management
    assert inputs.org.root_id == box.root
    assert inputs.org.account_parents[box.acct_web] == box.web
    assert inputs.org.path(box.acct_web) == [box.acct_web, box.web, box.eu, box.prod, box.root]
    assert {p.policy_id for p in inputs.policies} == {"p-FullAWSAccess", fence, wrong, not_action}
    assert next(p for p in inputs.policies if p.policy_id == "p-FullAWSAccess").aws_managed
    assert inputs.targets[fence] == {box.prod}
    assert inputs.unreadable == {}

    assert results[box.management].state is FenceState.not_applicable
    assert results[box.acct_web].state is FenceState.fenced
    assert results[box.acct_web].policy_ids == (fence,)
    assert results[box.acct_prod].state is FenceState.fenced
    assert results[box.acct_dev].state is FenceState.fenced
    assert results[box.acct_dev].exceptions == ("iam:EnableMFADevice", "s3:DeleteBucketPolicy")
    assert results[box.acct_root].state is FenceState.not_fenced
    assert results[box.acct_root].conditional_policy_ids == (wrong,)  # aws:userid is no fence

    policies = len(inputs.policies)
    assert calls.count["DescribePolicy"] == policies == 4
    assert calls.count["ListTargetsForPolicy"] == policies
    assert calls.count["ListPolicies"] == 1
    assert calls.count["ListOrganizationalUnitsForParent"] == len(box.ous) + 1
    assert calls.count["ListAccountsForParent"] == len(box.ous) + 1
    assert calls.count["DescribeOrganization"] == calls.count["ListRoots"] == 1
    assert calls.total == expected_calls(len(box.ous), policies)


async def test_detached_between_two_collections(orgs, endpoint):
    box = Sandbox(orgs)
    fence = box.policy("DenyRootUser", FENCE)
    box.attach(fence, box.prod)

    first, _ = await collect(endpoint)
    assert evaluate_inputs(first)[box.acct_web].state is FenceState.fenced

    orgs.detach_policy(PolicyId=fence, TargetId=box.prod)
    second, calls = await collect(endpoint)
    result = evaluate_inputs(second)[box.acct_web]
    assert result.state is FenceState.not_fenced
    assert result.code == "no_fence"
    assert second.targets[fence] == frozenset()
    assert calls.count["DescribePolicy"] == 2  # FullAWSAccess and the fence, once each


async def test_fence_at_root_reaches_every_member(orgs, endpoint):
    box = Sandbox(orgs)
    box.attach(box.policy("DenyRootUser", FENCE), box.root)
    results = evaluate_inputs((await collect(endpoint))[0])
    members = {a: r.state for a, r in results.items() if a != box.management}
    assert set(members) == {box.acct_root, box.acct_prod, box.acct_web, box.acct_dev}
    assert set(members.values()) == {FenceState.fenced}


async def test_unreadable_policy_is_recorded_not_fatal(orgs, endpoint):
    box = Sandbox(orgs)
    fence = box.policy("DenyRootUser", FENCE)
    hidden = box.policy("Hidden", FENCE)
    box.attach(fence, box.dev)
    box.attach(hidden, box.prod)
    calls = Calls()
    calls.fail["DescribePolicy"] = {hidden}

    inputs, calls = await collect(endpoint, calls)
    results = evaluate_inputs(inputs)

    assert inputs.unreadable == {hidden: "DescribePolicy: AccessDeniedException"}
    assert next(p for p in inputs.policies if p.policy_id == hidden).content is None
    assert results[box.acct_web].state is FenceState.unknown  # never reported fenced
    assert results[box.acct_dev].state is FenceState.fenced  # readable fence still counts
    assert results[box.acct_root].state is FenceState.not_fenced  # hidden is not on its path
    assert calls.count["DescribePolicy"] == len(inputs.policies)


async def test_unreadable_targets_make_a_fence_unknown(orgs, endpoint):
    box = Sandbox(orgs)
    fence = box.policy("DenyRootUser", FENCE)
    box.attach(fence, box.dev)
    calls = Calls()
    calls.fail["ListTargetsForPolicy"] = {fence}

    inputs, _ = await collect(endpoint, calls)
    results = evaluate_inputs(inputs)

    assert fence not in inputs.targets
    assert inputs.unreadable[fence] == "ListTargetsForPolicy: AccessDeniedException"
    members = {r.state for a, r in results.items() if a != box.management}
    assert members == {FenceState.unknown}


async def test_scp_type_disabled(orgs, endpoint):
    box = Sandbox(orgs, enable_scp=False)
    inputs, calls = await collect(endpoint)
    results = evaluate_inputs(inputs)
    assert not inputs.scp_enabled
    assert calls.count["ListPolicies"] == calls.count["DescribePolicy"] == 0
    assert calls.total == 4 + 2 * len(box.ous)
    assert {r.code for a, r in results.items() if a != box.management} == {"scp_disabled"}


async def test_scp_type_disabled_after_being_enabled(orgs, endpoint):
    box = Sandbox(orgs)
    box.attach(box.policy("DenyRootUser", FENCE), box.root)
    orgs.disable_policy_type(RootId=box.root, PolicyType=SCP)
    inputs, _ = await collect(endpoint)
    assert not inputs.scp_enabled
    assert evaluate_inputs(inputs)[box.acct_web].state is FenceState.not_fenced


async def test_pagination_of_accounts_and_policies(orgs, endpoint):
    box = Sandbox(orgs)
    extra_accounts = [box.account(f"bulk-{i}", box.eu) for i in range(23)]
    extra_policies = [box.policy(f"Noise{i}", WRONG_KEY) for i in range(20)]
    fence = box.policy("DenyRootUser", FENCE)
    box.attach(fence, box.eu)
    for pid in extra_policies[:3]:
        box.attach(pid, box.eu)

    inputs, calls = await collect(endpoint)
    results = evaluate_inputs(inputs)

    assert all(results[a].state is FenceState.fenced for a in extra_accounts)
    assert results[box.acct_web].state is FenceState.fenced
    policies = len(inputs.policies)
    assert policies == 22  # FullAWSAccess + 20 + the fence
    assert calls.count["DescribePolicy"] == policies
    assert calls.count["ListPolicies"] == 2
    assert calls.count["ListAccountsForParent"] == len(box.ous) + 1 + 1  # eu takes two pages
    assert calls.total == expected_calls(len(box.ous), policies) + 1
