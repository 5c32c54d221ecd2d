"""Which accounts to collect: discovery in three modes, filters, and sharding."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from exporter.aws.client import Aws, AwsError
from exporter.aws.partitions import DEFAULT_PARTITION, arn_partition, global_region
from exporter.config.settings import AccountMode, Settings
from exporter.discovery.organization import OrganizationTree, email_domain, walk_organization

# Organizations' AccountState values whose accounts are not collected, and the skip reason
# each is counted under. A SUSPENDED, PENDING_CLOSURE or CLOSED account is on its way out
# and AWS blocks its use. PENDING_ACTIVATION is collected: the account exists and its root
# user exists, and an account that cannot be read yet shows as an error, never as compliant.
SKIPPED_STATES = {"SUSPENDED": "suspended", "PENDING_CLOSURE": "pending_closure", "CLOSED": "closed"}
SKIP_REASONS = ("suspended", "pending_closure", "closed", "filtered", "other_shard")


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
    # Names of the OUs from below the organization root down to the account's parent.
    ou_names: tuple[str, ...] = ()
    # Organizations' JoinedMethod (CREATED or INVITED) and JoinedTimestamp; empty / None
    # outside the organization account mode.
    joined_method: str = ""
    joined: datetime | None = None
    # The AWS partition of the account (aws, aws-us-gov, aws-cn): the organization's ARN in
    # `organization` mode, the role ARN in `roles` mode, the caller's ARN in `single` mode.
    partition: str = DEFAULT_PARTITION
    # The domain of the root user's email (Organizations `Account.Email`), lower-cased; the
    # address itself is personal data and is not kept. "" outside the organization mode.
    root_email_domain: str = ""


@dataclass(frozen=True, slots=True)
class SkippedAccount:
    """An account discovery found and does not collect, and why (one of SKIP_REASONS)."""

    account_id: str
    name: str
    reason: str


@dataclass(slots=True)
class Discovery:
    accounts: list[Account]
    discovered: int
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    # The same accounts named, in discovery order: an operator must be able to tell which ones.
    skipped_accounts: list[SkippedAccount] = field(default_factory=list)
    management_account_id: str | None = None
    # The tree as read for this discovery (organization mode): the SCP check reads it too.
    organization: OrganizationTree | None = None


def shard_of(account_id: str, shard_count: int) -> int:
    """A stable shard for an account: the same on every replica and every Python run."""
    digest = hashlib.sha256(account_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def role_arn(account_id: str, role_name: str, partition: str) -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"


async def discover(aws: Aws, settings: Settings) -> Discovery:
    if settings.account_mode is AccountMode.organization:
        found, not_collected, tree = await _organization_accounts(aws, settings)
        discovery = select(found, settings, not_collected=not_collected, management_account_id=tree.management_account_id)
        discovery.organization = tree
        return discovery
    if settings.account_mode is AccountMode.roles:
        found = [
            Account(account_id=arn.split(":")[4], name=arn.split(":")[4], role_arn=arn, partition=arn_partition(arn))
            for arn in settings.role_arns
        ]
    else:
        sts = await aws.client("sts")
        identity = await aws.call(sts, "GetCallerIdentity")
        found = [Account(account_id=identity["Account"], name=identity["Account"], partition=arn_partition(identity.get("Arn", "")))]
    return select(found, settings)


def select(
    found: Iterable[Account], settings: Settings, *, not_collected: Iterable[SkippedAccount] = (), management_account_id: str | None = None
) -> Discovery:
    """Apply include/exclude filters and this replica's shard; `not_collected` are the accounts skipped by state."""
    found = list(found)
    not_collected = list(not_collected)
    result = Discovery(accounts=[], discovered=len(found) + len(not_collected), management_account_id=management_account_id)
    for skipped in not_collected:
        result.skipped[skipped.reason] += 1
    result.skipped_accounts.extend(not_collected)
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
            result.skipped_accounts.append(SkippedAccount(account.account_id, account.name, "filtered"))
            continue
        if settings.shard_count > 1 and shard_of(account.account_id, settings.shard_count) != settings.shard_index:
            result.skipped["other_shard"] += 1
            result.skipped_accounts.append(SkippedAccount(account.account_id, account.name, "other_shard"))
            continue
        result.accounts.append(account)
    result.accounts.sort(key=lambda a: a.account_id)
    return result


async def _organization_accounts(aws: Aws, settings: Settings) -> tuple[list[Account], list[SkippedAccount], OrganizationTree]:
    tree = await walk_organization(aws, await aws.client("organizations"))
    if tree.partition != aws.partition:
        # Only a sandbox or an endpoint override can get this far (AWS refuses credentials
        # of another partition first), but a role ARN of the wrong partition must never be built.
        raise AwsError(
            "error",
            "organizations:DescribeOrganization",
            "PartitionMismatch",
            f"the organization is in the AWS partition {tree.partition} and region {aws.region} in {aws.partition}: "
            f"set region to a region of {tree.partition} (e.g. {global_region(tree.partition)})",
        )
    sts = await aws.client("sts")
    caller_account = (await aws.call(sts, "GetCallerIdentity"))["Account"]
    accounts: list[Account] = []
    not_collected: list[SkippedAccount] = []
    for parent_id, item in tree.accounts:
        account_id = item["Id"]
        reason = SKIPPED_STATES.get(_account_state(item))
        if reason is not None:
            not_collected.append(SkippedAccount(account_id, str(item.get("Name", account_id)), reason))
            continue
        path = tree.path(parent_id)
        accounts.append(
            Account(
                account_id=account_id,
                name=item.get("Name", account_id),
                ou_id=parent_id,
                ou_name=tree.name(parent_id),
                ou_path=path,
                management=account_id == tree.management_account_id,
                role_arn=None if account_id == caller_account else role_arn(account_id, settings.role_name, tree.partition),
                ou_names=tuple(tree.name(ou_id) for ou_id in path[1:]),
                joined_method=str(item.get("JoinedMethod", "")),
                joined=_utc(item.get("JoinedTimestamp")),
                partition=tree.partition,
                root_email_domain=email_domain(str(item.get("Email", ""))),
            )
        )
    return accounts, not_collected, tree


def _account_state(item: dict[str, Any]) -> str:
    """The account's State; from the retired Status only when State is missing (Status has no CLOSED)."""
    state = item.get("State")
    if state:
        return str(state)
    return str(item.get("Status", "ACTIVE"))


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
