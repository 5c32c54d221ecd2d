"""Read what the SCP root-fence check needs from AWS Organizations, once per sweep.

The caller owns the aiobotocore `organizations` client (management account or delegated
administrator, us-east-1); every call goes through `Aws.call` / `Aws.paginate`, so it is
counted in `aws_root_exporter_aws_requests_total` and a failure is an `AwsError` with a fixed
reason. The organization tree comes from discovery's walk (`exporter.discovery.organization`);
calls per sweep here, with P SCPs and no extra pages: `max(1, ceil(P/20)) + 2*P`
(docs/scp.md explains each row). Every policy is described once per sweep, never per account.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from exporter.aws.client import Aws, AwsError
from exporter.discovery.organization import OrganizationTree
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


async def collect_scp_inputs(aws: Aws, org_client: Any, organization: OrganizationTree, *, concurrency: int = 4) -> ScpInputs:
    """SCPs, their targets and the SCP type status of the organization that discovery walked.

    A policy whose `DescribePolicy` or `ListTargetsForPolicy` fails is recorded in
    `ScpInputs.unreadable` (content None / targets missing), not raised; any other failure
    raises (an `AwsError` for a failed call), and the caller counts the SCP sweep as failed. When the SCP type is not
    enabled on the root, no policy is read (none is enforced).
    """
    limit = asyncio.Semaphore(max(1, concurrency))

    async def bounded(factory: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await factory()

    if not organization.roots:
        raise AwsError("invalid_response", "organizations:ListRoots", message="no root: is this an organization's management account?")
    root = organization.roots[0]
    # PENDING_ENABLE / PENDING_DISABLE count as not enabled: enforcement is in flux.
    scp_enabled = any(
        t.get("Type") == SCP_TYPE and t.get("Status") == "ENABLED" for t in root.get("PolicyTypes", [])
    )
    tree = OrgTree(
        root_id=root["Id"],
        ou_parents=organization.ou_parents,
        account_parents=organization.account_parents,
        management_account_id=organization.management_account_id,
        partition=organization.partition,
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
