"""Real Prometheus and Alertmanager on 127.0.0.1, loading the shipped `alerts/`.

Used by the demo (`aws-root-exporter sandbox` starts them when the Debian packages
`prometheus` and `prometheus-alertmanager` are installed) and by the end-to-end tests:

    with WebhookReceiver() as hooks, DemoStack(exporter_url, webhook_url=hooks.url).start() as stack:
        stack.wait_for_target_up()
        ... hooks.alerts("pager") ...

Prometheus scrapes the exporter as job `aws-root-exporter` (the job the rules select) and
loads `alerts/*.rules.yml`; Alertmanager loads `alerts/alertmanager.example.yml` with every
receiver's webhook URL pointed at `webhook_url + "/" + receiver name`. Intervals can be
compressed: the scrape and evaluation intervals (the rule groups' own `interval` is
replaced), Alertmanager's `group_wait` / `group_interval`, and the `for` of chosen alerts.
Everything listens on loopback; files and TSDB data live in a temporary directory removed
on `stop()`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import yaml

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the alertmanager server binary
JOB = "aws-root-exporter"  # the job alerts/config.py's JOB_SELECTOR selects

ALERTS_DIR = Path(__file__).resolve().parents[2] / "alerts"  # a source checkout / editable install
ALERTMANAGER_EXAMPLE = ALERTS_DIR / "alertmanager.example.yml"

# The demo: fast enough to watch an alert fire within seconds of an injected root login.
DEMO_SETTINGS: dict[str, Any] = {
    "scrape_interval": "2s",
    "evaluation_interval": "2s",
    "group_wait": "0s",
    "group_interval": "10s",
}
DEMO_PROMETHEUS_PORT = 9090
DEMO_ALERTMANAGER_PORT = 9093


class StackError(RuntimeError):
    """Prometheus or Alertmanager did not start (the message ends with its log)."""


def rules_files(directory: Path = ALERTS_DIR) -> list[Path]:
    return sorted(directory.glob("*.rules.yml"))


def available() -> bool:
    """True when both binaries are installed and the shipped alert files are present."""
    return bool(
        shutil.which(PROMETHEUS) and shutil.which(ALERTMANAGER) and ALERTMANAGER_EXAMPLE.is_file() and rules_files()
    )


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port(preferred: int | None) -> int:
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


# -- configuration ---------------------------------------------------------------------------


def prometheus_rules(
    source: Path, evaluation_interval: str | None = None, for_overrides: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A shipped rules file with the group interval and chosen alerts' `for` replaced."""
    doc = yaml.safe_load(source.read_text())
    for group in doc["groups"]:
        if evaluation_interval:
            group["interval"] = evaluation_interval
        for rule in group["rules"]:
            name = rule.get("alert")
            if name and for_overrides and name in for_overrides:
                rule["for"] = for_overrides[name]
    return doc


def prometheus_config(
    exporter_url: str,
    rule_paths: Sequence[Path],
    alertmanager_address: str,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> dict[str, Any]:
    """prometheus.yml: scrape the exporter as the rules' job, send alerts to Alertmanager."""
    url = urllib.parse.urlsplit(exporter_url)
    path = url.path.rstrip("/")
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(p) for p in rule_paths],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_address]}]}]},
        "scrape_configs": [
            {
                "job_name": JOB,
                "scheme": url.scheme or "http",
                "metrics_path": (path if path.endswith("/metrics") else path + "/metrics"),
                "scrape_timeout": scrape_interval,
                "static_configs": [{"targets": [url.netloc]}],
            }
        ],
    }


