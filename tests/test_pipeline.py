"""End to end with the real binaries: sandbox organization -> exporter -> Prometheus loading
`alerts/` -> Alertmanager loading `alerts/alertmanager.example.yml` -> a webhook receiver here.

Intervals are compressed (1 s scrape and evaluation, Alertmanager `group_wait: 0s`); the rules,
routes and receivers are the shipped ones. Each test gets a fresh sandbox, exporter, Prometheus
and Alertmanager (about 7 s of start-up: Prometheus scrapes a new target after ~5.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exporter import demo_stack
from exporter.demo_stack import DemoStack, WebhookReceiver
from exporter.sandbox import Sandbox

from .conftest import ROOT, running_exporter, sandbox_settings

ARTIFACTS = ROOT / "test-artifacts"
PAGER, TICKETS = "pager", "security-tickets"
DASHBOARDS = ROOT / "dashboards"


def _load_queries():
    import importlib.util

    spec = importlib.util.spec_from_file_location("aws_root_dashboard_queries_e2e", DASHBOARDS / "queries.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dashboard_queries()


@pytest.fixture(autouse=True)
def _binaries() -> None:
    assert demo_stack.available(), "prometheus and prometheus-alertmanager are not installed (make system-packages)"


@dataclass
class Pipeline:
    sandbox: Sandbox
    exporter: Any  # conftest.RunningExporter
    stack: DemoStack
    hooks: WebhookReceiver

    async def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
        """Poll `check` (without blocking the exporter's loop) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; notifications: "
                    f"{[(n.receiver, [a['labels'] for a in n.alerts]) for n in self.hooks.received()]}\n"
                    f"prometheus alerts: {await asyncio.to_thread(self.stack.alerts)}"
                )
            await asyncio.sleep(interval)

    async def query(self, expr: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.stack.query, expr)

    async def wait_for_rules_evaluated(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rules = await asyncio.to_thread(self.stack.rules_status)
            if all(r["health"] != "unknown" for r in rules):
                return
            assert time.monotonic() < deadline, rules
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def pipeline(sandbox: Sandbox, for_overrides: dict[str, str] | None = None, **settings: Any) -> AsyncIterator[Pipeline]:
    settings.setdefault("posture_interval_seconds", 600)
    async with running_exporter(sandbox_settings(sandbox, **settings)) as exporter:
        await exporter.wait_for_sweeps(1)
        with WebhookReceiver() as hooks:
            stack = DemoStack(
                exporter.url,
                webhook_url=hooks.url,
                scrape_interval="1s",
                evaluation_interval="1s",
                group_wait="0s",
                group_interval="1s",
                for_overrides=for_overrides,
            )
            await asyncio.to_thread(stack.start)
            try:
                await asyncio.to_thread(stack.wait_for_target_up)
                yield Pipeline(sandbox, exporter, stack, hooks)
            finally:
                await asyncio.to_thread(stack.stop)


def report(capsys: pytest.CaptureFixture, record_property: Callable[[str, Any], None], name: str, seconds: float) -> None:
    """Show a measured time in the test output (also with -q and capture on) and keep it."""
    line = f"time to alert ({name}): {seconds:.2f} s"
    record_property(name, round(seconds, 3))
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "time-to-alert.txt").open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")
    with capsys.disabled():
        print(f"\n[e2e] {line}", flush=True)


# -- posture ---------------------------------------------------------------------------------


async def test_posture_warning_reaches_only_the_tickets_receiver(sandbox, capsys, record_property) -> None:
    # AwsRootMfaDisabled waits 15 m in the shipped rules; here it fires at once.
    async with pipeline(sandbox, for_overrides={"AwsRootMfaDisabled": "0s"}) as p:
        # dev-sandbox's root has a password and no MFA in the scenario.
        _, alert = (await p.wait_for(
            "AwsRootMfaDisabled for 210000000003 at security-tickets",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootMfaDisabled", account_id="210000000003"),
        ))[0]
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["account_name"] == "dev-sandbox"
        assert alert["labels"]["ou_name"] == "Dev"
        assert alert["annotations"]["description"] == (
            "The root user of account 210000000003 (dev-sandbox) holds credentials but has no MFA device."
        )
        assert alert["annotations"]["runbook_url"].endswith("/alerts/runbook.md#awsrootmfadisabled")

        # A change while running: prod-payments loses its MFA device; the next sweep opens a ticket.
        assert not p.hooks.alerts(alertname="AwsRootMfaDisabled", account_id="210000000001")
        p.sandbox.root("210000000001").mfa_devices.clear()
        started = time.monotonic()
        await p.exporter.exporter.sweeper.sweep()
        note, alert = (await p.wait_for(
            "AwsRootMfaDisabled for 210000000001",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootMfaDisabled", account_id="210000000001"),
        ))[0]
        assert alert["labels"]["account_name"] == "prod-payments"
        report(capsys, record_property, "posture change to ticket", note.received_monotonic - started)

        # Nothing of this pages: the pager got no notification at all.
        await asyncio.sleep(2)
        assert p.hooks.received(PAGER) == []
        expected = {"210000000001", "210000000003", "210000000004", "210000000013"}
        assert {a["labels"]["account_id"] for _, a in p.hooks.alerts(alertname="AwsRootMfaDisabled")} == expected
        # Every rule of alerts/ evaluates without error against the real exporter.
        bad = [(r["name"], r.get("lastError")) for r in await asyncio.to_thread(p.stack.rules_status) if r["health"] != "ok"]
        assert bad == []


# -- dashboards ------------------------------------------------------------------------------

QUERIES = _load_queries()


async def wait_for_scrapes(p: Pipeline, count: int = 3, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    expr = f'count_over_time(up{{job="{demo_stack.JOB}"}}[1m]) >= {count}'
    while not (await p.query(expr))["data"]["result"]:
        assert time.monotonic() < deadline, f"fewer than {count} scrapes after {timeout}s"
        await asyncio.sleep(0.2)


async def test_every_dashboard_query_runs_on_prometheus_scraping_the_exporter(sandbox) -> None:
    # assume_root_audit: per-device MFA series come from sts:AssumeRoot audits.
    async with pipeline(sandbox, assume_root_audit=True) as p:
        await wait_for_scrapes(p)  # counters have a first sample in Prometheus
        # Something for the counters to increase by: another sweep, in which IAM throttles
        # prod-web (its collection fails, collector and API errors count up).
        p.sandbox.root("210000000002").throttle_iam = True
        await p.exporter.exporter.sweeper.sweep()
        await asyncio.sleep(2.5)  # scraped at 1 s
        await p.wait_for_rules_evaluated()
        errors, empty = [], []
        for uid, title, expr in QUERIES:
            result = await p.query(expr)
            if result.get("status") != "success":
                errors.append((uid, title, result.get("error")))
            elif not result["data"]["result"]:
                empty.append((uid, title, expr))
        assert errors == []
        assert empty == [], "\n".join(map(str, empty))
