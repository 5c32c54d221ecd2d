"""Which accounts to collect: discovery in three modes, filters, and sharding."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .aws import Aws
from .settings import AccountMode, Settings


# Organizations parents listed at the same time during discovery.
_WALK_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    name: str = ""
    ou_id: str = ""
    ou_name: str = ""
    # Ids of the organization root and every OU from the root down to the account's parent.
    ou_path: tuple[str, ...] = ()
    management: bool = False
    # None: the exporter's own credentials reach this account (its own account).
    role_arn: str | None = None


@dataclass(slots=True)
class Discovery:
    accounts: list[Account]
    discovered: int
    skipped: dict[str, int] = field(default_factory=lambda: {"suspended": 0, "filtered": 0, "other_shard": 0})
    management_account_id: str | None = None


def shard_of(account_id: str, shard_count: int) -> int:
    """A stable shard for an account: the same on every replica and every Python run."""
    digest = hashlib.sha256(account_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def role_arn(account_id: str, role_name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"


async def discover(aws: Aws, settings: Settings) -> Discovery:
    if settings.account_mode is AccountMode.organization:
        found, suspended, management = await _organization_accounts(aws, settings)
    elif settings.account_mode is AccountMode.roles:
        found = [
            Account(account_id=arn.split(":")[4], name=arn.split(":")[4], role_arn=arn) for arn in settings.role_arns
        ]
        suspended, management = 0, None
    else:
        sts = await aws.client("sts")
        identity = await aws.call(sts, "GetCallerIdentity")
        found = [Account(account_id=identity["Account"], name=identity["Account"])]
        suspended, management = 0, None
    return select(found, settings, suspended=suspended, management_account_id=management)


def select(found: Iterable[Account], settings: Settings, *, suspended: int = 0, management_account_id: str | None = None) -> Discovery:
    """Apply include/exclude filters and this replica's shard."""
    found = list(found)
    result = Discovery(accounts=[], discovered=len(found) + suspended, management_account_id=management_account_id)
    result.skipped["suspended"] = suspended
    include_ids = set(settings.include_account_ids)
    exclude_ids = set(settings.exclude_account_ids)
    include_ous = set(settings.include_ou_ids)
    exclude_ous = set(settings.exclude_ou_ids)
    for account in found:
        path = set(account.ou_path)
        if (
            (include_ids and account.account_id not in include_ids)
            or account.account_id in exclude_ids
            or (include_ous and not path & include_ous)
            or path & exclude_ous
        ):
            result.skipped["filtered"] += 1
            continue
        if settings.shard_count > 1 and shard_of(account.account_id, settings.shard_count) != settings.shard_index:
            result.skipped["other_shard"] += 1
            continue
        result.accounts.append(account)
    result.accounts.sort(key=lambda a: a.account_id)
    return result


async def _organization_accounts(aws: Aws, settings: Settings) -> tuple[list[Account], int, str]:
    """Walk the organization tree: two calls per OU instead of one `ListParents` per account."""
    org = await aws.client("organizations")
    sts = await aws.client("sts")
    organization = (await aws.call(org, "DescribeOrganization"))["Organization"]
    management_id = organization["MasterAccountId"]
    caller_account = (await aws.call(sts, "GetCallerIdentity"))["Account"]
    roots = await aws.paginate(org, "ListRoots", "Roots")
    accounts: list[Account] = []
    suspended = 0
    # (parent id, parent name, path of ids down to and including the parent)
    pending: list[tuple[str, str, tuple[str, ...]]] = [(root["Id"], root.get("Name", "Root"), (root["Id"],)) for root in roots]
    # The parents of one level are listed concurrently (a few at a time, Organizations throttles
    # early): with 20 accounts per page, a sequential walk of 10,000 accounts took 500 round trips.
    semaphore = asyncio.Semaphore(_WALK_CONCURRENCY)

    async def children(parent_id: str) -> tuple[list[Any], list[Any]]:
        async with semaphore:
            return await asyncio.gather(
                aws.paginate(org, "ListOrganizationalUnitsForParent", "OrganizationalUnits", ParentId=parent_id),
                aws.paginate(org, "ListAccountsForParent", "Accounts", ParentId=parent_id),
            )

    while pending:
        level, pending = pending, []
        listed = await asyncio.gather(*(children(parent_id) for parent_id, _, _ in level))
        found: list[tuple[str, str, tuple[str, ...], Any]] = []
        for (parent_id, parent_name, path), (ous, items) in zip(level, listed):
            pending.extend((ou["Id"], ou.get("Name", ou["Id"]), path + (ou["Id"],)) for ou in ous)
            found.extend((parent_id, parent_name, path, item) for item in items)
        for parent_id, parent_name, path, item in found:
            status = item.get("Status", "ACTIVE")
            state = item.get("State", status)
            if status != "ACTIVE" or state not in ("ACTIVE", None):
                suspended += 1
                continue
            account_id = item["Id"]
            accounts.append(
                Account(
                    account_id=account_id,
                    name=item.get("Name", account_id),
                    ou_id=parent_id,
                    ou_name=parent_name,
                    ou_path=path,
                    management=account_id == management_id,
                    role_arn=None if account_id == caller_account else role_arn(account_id, settings.role_name),
                )
            )
    return accounts, suspended, management_id
