"""A canary round is spread over part of the interval, so that its records do not arrive on
the EventBridge queue all at once ahead of a real root record (exporter/engine/canary.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from exporter.config.settings import load_settings
from exporter.discovery.accounts import Account
from exporter.engine import canary as canary_module
from exporter.engine.canary import CANARIES_PER_SECOND, CANARY_SPREAD, CanaryService
from exporter.engine.state import ExporterState, Snapshot
from exporter.monitoring.coverage import Coverage


class FakeAws:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def assume_role(self, role_arn: str) -> object:
        return object()

    async def caller_identity(self, credentials: object, region: str) -> str:
        self.calls.append((region, "GetCallerIdentity"))
        return "arn:aws:sts::111111111111:assumed-role/R/aws-root-exporter"


def service(accounts: int, interval: float = 300.0) -> tuple[CanaryService, FakeAws]:
    settings = load_settings(overrides={"canary_interval_seconds": interval, "monitored_regions": ["us-east-1", "eu-west-1"]})
    state = ExporterState(600)
    ids = [f"{n:012d}" for n in range(1, accounts + 1)]
    state.publish(Snapshot(accounts=tuple(Account(i, name=i, role_arn=f"arn:aws:iam::{i}:role/R") for i in ids)))
    aws = FakeAws()
    coverage = Coverage(("lookup_events",), settings.canary_bounds_seconds, settings.canary_interval_seconds, settings.role_session_name)
    return CanaryService(aws, settings, state, coverage), aws  # type: ignore[arg-type]


def test_the_spread_is_the_rate_or_most_of_the_interval_whichever_is_shorter() -> None:
    small, _ = service(10)
    assert small._spread() == 10 * 2 / CANARIES_PER_SECOND  # two regions per account
    large, _ = service(10_000)
    assert large._spread() == CANARY_SPREAD * 300.0


def test_a_round_starts_its_accounts_evenly_over_the_spread(monkeypatch) -> None:
    svc, aws = service(4)
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(canary_module.asyncio, "sleep", recorded)
    asyncio.run(svc.round(spread=8.0))
    # The first account at once, then one every spread / accounts seconds; every canary made.
    assert sorted(delays) == [2.0, 4.0, 6.0]
    assert len(aws.calls) == 4 * 2
    # A round called without a spread (tests, the benchmark) does not wait.
    delays.clear()
    asyncio.run(svc.round())
    assert delays == [] and len(aws.calls) == 16
