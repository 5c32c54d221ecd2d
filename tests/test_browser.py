"""The demo as a new user sees it, in a real browser (Debian `chromium`, headless).

`aws-root-exporter sandbox` (what `make demo` runs) starts the sandbox organization, the
exporter, and Prometheus + Alertmanager with the shipped rules. The test opens the
Prometheus alerts page it prints, injects a root console login with the command it prints
(`aws-root-exporter inject ...`), and waits until the page shows AwsRootConsoleLogin
firing. The screenshot is saved as test-artifacts/prometheus-alerts-root-login.png.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

from exporter import demo_stack

from .conftest import ROOT, report_measurement

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "prometheus-alerts-root-login.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-extensions", "--disable-sync",
    "--no-first-run", "--disable-component-update",
]


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is not installed (make system-packages / apt-get install chromium)"
    return path


def browse(url: str, *args: str, window: str = "1280,800") -> str:
    """Run headless Chromium once on `url`; stdout (the DOM with --dump-dom)."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}", *args, url],
            capture_output=True, text=True, timeout=90, check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def alert_rows(dom: str) -> dict[str, tuple[str, int]]:
    """{alert name: (row class, active count)} from the classic alerts page's DOM."""
    rows = re.findall(r'<tr class="alert (alert-\w+) alert_header">\s*<td>.*?<b>(\w+)</b>\s*\((\d+) active\)', dom, re.S)
    return {name: (cls, int(count)) for cls, name, count in rows}


class DemoProcess:
    """`aws-root-exporter sandbox` as a child process; its output collected by a thread."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "sandbox", "--web.listen-address", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output)
            if found:
                return found
            assert self.process.poll() is None, f"the demo exited ({self.process.returncode}):\n{self.output}"
            assert time.monotonic() < deadline, f"no {pattern!r} in the demo's output:\n{self.output}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _binaries() -> None:
    assert demo_stack.available(), "prometheus and prometheus-alertmanager are not installed (make system-packages)"
    chromium()


def test_demo_alerts_page_shows_the_root_login_alert_after_an_injection() -> None:
    demo = DemoProcess()
    children: list[int] = []
    try:
        alerts_url = demo.wait_for(r"Prometheus alerts:\s+(http://127\.0\.0\.1:\d+/classic/alerts)").group(1)
        alertmanager_url = demo.wait_for(r"Alertmanager:\s+(http://127\.0\.0\.1:\d+)").group(1)
        inject = demo.wait_for(r"(aws-root-exporter inject --control-url \S+ --account \d{12})").group(1)
        children = _children(demo.process.pid)
        assert len(children) >= 3, "sandbox, prometheus and alertmanager run as the demo's children"

        # The page lists the shipped rules; before any injection the root-login alert is quiet.
        deadline = time.monotonic() + 60
        while True:
            rows = alert_rows(browse(alerts_url, "--dump-dom"))
            if "AwsRootConsoleLogin" in rows and rows.get("AwsRootMfaDisabled", ("", 0))[1] > 0:
                break  # rules loaded and the exporter scraped (posture alerts pending)
            assert time.monotonic() < deadline, rows
            time.sleep(1)
        assert rows["AwsRootConsoleLogin"] == ("alert-success", 0)

        # What the demo tells the user to type.
        args = inject.split()[1:]
        result = subprocess.run(
            [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60, env=demo.env, cwd=ROOT, check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "injected console-login in 210000000003" in result.stdout
        injected = time.monotonic()

        while True:
            dom = browse(alerts_url, "--dump-dom")
            rows = alert_rows(dom)
            if rows.get("AwsRootConsoleLogin") == ("alert-danger", 1):
                break
            assert time.monotonic() - injected < 90, (rows, demo.output[-3000:])
            time.sleep(1)
        shown = time.monotonic() - injected
        text = html.unescape(dom)
        assert 'account_id="210000000003"' in text and 'account_name="dev-sandbox"' in text
        assert "signed in to the AWS console" in text  # the description, expanded on the page

        ARTIFACTS.mkdir(exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        browse(alerts_url, f"--screenshot={SCREENSHOT}", window="1280,1000")
        assert SCREENSHOT.is_file() and SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert SCREENSHOT.stat().st_size > 20_000

        # Alertmanager (no web UI in Debian's build) holds it, at the URL the demo printed.
        with urllib.request.urlopen(alertmanager_url + "/api/v2/alerts?filter=" + urllib.parse.quote('alertname="AwsRootConsoleLogin"'), timeout=10) as response:
            held = json.loads(response.read())
        assert [a["labels"]["account_id"] for a in held] == ["210000000003"]

        # The demo's console shows the page Alertmanager sent to the pager receiver.
        demo.wait_for(r"\[alert -> pager\] FIRING AwsRootConsoleLogin account 210000000003 \(dev-sandbox\)", timeout=30)
        report_measurement(f"demo: root login shown firing on the Prometheus alerts page {shown:.1f} s after `aws-root-exporter inject` (browser polled every ~1.5 s)")
    finally:
        status = demo.stop()
    assert status == 0, demo.output[-3000:]
    for child in children:  # Prometheus, Alertmanager and the sandbox stop with the demo
        assert not _alive(child), child
