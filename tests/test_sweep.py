"""The posture sweep's own bookkeeping, without AWS: an AWS that refuses every call."""

from __future__ import annotations

from typing import Any

from exporter.aws.client import AwsError
from exporter.config.settings import load_settings
from exporter.engine.state import ExporterState
from exporter.engine.sweep import DISCOVERY, PostureSweeper


class _Unreachable:
    """Every client request fails as a network failure would."""

    async def client(self, service: str, *args: Any, **kwargs: Any) -> Any:
        raise AwsError("error", f"{service}:Connect", message="no route to host")


async def test_discovery_failing_before_any_success_with_sts_down_is_a_failing_collector() -> None:
    """No management account known and even sts:GetCallerIdentity failing: the failure is
    recorded under the empty account id, never lost in a crashed sweep."""
    state = ExporterState(600)
    sweeper = PostureSweeper(_Unreachable(), load_settings(None, {"account_mode": "organization"}), state)  # type: ignore[arg-type]
    snapshot = await sweeper.sweep()
    status = snapshot.status[("", DISCOVERY)]
    assert status.success is False and status.reason == "error"
    assert snapshot.accounts == () and state.collector_errors[("", DISCOVERY, "error")] == 1
