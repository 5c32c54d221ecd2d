"""The SCP root fence of every collected account, as metric families."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.engine.state import Snapshot
from exporter.metrics.textformat import Family, gauge
from exporter.scp.evaluate import FenceResult, FenceState


# The states whose 0 is read: AwsRootScpFenceLost (fenced was 1, is 0 now) and the member
# count (not_applicable == 0). A 0 of not_fenced or unknown was read by no rule or panel and
# cost two series per account, 1.5 MB of /metrics at 10,000 accounts (issue 21's budget).
_ZERO_KEPT = (FenceState.fenced, FenceState.not_applicable)


def scp_metric_families(
    results: Mapping[str, FenceResult], scp_enabled: bool
) -> list[Family]:
    """Metric families for the SCP root fence, built from one evaluation.

    # HELP aws_root_scp_fence_state 1 for the current SCP root-fence state of the account ...
    # TYPE aws_root_scp_fence_state gauge
    aws_root_scp_fence_state{account_id="111111111111",state="fenced"} 1.0
    aws_root_scp_fence_state{account_id="111111111111",state="not_applicable"} 0.0
    aws_root_scp_fence_state{account_id="222222222222",state="fenced"} 0.0
    aws_root_scp_fence_state{account_id="222222222222",state="not_fenced"} 1.0
    aws_root_scp_fence_state{account_id="222222222222",state="not_applicable"} 0.0
    aws_root_scp_policy_type_enabled 1.0
    aws_root_scp_fence_info{account_id="111111111111",policy_id="p-abcd1234"} 1.0
    """
    fence = gauge(
        "aws_root_scp_fence_state",
        "1 for the current SCP root-fence state of the account (fenced, not_fenced, "
        "not_applicable, unknown); fenced and not_applicable are 0 otherwise, the other states "
        "have no series. Refreshed every posture sweep.",
        labels=["account_id", "state"],
    )
    enabled = gauge(
        "aws_root_scp_policy_type_enabled",
        "1 when the SERVICE_CONTROL_POLICY type is enabled on the organization root. Refreshed every posture sweep.",
    )
    info = gauge(
        "aws_root_scp_fence_info",
        "Always 1; policy_id is the first SCP fencing the account's root (only for fenced accounts).",
        labels=["account_id", "policy_id"],
    )
    for account_id in sorted(results):
        result = results[account_id]
        for state in FenceState:
            if result.state is state or state in _ZERO_KEPT:
                fence.add_metric([account_id, state.value], 1.0 if result.state is state else 0.0)
        # No series for an unfenced account: an empty policy_id said nothing a series of
        # aws_root_scp_fence_state does not, and cost one series per account (issue 16).
        if result.state is FenceState.fenced and result.policy_ids:
            info.add_metric([account_id, result.policy_ids[0]], 1.0)
    enabled.add_metric([], 1.0 if scp_enabled else 0.0)
    return [fence, enabled, info]


def snapshot_scp_families(snapshot: Snapshot) -> list[Family]:
    """The SCP fence families (`scp_metric_families`, sample there) for the accounts of
    `snapshot`; none before the first result."""
    result = snapshot.scp
    if result is None:
        return []
    fences = {account.account_id: result.fence(account.account_id) for account in snapshot.accounts}
    return scp_metric_families(fences, result.scp_enabled)