def alertmanager_config(
    source: Path = ALERTMANAGER_EXAMPLE,
    webhook_url: str | None = None,
    receiver_urls: Mapping[str, str] | None = None,
    group_wait: str | None = None,
    group_interval: str | None = None,
    repeat_interval: str | None = None,
) -> dict[str, Any]:
    """The example config with its receivers' webhook URLs replaced and timings compressed.

    A receiver's URL is `receiver_urls[name]`, else `webhook_url + "/" + name`; a receiver
    left with the example's URL is an error (its notifications would go nowhere known).
    `group_wait` and friends replace the value on the top route and on every route that sets
    its own."""
    doc = yaml.safe_load(source.read_text())
    for receiver in doc["receivers"]:
        name = receiver["name"]
        configs = receiver.get("webhook_configs") or []
        if not configs:
            raise ValueError(f"receiver {name!r} has no webhook_configs to redirect")
        if receiver_urls and name in receiver_urls:
            url = receiver_urls[name]
        elif webhook_url:
            url = webhook_url.rstrip("/") + "/" + name
        else:
            raise ValueError(f"no URL for receiver {name!r}")
        for config in configs:
            config["url"] = url

    def retime(route: dict[str, Any], top: bool) -> None:
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval), ("repeat_interval", repeat_interval)):
            if value is not None and (top or key in route):
                route[key] = value
        for child in route.get("routes", []) or []:
            retime(child, False)

    retime(doc["route"], True)
    return doc


# -- the stack -------------------------------------------------------------------------------


