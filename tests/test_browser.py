"""The demo as a new user sees it, in a real browser (Debian `chromium`, headless).

`aws-root-exporter sandbox` (what `make demo` runs) starts the sandbox organization, the
exporter, and Prometheus + Alertmanager with the shipped rules. The test opens the
Prometheus alerts page it prints, injects a root console login with the command it prints
(`aws-root-exporter inject ...`), and waits until the page shows AwsRootConsoleLogin
firing; then, like a user, it shows only firing alerts, opens the alert with its
annotations, checks the visible text and saves a screenshot as
test-artifacts/prometheus-alerts-root-login.png.
"""

from __future__ import annotations

import base64
import contextlib
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
from pathlib import Path

import pytest

from exporter.sandbox import demo_stack

from .conftest import ROOT, child_pids, report_measurement

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


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4, JSON
    messages ended by NUL): to click on a page before the screenshot, with no extra package."""

    def __init__(self, window: str = "1280,1000") -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def child() -> None:
            a, b = os.dup(to_chrome), os.dup(from_chrome)  # neither is 3 or 4 (both open)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.process = subprocess.Popen(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={window}",
             "--remote-debugging-pipe", "about:blank"],
            preexec_fn=child, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._id = 0
        self.session: str | None = None

    def send(self, method: str, timeout: float = 30, **params: object) -> dict:
        self._id += 1
        message: dict = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            assert time.monotonic() < deadline, f"{method}: no answer from chromium"
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk

    def open(self, url: str, ready_js: str, timeout: float = 30) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate(f"document.readyState === 'complete' && !!({ready_js})"):
                    return
            except RuntimeError:
                pass  # about:blank's context goes away with the navigation
            assert time.monotonic() < deadline, f"{url} did not load"
            time.sleep(0.1)

    def evaluate(self, expression: str) -> object:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text"))
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """The whole page, not only the window."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        width = int(self.evaluate("document.documentElement.clientWidth"))
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)
        shutil.rmtree(self.profile, ignore_errors=True)


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
        children = child_pids(demo.process.pid)
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

        # What a user does on the page: show only firing alerts, open the alert, show its
        # annotations; then the rendered text (only what is visible) and a screenshot.
        ARTIFACTS.mkdir(exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        browser = DevTools()
        try:
            browser.open(alerts_url, "document.querySelector('#alertFilters')")
            browser.evaluate(
                "document.querySelector('#inactiveAlerts').click();"
                "document.querySelector('#pendingAlerts').click();"
                "document.querySelectorAll('tr.alert-danger.alert_header').forEach(e => e.click());"
                "document.querySelector('button.show-annotations, div.show-annotations').click();"
            )
            visible = str(browser.evaluate("document.body.innerText"))
            browser.screenshot(SCREENSHOT)
        finally:
            browser.close()
        assert "AwsRootConsoleLogin (1 active)" in visible
        assert 'account_id="210000000003"' in visible and 'account_name="dev-sandbox"' in visible
        assert "FIRING" in visible.upper()
        assert "The root user of account 210000000003 (dev-sandbox) signed in to the AWS console" in visible
        assert "MFA used: true" in visible
        assert "AwsRootMfaDisabled" not in visible  # pending alerts hidden by the filter
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
