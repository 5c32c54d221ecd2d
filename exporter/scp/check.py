"""The SCP root-fence check as one collector of the posture sweep.

Once per posture sweep, in `organization` mode, every SCP and its targets are read
(`collect_scp_inputs`: each policy once, never per account) and evaluated against the
organization tree that discovery walked (`evaluate_inputs`). The engine runs it like every
collector: the result is published in the sweep's `Snapshot` under `Snapshot.scp`, with a
collector status under `(management account id, "scp")`; a failed check is counted and
logged, keeps the previous result, and never stops the sweep.

A scrape renders `exporter.metrics.scp.snapshot_scp_families(snapshot)`: the fence of the
accounts the snapshot collects (filters and shards apply as for posture), nothing more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.aws.client import Aws
from exporter.config.settings import Settings
from exporter.discovery.organization import OrganizationTree
from exporter.scp.collect import collect_scp_inputs
from exporter.scp.evaluate import FenceResult, FenceState, evaluate_inputs

log = logging.getLogger(__name__)

SCP = "scp"
# An account the last successful check did not see (it joined or moved after the check):
# its fence is not known, which is never the same as fenced.
CODE_NOT_EVALUATED = "not_evaluated"


@dataclass(frozen=True, slots=True)
class ScpResult:
    """One evaluation of the root fence of every account in the organization."""

    scp_enabled: bool
    fences: Mapping[str, FenceResult] = field(default_factory=lambda: MappingProxyType({}))
    # Names of the SCPs read (policy id -> name), for the audit and the logs.
    policy_names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Policies whose content or targets could not be read (policy id -> error).
    unreadable: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    checked_at: float = 0.0

    def fence(self, account_id: str) -> FenceResult:
        result = self.fences.get(account_id)
        if result is not None:
            return result
        return FenceResult(
            FenceState.unknown,
            code=CODE_NOT_EVALUATED,
            reason="the account was not in the organization tree at the last successful SCP check",
        )


async def collect_scp(aws: Aws, settings: Settings, organization: OrganizationTree, previous: ScpResult | None) -> ScpResult:
    """Read and evaluate every account's fence; raises when the check cannot be made."""
    org = await aws.client("organizations")
    inputs = await collect_scp_inputs(aws, org, organization)
    fences = evaluate_inputs(inputs, sensitive_actions=settings.scp_sensitive_actions or None)
    if inputs.unreadable:
        log.warning(
            "SCPs that could not be read: accounts they may apply to are reported unknown",
            extra={"policies": dict(inputs.unreadable)},
        )
    _log_lost_fences(previous, fences)
    return ScpResult(
        scp_enabled=inputs.scp_enabled,
        fences=MappingProxyType(dict(fences)),
        policy_names=MappingProxyType({p.policy_id: p.name for p in inputs.policies}),
        unreadable=MappingProxyType(dict(inputs.unreadable)),
        checked_at=time.time(),
    )


def _log_lost_fences(before: ScpResult | None, fences: Mapping[str, FenceResult]) -> None:
    """One warning per account whose root was fenced at the last check and is not now."""
    if before is None:
        return
    for account_id, now in sorted(fences.items()):
        was = before.fences.get(account_id)
        if was is not None and was.state is FenceState.fenced and now.state is not FenceState.fenced:
            log.warning(
                "SCP root fence lost",
                extra={
                    "account_id": account_id,
                    "state": now.state.value,
                    "code": now.code,
                    "was_fenced_by": ", ".join(was.policy_ids),
                    "reason": now.reason,
                },
            )


def fence_report(result: ScpResult | None, account_id: str) -> dict[str, object] | None:
    """The fence of one account as plain data (audit JSON); None when no check ran."""
    if result is None:
        return None
    fence = result.fence(account_id)
    return {
        "state": fence.state.value,
        "code": fence.code,
        "policy_ids": list(fence.policy_ids),
        "policy_names": [result.policy_names.get(pid, "") for pid in fence.policy_ids],
        "exceptions": list(fence.exceptions),
        "assumed_root_exempt": fence.assumed_root_exempt,
        "conditional_policy_ids": list(fence.conditional_policy_ids),
        "reason": fence.reason,
    }