class DemoStack:
    """Prometheus + Alertmanager as child processes on loopback; `start()` waits until ready."""

    def __init__(
        self,
        exporter_url: str,
        *,
        webhook_url: str | None = None,
        receiver_urls: Mapping[str, str] | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        group_wait: str | None = "0s",
        group_interval: str | None = None,
        repeat_interval: str | None = None,
        for_overrides: Mapping[str, str] | None = None,
        prometheus_port: int | None = None,
        alertmanager_port: int | None = None,
        rules: Sequence[Path] | None = None,
        alertmanager_example: Path = ALERTMANAGER_EXAMPLE,
        workdir: Path | None = None,
    ) -> None:
        self.exporter_url = exporter_url.rstrip("/")
        self.webhook_url = webhook_url
        self.receiver_urls = dict(receiver_urls or {})
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.for_overrides = dict(for_overrides or {})
        self.preferred_ports = (prometheus_port, alertmanager_port)
        self.rules = list(rules) if rules is not None else rules_files()
        self.alertmanager_example = alertmanager_example
        self._own_workdir = workdir is None
        self.workdir = workdir
        self.prometheus_port = 0
        self.alertmanager_port = 0
        self._processes: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, TextIO] = {}

    # URLs
    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def alerts_page_url(self) -> str:
        """Prometheus's alerts page (Debian's build has only the classic UI)."""
        return self.prometheus_url + "/classic/alerts"

    # lifecycle
    def write_config(self) -> None:
        assert self.workdir is not None
        if not self.rules:
            raise StackError(f"no alerts/*.rules.yml found in {ALERTS_DIR}")
        names = {r.get("alert") for p in self.rules for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]}
        unknown = set(self.for_overrides) - names
        if unknown:
            raise ValueError(f"for_overrides names unknown alerts: {', '.join(sorted(unknown))}")
        rule_paths = []
        for source in self.rules:
            target = self.workdir / source.name
            target.write_text(yaml.safe_dump(prometheus_rules(source, self.evaluation_interval, self.for_overrides), sort_keys=False))
            rule_paths.append(target)
        (self.workdir / "prometheus.yml").write_text(
            yaml.safe_dump(
                prometheus_config(
                    self.exporter_url,
                    rule_paths,
                    f"127.0.0.1:{self.alertmanager_port}",
                    self.scrape_interval,
                    self.evaluation_interval,
                ),
                sort_keys=False,
            )
        )
        (self.workdir / "alertmanager.yml").write_text(
            yaml.safe_dump(
                alertmanager_config(
                    self.alertmanager_example,
                    self.webhook_url,
                    self.receiver_urls,
                    self.group_wait,
                    self.group_interval,
                    self.repeat_interval,
                ),
                sort_keys=False,
            )
        )

    def start(self, timeout: float = 60, attempts: int = 3) -> DemoStack:
        """Start Alertmanager, then Prometheus, and wait for both `/-/ready`. A port taken
        between choosing and binding it (by another program) means another try on other ports."""
        if not available():
            raise StackError(f"{PROMETHEUS} and {ALERTMANAGER} must be installed (Debian packages prometheus, prometheus-alertmanager)")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="aws-root-demo-stack-"))
        try:
            for attempt in range(attempts):
                preferred = self.preferred_ports if attempt == 0 else (None, None)
                self.alertmanager_port = _pick_port(preferred[1])
                self.prometheus_port = _pick_port(preferred[0])
                if self.prometheus_port == self.alertmanager_port:
                    self.prometheus_port = _pick_port(None)
                self.write_config()
                try:
                    self._launch(timeout)
                    break
                except StackError as exc:
                    self._halt()
                    if "address already in use" not in str(exc) or attempt == attempts - 1:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, timeout: float) -> None:
        wd = self.workdir
        assert wd is not None
        self._spawn(
            "alertmanager",
            [
                shutil.which(ALERTMANAGER) or ALERTMANAGER,
                f"--config.file={wd / 'alertmanager.yml'}",
                f"--storage.path={wd / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                f"--web.external-url={self.alertmanager_url}",
                "--cluster.listen-address=",  # no gossip port on 0.0.0.0
            ],
        )
        self._spawn(
            "prometheus",
            [
                shutil.which(PROMETHEUS) or PROMETHEUS,
                f"--config.file={wd / 'prometheus.yml'}",
                f"--storage.tsdb.path={wd / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                f"--web.external-url={self.prometheus_url}",
            ],
        )
        deadline = time.monotonic() + timeout
        for name, url in (("alertmanager", self.alertmanager_url), ("prometheus", self.prometheus_url)):
            while not _ready(url + "/-/ready"):
                process = self._processes[name]
                if process.poll() is not None:
                    raise StackError(f"{name} exited with status {process.returncode}:\n{self.log(name)}")
                if time.monotonic() > deadline:
                    raise StackError(f"{name} not ready after {timeout:.0f}s:\n{self.log(name)}")
                time.sleep(0.1)

    def _spawn(self, name: str, command: list[str]) -> None:
        assert self.workdir is not None
        log = open(self.workdir / f"{name}.log", "w")
        self._logs[name] = log
        self._processes[name] = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )

    def stop(self) -> None:
        """Stop the processes this stack started (by their own handles) and remove its files."""
        self._halt()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _halt(self) -> None:
        for name in ("prometheus", "alertmanager"):
            process = self._processes.pop(name, None)
            if process is None:
                continue
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def __enter__(self) -> DemoStack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log(self, name: str) -> str:
        if self.workdir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.workdir / f"{name}.log").read_text()[-4000:]
        return ""

    # Prometheus HTTP API (blocking; call through asyncio.to_thread from a running loop)
    def query(self, expr: str) -> dict[str, Any]:
        """The /api/v1/query answer (status, data or error), also for a failing query."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            return _get_json(url)
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def alerts(self) -> list[dict[str, Any]]:
        """Prometheus's active alerts (pending and firing)."""
        return _get_json(self.prometheus_url + "/api/v1/alerts")["data"]["alerts"]

    def rules_status(self) -> list[dict[str, Any]]:
        return [r for g in _get_json(self.prometheus_url + "/api/v1/rules")["data"]["groups"] for r in g["rules"]]

    def target_up(self) -> bool:
        result = self.query(f'up{{job="{JOB}"}} == 1')
        return bool(result.get("status") == "success" and result["data"]["result"])

    def wait_for_target_up(self, timeout: float = 60) -> None:
        """Prometheus scrapes a new target ~5.5 s after start: wait for `up == 1`."""
        deadline = time.monotonic() + timeout
        while not self.target_up():
            if time.monotonic() > deadline:
                raise StackError(f"job {JOB} not up after {timeout:.0f}s:\n{self.log('prometheus')}")
            time.sleep(0.2)


# -- a webhook receiver ----------------------------------------------------------------------


@dataclass
class Notification:
    """One webhook POST from Alertmanager."""

    receiver: str  # the URL path's last segment: the receiver's name with webhook_url
    payload: dict[str, Any]
    received_monotonic: float
    received_at: float = field(default_factory=time.time)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list(self.payload.get("alerts", []))


