"""Seed the scenario's service control policies into moto's Organizations backend.

The exporter then reads them over HTTP like any Organizations API: `ListRoots` shows the
`SERVICE_CONTROL_POLICY` type, `ListPolicies` / `DescribePolicy` the documents and
`ListTargetsForPolicy` the attachments (moto also attaches its `FullAWSAccess` to the
root, every OU and every account, as AWS does).
"""

from __future__ import annotations

from typing import Any

from exporter.sandbox.scenario import Scenario

SCP_TYPE = "SERVICE_CONTROL_POLICY"


def seed_scps(org: Any, scenario: Scenario, root_id: str, ou_ids: dict[str, str]) -> dict[str, str]:
    """Enable the SCP type (unless the scenario says not), create and attach every SCP.

    `org` is moto's OrganizationsBackend of the management account; `ou_ids` maps the OU
    paths already created to their ids. Returns {policy name: policy id}.
    """
    created: dict[str, str] = {}
    if scenario.organization.scp_enabled:
        org.enable_policy_type(RootId=root_id, PolicyType=SCP_TYPE)
    for policy in scenario.organization.scps:
        described = org.create_policy(
            Name=policy.name,
            Description=policy.description or policy.name,
            Type=SCP_TYPE,
            Content=policy.document(),
        )
        policy_id = described["Policy"]["PolicySummary"]["Id"]
        created[policy.name] = policy_id
        for target in policy.targets:
            org.attach_policy(PolicyId=policy_id, TargetId=_target_id(scenario, target, root_id, ou_ids))
    return created


def _target_id(scenario: Scenario, target: str, root_id: str, ou_ids: dict[str, str]) -> str:
    if target == "root":
        return root_id
    if target in ou_ids:
        return ou_ids[target]
    return scenario.account(target).id
