"""Configuration reload (exporter/engine/reload.py): POST /-/reload and SIGHUP.

The exporter runs against the sandbox; the end-to-end test adds a break-glass window by a
reload while real Prometheus and Alertmanager watch, then a root login inside it must open a
ticket and page nobody.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporter.sandbox.records import make_record

from .conftest import ROOT, http_get, parse_metrics, reap, running_exporter, sample, sandbox_settings, stop_cleanly
from .test_pipeline import PAGER, TICKETS, pipeline

ACCOUNT = "210000000001"


def post(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers or {})
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


async def test_reload_needs_the_basic_auth_password(sandbox, tmp_path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: {bcrypt.hashpw(b'secret', bcrypt.gensalt(rounds=4)).decode()}\n")
    config = tmp_path / "config.yml"
    write_config(config, break_glass_windows=[])
    load = lambda: sandbox_settings(sandbox, config, web_config_file=web)  # noqa: E731
    async with running_exporter(load(), load) as exporter:
        write_config(config, break_glass_windows=[window()])
        assert (await asyncio.to_thread(post, exporter.url + "/-/reload"))[0] == 401
        assert exporter.exporter.settings.break_glass_windows == []
        auth = {"Authorization": "Basic " + base64.b64encode(b"prometheus:secret").decode()}
        assert await asyncio.to_thread(post, exporter.url + "/-/reload", auth) == (200, "reloaded; changed: break_glass_windows\n")


async def test_reload_is_post_only(sandbox) -> None:
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        status, headers, _ = await asyncio.to_thread(http_get, exporter.url + "/-/reload")
        assert (status, headers["Allow"]) == (405, "POST")
        # Without a configuration source (as in the library use), a reload says so and fails.
        status, body = await asyncio.to_thread(post, exporter.url + "/-/reload")
        assert status == 500 and "without a configuration source" in body
        status, _ = await asyncio.to_thread(post, exporter.url + "/metrics")
        assert status == 405


def test_serve_command_reloads_on_sighup(sandbox, tmp_path) -> None:
    """The real command line: `serve --config FILE`, a window added to the file, `kill -HUP`."""
    config = tmp_path / "config.yml"
    base = {"endpoint_url": sandbox.endpoint_url, "listen_address": "127.0.0.1:0", "lookup_events_enabled": False, "log_format": "json"}
    write_config(config, **base, break_glass_windows=[])
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--config", str(config)],
        stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            entry = json.loads(line)
            if entry.get("message") == "listening":
                url = entry["url"].removesuffix("/metrics")
                break
        assert url, "the exporter never logged 'listening'"

        def active() -> float | None:
            return sample(parse_metrics(http_get(url + "/metrics")[2].decode()), "aws_root_break_glass_window_active", account_id=ACCOUNT, ticket="CHG-8")

        assert active() is None
        write_config(config, **base, break_glass_windows=[window(ticket="CHG-8")])
        process.send_signal(signal.SIGHUP)
        for line in process.stderr:
            if json.loads(line).get("message") == "configuration reloaded":
                break
        assert active() == 1
        assert post(url + "/-/reload") == (200, "reloaded; changed: nothing\n")
        stop_cleanly(process)
    finally:
        reap(process)