class WebhookReceiver:
    """An HTTP server on loopback that records Alertmanager's webhook notifications.

    Point Alertmanager at `url + "/" + receiver name` (DemoStack's `webhook_url`)."""

    def __init__(self, on_notification: Callable[[Notification], None] | None = None) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        self._on_notification = on_notification
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    payload = {"invalid": body.decode(errors="replace")}
                note = Notification(self.path.rstrip("/").rsplit("/", 1)[-1], payload, now)
                with receiver._lock:
                    receiver.notifications.append(note)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if receiver._on_notification is not None:
                    with contextlib.suppress(Exception):
                        receiver._on_notification(note)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def received(self, receiver: str | None = None) -> list[Notification]:
        with self._lock:
            return [n for n in self.notifications if receiver is None or n.receiver == receiver]

    def alerts(self, receiver: str | None = None, status: str | None = "firing", **labels: str) -> list[tuple[Notification, dict[str, Any]]]:
        """(notification, alert) pairs whose alert has `status` and all `labels`."""
        out = []
        for note in self.received(receiver):
            for alert in note.alerts:
                if status is not None and alert.get("status") != status:
                    continue
                if all(alert.get("labels", {}).get(k) == v for k, v in labels.items()):
                    out.append((note, alert))
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- the demo --------------------------------------------------------------------------------


def _describe(note: Notification) -> list[str]:
    lines = []
    for alert in note.alerts:
        labels = alert.get("labels", {})
        account = labels.get("account_id")
        where = f" account {account} ({labels.get('account_name', 'name unknown')})" if account else ""
        summary = alert.get("annotations", {}).get("summary", "")
        lines.append(f"[alert -> {note.receiver}] {alert.get('status', '?').upper()} {labels.get('alertname')}{where}: {summary}")
    return lines


class DemoPipeline:
    """The demo's stack plus a receiver that prints every notification to the console."""

    def __init__(self, exporter_url: str, out: TextIO, **settings: Any) -> None:
        self.out = out
        self.receiver = WebhookReceiver(on_notification=self._print)
        options = {**DEMO_SETTINGS, "prometheus_port": DEMO_PROMETHEUS_PORT, "alertmanager_port": DEMO_ALERTMANAGER_PORT}
        options.update(settings)
        self.stack = DemoStack(exporter_url, webhook_url=self.receiver.url, **options)

    def _print(self, note: Notification) -> None:
        for line in _describe(note):
            print(line, file=self.out, flush=True)

    def start(self) -> DemoPipeline:
        try:
            self.stack.start()
        except BaseException:
            self.receiver.close()
            raise
        return self

    def stop(self) -> None:
        self.stack.stop()
        self.receiver.close()


def start_demo(exporter_url: str, out: TextIO) -> DemoPipeline | None:
    """Start Prometheus and Alertmanager for `aws-root-exporter sandbox` and print their URLs.

    Returns None (after saying why) when they are not installed or do not start: the
    exporter demo goes on without them."""
    if not available():
        print(
            "Prometheus and Alertmanager are not installed (Debian: apt-get install prometheus "
            "prometheus-alertmanager); running the exporter alone.",
            file=out,
            flush=True,
        )
        return None
    demo = DemoPipeline(exporter_url, out)
    try:
        demo.start()
    except (StackError, OSError) as exc:
        print(f"Prometheus/Alertmanager did not start, running the exporter alone: {exc}", file=out, flush=True)
        return None
    stack = demo.stack
    print(
        "Prometheus and Alertmanager running with the shipped alerts/ rules "
        f"(scrape and evaluation every {stack.scrape_interval}).\n"
        f"  Prometheus alerts:  {stack.alerts_page_url}\n"
        f"  Alertmanager:       {stack.alertmanager_url}  (Debian's build has no web UI: "
        f"{stack.alertmanager_url}/api/v2/alerts or amtool --alertmanager.url={stack.alertmanager_url} alert query)\n"
        "Alertmanager notifications (pager / security-tickets) are printed here.\n",
        file=out,
        flush=True,
    )
    return demo
