"""The organization tree, read once per sweep: discovery and the SCP check both use it.

Two calls per parent (`ListOrganizationalUnitsForParent`, `ListAccountsForParent`), one
level of the tree at a time, a few parents at once: `DescribeOrganization` + `ListRoots` +
2 × (OUs + 1) calls for the whole organization. `ListAccounts` + `ListParents` per account
would cost a call per account, and organizations hold many more accounts than OUs. Before
this module, discovery and the SCP check each walked the tree: the SCP check's walk was
`2 + 2 × (OUs + 1)` calls per sweep more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.aws.client import Aws
from exporter.aws.partitions import arn_partition

# Organizations parents listed at the same time. Organizations throttles early; with 20
# accounts per page, a sequential walk of 10,000 accounts took 500 round trips.
WALK_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class OrganizationTree:
    """What one walk read, as AWS answered it."""

    management_account_id: str
    # The partition of the organization's ARN (aws, aws-us-gov, aws-cn).
    partition: str
    # `ListRoots` items (Id, Name, PolicyTypes); an organization has one root.
    roots: tuple[Mapping[str, Any], ...]
    # OU id -> parent id (an OU or a root), and OU id -> name.
    ou_parents: Mapping[str, str]
    ou_names: Mapping[str, str]
    # (parent id, `ListAccountsForParent` item), in the order of the walk: level by level.
    # An item carries the root user's `Email` (botocore `organizations` model, `Account`
    # shape): personal data, read only through `email_domain`.
    accounts: tuple[tuple[str, Mapping[str, Any]], ...]

    def path(self, parent_id: str) -> tuple[str, ...]:
        """Ids from the root down to and including `parent_id`."""
        chain = [parent_id]
        while chain[-1] in self.ou_parents and len(chain) <= len(self.ou_parents):
            chain.append(self.ou_parents[chain[-1]])
        return tuple(reversed(chain))

    def name(self, parent_id: str) -> str:
        if parent_id in self.ou_names:
            return self.ou_names[parent_id]
        for root in self.roots:
            if root["Id"] == parent_id:
                return str(root.get("Name", "Root"))
        return parent_id

    @property
    def account_parents(self) -> dict[str, str]:
        return {item["Id"]: parent for parent, item in self.accounts}


def email_domain(email: str) -> str:
    """The domain of a root email, lower-cased; "" when the address has none."""
    _, at, domain = email.rpartition("@")
    return domain.strip().lower() if at else ""


async def walk_organization(aws: Aws, org: Any) -> OrganizationTree:
    """Walk the tree with `org`, an `organizations` client (management account or delegated administrator)."""
    organization = (await aws.call(org, "DescribeOrganization"))["Organization"]
    arn = organization.get("Arn", "")
    roots = tuple(await aws.paginate(org, "ListRoots", "Roots"))
    semaphore = asyncio.Semaphore(WALK_CONCURRENCY)

    async def children(parent_id: str) -> tuple[list[Any], list[Any]]:
        async with semaphore:
            return await asyncio.gather(
                aws.paginate(org, "ListOrganizationalUnitsForParent", "OrganizationalUnits", ParentId=parent_id),
                aws.paginate(org, "ListAccountsForParent", "Accounts", ParentId=parent_id),
            )

    ou_parents: dict[str, str] = {}
    ou_names: dict[str, str] = {}
    accounts: list[tuple[str, Mapping[str, Any]]] = []
    level = [root["Id"] for root in roots]
    while level:
        listed = await asyncio.gather(*(children(parent_id) for parent_id in level))
        next_level: list[str] = []
        for parent_id, (ous, items) in zip(level, listed):
            for ou in ous:
                if ou["Id"] not in ou_parents:  # a tree has no cycles; a bad answer must not loop
                    ou_parents[ou["Id"]] = parent_id
                    ou_names[ou["Id"]] = ou.get("Name", ou["Id"])
                    next_level.append(ou["Id"])
            accounts.extend((parent_id, item) for item in items)
        level = next_level
    return OrganizationTree(
        management_account_id=organization["MasterAccountId"],
        partition=arn_partition(arn),
        roots=roots,
        ou_parents=ou_parents,
        ou_names=ou_names,
        accounts=tuple(accounts),
    )
