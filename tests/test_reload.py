"""Configuration reload (exporter/reload.py): POST /-/reload and SIGHUP.

The exporter runs against the sandbox; the end-to-end test adds a break-glass window by a
reload while real Prometheus and Alertmanager watch, then a root login inside it must open a
ticket and page nobody.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from exporter.sandbox.records import make_record

from .conftest import http_get, running_exporter, sample, sandbox_settings
from .test_pipeline import PAGER, TICKETS, pipeline

ACCOUNT = "210000000001"


def post(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def write_config(path: Path, **values: Any) -> None:
    path.write_text(yaml.safe_dump(values))


def window(account: str = ACCOUNT, ticket: str = "CHG-7", hours: float = 1) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"account_id": account, "start": (now - timedelta(hours=hours)).isoformat(), "end": (now + timedelta(hours=hours)).isoformat(), "ticket": ticket}


async def test_window_added_by_reload_stops_a_login_inside_it_from_paging(sandbox, tmp_path) -> None:
    config = tmp_path / "config.yml"
    write_config(config, break_glass_windows=[])
    async with pipeline(sandbox, config_file=config) as p:
        await p.wait_for_rules_evaluated()
        write_config(config, break_glass_windows=[window(ticket="CHG-7")])
        status, body = await asyncio.to_thread(post, p.exporter.url + "/-/reload")
        assert (status, body) == (200, "reloaded; changed: break_glass_windows\n")
        families = await p.exporter.metrics()
        assert sample(families, "aws_root_break_glass_window_active", account_id=ACCOUNT, ticket="CHG-7") == 1
        assert sample(families, "aws_root_exporter_config_last_reload_successful") == 1

        sandbox.inject(make_record("console-login", ACCOUNT, source_ip="198.51.100.45"))
        _, alert = (await p.wait_for(
            "AwsRootBreakGlassLogin at security-tickets",
            lambda: p.hooks.alerts(TICKETS, alertname="AwsRootBreakGlassLogin", account_id=ACCOUNT),
        ))[0]
        assert "Approved by: ticket CHG-7 (window until " in alert["annotations"]["description"]
        # A page would follow the same evaluation within a second (group_wait 0s).
        await asyncio.sleep(3)
        assert p.hooks.received(PAGER) == []
        assert p.hooks.alerts(alertname="AwsRootConsoleLogin") == []


async def test_bad_reload_keeps_the_running_windows_and_flips_the_metric(sandbox, tmp_path) -> None:
    config = tmp_path / "config.yml"
    write_config(config, break_glass_windows=[window(ticket="CHG-1")])
    load = lambda: sandbox_settings(sandbox, config)  # noqa: E731
    async with running_exporter(load(), load) as exporter:
        await exporter.wait_for_sweeps(1)
        before = await exporter.metrics()
        assert sample(before, "aws_root_exporter_config_last_reload_successful") == 1
        started_at = sample(before, "aws_root_exporter_config_last_reload_success_timestamp_seconds")
        assert started_at is not None and abs(started_at - time.time()) < 120

        # A window that ends before it starts: the whole file is refused.
        bad = window(ticket="CHG-2")
        bad["start"], bad["end"] = bad["end"], bad["start"]
        write_config(config, break_glass_windows=[window(ticket="CHG-1"), bad])
        status, body = await asyncio.to_thread(post, exporter.url + "/-/reload")
        assert status == 500
        assert body == "reload failed, the running configuration is unchanged: break_glass_windows.1: end must be after start\n"
        after = await exporter.metrics()
        assert sample(after, "aws_root_exporter_config_last_reload_successful") == 0
        assert sample(after, "aws_root_exporter_config_last_reload_success_timestamp_seconds") == started_at
        assert sample(after, "aws_root_break_glass_window_active", account_id=ACCOUNT, ticket="CHG-1") == 1
        assert sample(after, "aws_root_break_glass_window_active", account_id=ACCOUNT, ticket="CHG-2") is None
        assert [w.ticket for w in exporter.exporter.settings.break_glass_windows] == ["CHG-1"]

        # The classifier still approves with the running window.
        verdict = exporter.exporter.activity.take(make_record("console-login", ACCOUNT), "lookup_events")
        assert verdict is not None and verdict.approved

        # Fixed file, reloaded by SIGHUP as Prometheus is: the metric is 1 again and the time moves.
        write_config(config, break_glass_windows=[window(ticket="CHG-3")])
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(10):
            while exporter.exporter.reloader.successful is not True:
                await asyncio.sleep(0.02)
        fixed = await exporter.metrics()
        assert sample(fixed, "aws_root_exporter_config_last_reload_successful") == 1
        assert sample(fixed, "aws_root_exporter_config_last_reload_success_timestamp_seconds") > started_at
        assert sample(fixed, "aws_root_break_glass_window_active", account_id=ACCOUNT, ticket="CHG-3") == 1
        assert sample(fixed, "aws_root_break_glass_window_active", account_id=ACCOUNT, ticket="CHG-1") is None


async def test_restart_only_settings_are_reported_and_kept(sandbox, tmp_path) -> None:
    config = tmp_path / "config.yml"
    write_config(config, posture_interval_seconds=600)
    load = lambda: sandbox_settings(sandbox, config)  # noqa: E731
    async with running_exporter(load(), load) as exporter:
        await exporter.wait_for_sweeps(1)
        write_config(config, posture_interval_seconds=300, log_format="json", sqs_wait_seconds=5)
        status, body = await asyncio.to_thread(post, exporter.url + "/-/reload")
        assert (status, body) == (
            200,
            "reloaded; changed: posture_interval_seconds; needs a restart to change (running value kept): log_format, sqs_wait_seconds\n",
        )
        settings = exporter.exporter.settings
        assert (settings.posture_interval_seconds, settings.log_format.value, settings.sqs_wait_seconds) == (300, "text", 20)

        # A new file that is valid alone but not with a running restart-only value changes nothing.
        write_config(config, posture_interval_seconds=120, account_mode="roles", role_arns=["arn:aws:iam::210000000001:role/R"])
        status, body = await asyncio.to_thread(post, exporter.url + "/-/reload")
        assert status == 500
        assert "role_arns: is only used when account_mode is 'roles' (with the running value of account_mode)" in body
        assert settings.posture_interval_seconds == 300 and settings.role_arns == []


async def test_reload_is_post_only(sandbox) -> None:
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        status, headers, _ = await asyncio.to_thread(http_get, exporter.url + "/-/reload")
        assert (status, headers["Allow"]) == (405, "POST")
        # Without a configuration source (as in the library use), a reload says so and fails.
        status, body = await asyncio.to_thread(post, exporter.url + "/-/reload")
        assert status == 500 and "without a configuration source" in body
        status, _ = await asyncio.to_thread(post, exporter.url + "/metrics")
        assert status == 405
