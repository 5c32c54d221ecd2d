"""Read what the SCP root-fence check needs from AWS Organizations, once per sweep.

The caller owns the aiobotocore `organizations` client (management account or delegated
administrator, us-east-1); every call goes through `Aws.call` / `Aws.paginate`, so it is
counted in `aws_root_exporter_aws_requests_total` and a failure is an `AwsError` with a fixed
reason. Calls per sweep, with O OUs and P SCPs, no extra pages:
`4 + 2*O + max(1, ceil(P/20)) + 2*P` (docs/scp.md explains each row). Every policy is
described once per sweep, never per account.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from exporter.aws.client import Aws, AwsError
from exporter.scp.evaluate import OrgTree, ScpInputs, ScpPolicy

__all__ = ["SCP_TYPE", "collect_scp_inputs"]

SCP_TYPE = "SERVICE_CONTROL_POLICY"
# The largest MaxResults Organizations accepts on its list calls.
_PAGE_SIZE = 20

T = TypeVar("T")


async def _all_items(aws: Aws, client: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
    return await aws.paginate(client, operation, key, **params, PaginationConfig={"PageSize": _PAGE_SIZE})


def _error_text(exc: AwsError) -> str:
    operation = exc.operation.rpartition(":")[2]  # "organizations:DescribePolicy" -> "DescribePolicy"
    return f"{operation}: {exc.code or exc.reason}"


async def collect_scp_inputs(aws: Aws, org_client: Any, *, concurrency: int = 4) -> ScpInputs:
    """Organization tree, SCPs, their targets and the SCP type status, in one sweep.

    A policy whose `DescribePolicy` or `ListTargetsForPolicy` fails is recorded in
    `ScpInputs.unreadable` (content None / targets missing), not raised; any other failure
    raises (an `AwsError` for a failed call), and the caller counts the SCP sweep as failed. When the SCP type is not
    enabled on the root, no policy is read (none is enforced).
    """
    limit = asyncio.Semaphore(max(1, concurrency))

    async def bounded(factory: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await factory()

    organization = (await aws.call(org_client, "DescribeOrganization"))["Organization"]
    management_account_id = organization.get("MasterAccountId")
    arn = organization.get("Arn", "")
    partition = arn.split(":")[1] if arn.count(":") >= 2 else "aws"

    roots = (await aws.call(org_client, "ListRoots")).get("Roots", [])
    if not roots:
        raise AwsError("invalid_response", "organizations:ListRoots", message="no root: is this an organization's management account?")
    root = roots[0]
    root_id = root["Id"]
    # PENDING_ENABLE / PENDING_DISABLE count as not enabled: enforcement is in flux.
    scp_enabled = any(
        t.get("Type") == SCP_TYPE and t.get("Status") == "ENABLED" for t in root.get("PolicyTypes", [])
    )

    ou_parents, account_parents = await _walk_tree(aws, org_client, root_id, bounded)
    tree = OrgTree(
        root_id=root_id,
        ou_parents=ou_parents,
        account_parents=account_parents,
        management_account_id=management_account_id,
        partition=partition,
    )
    if not scp_enabled:
        return ScpInputs(org=tree, policies=(), targets={}, scp_enabled=False)

    summaries = await _all_items(aws, org_client, "ListPolicies", "Policies", Filter=SCP_TYPE)
    unreadable: dict[str, str] = {}

    async def read(summary: dict[str, Any]) -> tuple[ScpPolicy, frozenset[str] | None]:
        pid = summary["Id"]
        content: str | None = None
        attached: frozenset[str] | None = None
        try:
            described = await bounded(lambda: aws.call(org_client, "DescribePolicy", PolicyId=pid))
            content = described["Policy"]["Content"]
        except AwsError as exc:
            unreadable[pid] = _error_text(exc)
        try:
            rows = await bounded(lambda: _all_items(aws, org_client, "ListTargetsForPolicy", "Targets", PolicyId=pid))
            attached = frozenset(row["TargetId"] for row in rows)
        except AwsError as exc:
            unreadable[pid] = "; ".join(filter(None, [unreadable.get(pid), _error_text(exc)]))
        policy = ScpPolicy(
            policy_id=pid,
            name=summary.get("Name", ""),
            content=content,
            aws_managed=bool(summary.get("AwsManaged", False)),
        )
        return policy, attached

    read_back = await asyncio.gather(*(read(s) for s in summaries))
    return ScpInputs(
        org=tree,
        policies=tuple(policy for policy, _ in read_back),
        targets={policy.policy_id: attached for policy, attached in read_back if attached is not None},
        scp_enabled=True,
        unreadable=unreadable,
    )


async def _walk_tree(
    aws: Aws, client: Any, root_id: str, bounded: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
) -> tuple[dict[str, str], dict[str, str]]:
    """Every OU's and every account's parent, one level of the tree at a time.

    `ListOrganizationalUnitsForParent` + `ListAccountsForParent` per parent costs
    2 * (OUs + 1) calls; `ListAccounts` + `ListParents` per account would cost one call per
    account, and organizations hold many more accounts than OUs.
    """

    async def children(parent: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        ous = await bounded(
            lambda: _all_items(aws, client, "ListOrganizationalUnitsForParent", "OrganizationalUnits", ParentId=parent)
        )
        accounts = await bounded(lambda: _all_items(aws, client, "ListAccountsForParent", "Accounts", ParentId=parent))
        return parent, ous, accounts

    ou_parents: dict[str, str] = {}
    account_parents: dict[str, str] = {}
    level = [root_id]
    while level:
        next_level: list[str] = []
        for parent, ous, accounts in await asyncio.gather(*(children(p) for p in level)):
            for ou in ous:
                if ou["Id"] not in ou_parents:
                    ou_parents[ou["Id"]] = parent
                    next_level.append(ou["Id"])
            for account in accounts:
                account_parents[account["Id"]] = parent
        level = next_level
    return ou_parents, account_parents
