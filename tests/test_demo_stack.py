"""exporter/sandbox/demo_stack.py without running the servers: the generated configurations are
valid for the real tools (promtool, amtool) and change only what they should."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from exporter.sandbox import demo_stack
from exporter.sandbox.demo_stack import ALERTMANAGER_EXAMPLE, DemoStack, alertmanager_config, prometheus_rules, rules_files

from .conftest import ROOT


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian: prometheus / prometheus-alertmanager)"
    return path


def routes(route: dict) -> list[dict]:
    out = [route]
    for child in route.get("routes", []):
        out.extend(routes(child))
    return out


def test_alertmanager_config_redirects_every_receiver_and_compresses_timings(tmp_path) -> None:
    example = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    config = alertmanager_config(webhook_url="http://127.0.0.1:4242/", group_wait="0s", group_interval="1s")
    urls = {r["name"]: [c["url"] for c in r["webhook_configs"]] for r in config["receivers"]}
    assert urls == {"pager": ["http://127.0.0.1:4242/pager"], "security-tickets": ["http://127.0.0.1:4242/security-tickets"]}
    # Timings: on the top route and where a route sets its own; nothing else changes.
    assert config["route"]["group_wait"] == "0s" and config["route"]["group_interval"] == "1s"
    for before, after in zip(routes(example["route"]), routes(config["route"])):
        assert set(before) == set(after)
        assert {k: v for k, v in before.items() if k not in ("group_wait", "group_interval", "routes")} == \
            {k: v for k, v in after.items() if k not in ("group_wait", "group_interval", "routes")}
    assert config["inhibit_rules"] == example["inhibit_rules"]
    explicit = alertmanager_config(webhook_url="http://127.0.0.1:1", receiver_urls={"pager": "http://127.0.0.1:2/page"})
    assert explicit["receivers"][0]["webhook_configs"][0]["url"] == "http://127.0.0.1:2/page"
    with pytest.raises(ValueError, match="no URL for receiver"):
        alertmanager_config()
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([tool("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_keep_everything_but_the_interval_and_chosen_for() -> None:
    source = rules_files()[0]
    shipped = yaml.safe_load(source.read_text())
    changed = prometheus_rules(source, "1s", {"AwsRootMfaDisabled": "0s"})
    for before, after in zip(shipped["groups"], changed["groups"]):
        assert after["interval"] == "1s"
        for r1, r2 in zip(before["rules"], after["rules"]):
            if r1.get("alert") == "AwsRootMfaDisabled":
                assert r2["for"] == "0s"
                r2 = {**r2, "for": r1["for"]}
            assert r1 == r2
    assert prometheus_rules(source) == shipped


def test_generated_prometheus_config_passes_promtool(tmp_path) -> None:
    stack = DemoStack("http://127.0.0.1:9784", webhook_url="http://127.0.0.1:1", for_overrides={"AwsRootMfaDisabled": "1s"}, workdir=tmp_path)
    stack.alertmanager_port = 9093
    stack.write_config()
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["job_name"] == "aws-root-exporter"
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:9784"]}]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"
    result = subprocess.run([tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_for_overrides_must_name_shipped_alerts(tmp_path) -> None:
    stack = DemoStack("http://127.0.0.1:9784", webhook_url="http://127.0.0.1:1", for_overrides={"AwsRootTypo": "0s"}, workdir=tmp_path)
    with pytest.raises(ValueError, match="AwsRootTypo"):
        stack.write_config()


def test_demo_goes_on_without_prometheus(monkeypatch) -> None:
    monkeypatch.setattr(demo_stack.shutil, "which", lambda name: None)
    assert not demo_stack.available()
    out = io.StringIO()
    assert demo_stack.start_demo("http://127.0.0.1:9784", out) is None
    assert "not installed" in out.getvalue()


def test_sandbox_command_with_no_prometheus_starts_only_the_sandbox() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "sandbox", "--web.listen-address", "127.0.0.1:0", "--no-prometheus"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C to stop." in line or not line:
                break
        assert any("Exporter metrics:" in line for line in lines), "".join(lines)
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not re.search(r"Prometheus alerts:|Alertmanager:", "".join(lines) + output)


def test_a_port_taken_after_it_was_chosen_means_another_try(monkeypatch) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    real = demo_stack._pick_port
    calls: list[int] = []

    def pick(preferred):
        calls.append(preferred)
        return port if len(calls) == 1 else real(None)  # the first choice is taken meanwhile

    monkeypatch.setattr(demo_stack, "_pick_port", pick)
    try:
        with DemoStack("http://127.0.0.1:9", webhook_url="http://127.0.0.1:1").start() as stack:
            assert stack.alertmanager_port != port
            assert demo_stack._ready(stack.alertmanager_url + "/-/ready")
            assert demo_stack._ready(stack.prometheus_url + "/-/ready")
            workdir = stack.workdir
        assert workdir is not None and not workdir.exists()
    finally:
        taken.close()
