"""Shared fixtures: the sandbox organization (moto server on 127.0.0.1) and an exporter against it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from prometheus_client.parser import text_string_to_metric_families

from exporter.sandbox import SANDBOX_ENV, Sandbox, Scenario, load_scenario
from exporter.config.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent

# Property tests check correctness, not speed: on a loaded 2-core CI machine a per-example
# deadline only makes them flaky.
hypothesis_settings.register_profile("project", deadline=None)
hypothesis_settings.load_profile("project")

# Figures tests measure (times to alert, delays); printed at the end of every run.
MEASUREMENTS: list[str] = []


def report_measurement(text: str) -> None:
    MEASUREMENTS.append(text)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


# ---------------------------------------------------------------- test tiers
# `make test` runs every test; `make test-fast` (`pytest -m "not slow"`) only the fast tier:
# unit and pure tests. A test is marked `slow` here, never by hand, when it uses a fixture that
# starts a server or a process, lives in a module listed below, or is one of the tests listed
# below (a test body that runs a real tool). Everything else is fast.

SLOW_FIXTURES = {
    "_sandbox_server": "the sandbox: a moto server (behind `sandbox` and `faults`)",
    "endpoint": "a moto server (tests/test_scp_collect.py)",
    "prometheus": "a real Prometheus server",
    "_binaries": "real Prometheus/Alertmanager binaries (pipeline, browser)",
    "chart_dir": "helm template runs",
    "chart": "helm template runs",
    "podman": "podman",
    "image": "builds the container image",
    "readonly_layout": "the exporter in a read-only filesystem layout",
    "fake": "the benchmarks' fake AWS server",
}

SLOW_MODULES = {
    "tests/test_benchmark_smoke.py": "runs the benchmark as a subprocess against the fake AWS",
    "tests/test_soak_smoke.py": "runs the soak as a subprocess",
    "tests/test_demo_stack.py": "the demo stack: exporter, Prometheus, Alertmanager processes, promtool",
    "tests/test_first_contact.py": "runs the exporter's commands as subprocesses",
    "tests/test_sandbox_proven.py": "runs the sandbox command as a subprocess",
    "tests/test_cli.py": "runs the exporter's commands as subprocesses",
    "tests/test_first_hour_inputs.py": "runs the exporter's commands as subprocesses",
    "tests/test_dockerfile.py": "runs hadolint",
    "tests/test_permissions_recorded.py": "exporters and a subprocess against the sandbox",
    "tests/test_image.py": "podman image",
    "tests/test_browser.py": "chromium",
    "tests/faults/test_restart.py": "exporter processes (serve_process) stopped and restarted",
    "tests/faults/test_sandbox_process.py": "the exporter and the sandbox as processes",
    "tests/faults/test_sqs_receive.py": "an exporter polling SQS on the sandbox",
}

# Tests that run a real tool in a module otherwise fast (by function name, every parameter).
SLOW_TESTS = {
    "tests/test_alerts.py::test_promtool_check_rules": "promtool",
    "tests/test_alerts.py::test_promtool_unit_tests_pass": "promtool",
    "tests/test_alerts.py::test_promtool_unit_tests_can_fail": "promtool",
    "tests/test_alerts.py::test_amtool_check_config": "amtool",
    "tests/test_aws_permissions_files.py::test_cfn_lint_finds_nothing": "cfn-lint",
    "tests/test_aws_permissions_files.py::test_cfn_lint_detects_a_bad_template": "cfn-lint",
    "tests/test_settings.py::test_cli_exits_2_with_the_message_before_any_aws_call": "the exporter as a subprocess",
    "tests/test_public_records.py::test_classify_command_totals_match_expected": "the classify command as a subprocess",
    "tests/test_webconfig.py::test_cli_exits_2_naming_the_setting": "the exporter as a subprocess",
    "tests/test_webconfig.py::test_healthcheck_command_speaks_the_web_config": "the healthcheck command as a subprocess",
    "tests/test_activity_sources.py::test_corrupt_state_file_is_a_clear_error": "the exporter as a subprocess",
    "tests/test_no_credentials.py::test_serve_without_credentials_says_how_to_provide_them_and_retries_soon": "the exporter as a subprocess",
    "tests/test_dashboards.py::test_every_query_parses_with_promtool": "promtool",
    "tests/test_dashboards.py::test_promtool_parse_check_can_fail": "promtool",
    "tests/test_doc_queries.py::test_every_documented_query_parses": "promtool",
    "tests/test_doc_queries.py::test_every_inline_query_parses": "promtool",
    "tests/test_doc_queries.py::test_the_check_rejects_the_old_readme_join": "promtool",
    "tests/test_deployment_doc.py::test_yaml_and_json_parse": "bash runs the doc's blocks",
    "tests/test_deployment_doc.py::test_the_web_config_steps_run_and_the_exporter_accepts_the_password": "bash and the exporter's loader as processes",
    "tests/test_deployment_doc.py::test_the_alertmanager_steps_run": "amtool",
    "tests/test_deployment_doc.py::test_the_sync_check_runs": "helm/sync_files.py as a subprocess",
}


def slow_reason(item: pytest.Item) -> str | None:
    """Why the test is in the slow tier; None for a fast test."""
    module, _, name = item.nodeid.partition("::")
    function = f"{module}::{name.split('[', 1)[0]}"
    if function in SLOW_TESTS:
        return SLOW_TESTS[function]
    if module in SLOW_MODULES:
        return SLOW_MODULES[module]
    for fixture in getattr(item, "fixturenames", ()):
        if fixture in SLOW_FIXTURES:
            return SLOW_FIXTURES[fixture]
    if item.get_closest_marker("image"):
        return "image"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if slow_reason(item) is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the developer's shell; AWS credentials are the sandbox's fakes."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX) or key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            monkeypatch.delenv(key, raising=False)
    for key, value in SANDBOX_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture(scope="session")
def default_scenario() -> Scenario:
    return load_scenario()


@pytest.fixture(scope="session")
def _sandbox_server(default_scenario: Scenario) -> Iterator[Sandbox]:
    sandbox = Sandbox(default_scenario).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sandbox(_sandbox_server: Sandbox, default_scenario: Scenario) -> Sandbox:
    """The sandbox organization, freshly seeded from the default scenario for each test."""
    _sandbox_server.reset(default_scenario)
    return _sandbox_server


def sandbox_settings(sandbox: Sandbox, config_file: Path | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "endpoint_url": sandbox.endpoint_url,
        # The sandbox answers in its scenario's partition, by the region a request is signed for.
        "region": sandbox.region,
        "listen_address": "127.0.0.1:0",
        "max_attempts": 2,
        "account_timeout_seconds": 30,
        # Posture tests count requests; the activity tests turn the pollers on themselves.
        "lookup_events_enabled": False,
    }
    values.update(overrides)
    return load_settings(config_file, values)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def tool(name: str) -> str:
    """A command-line tool the test extra installs (beside this Python, or on PATH)."""
    beside_python = Path(sys.executable).with_name(name)
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: install the test extra (pip install -e '.[test]')")
    return found


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc: no procps needed)."""
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


def stop_cleanly(process: subprocess.Popen) -> None:
    """SIGTERM, as a service manager stops the exporter: it must exit 0 within 20 s."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def reap(process: subprocess.Popen) -> None:
    """Kill a process a failed test left running (by its own handle, never by name)."""
    if process.poll() is None:
        process.kill()
        process.wait()


def parse_metrics(text: str) -> dict[str, Any]:
    """{family name: family} from an exposition, with a helper to read one sample."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float | None:
    """Value of the one sample `name{labels...}` (extra labels ignored), None when absent."""
    found = []
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                found.append(s.value)
    if not found:
        return None
    assert len(found) == 1, f"{name}{labels} matches {len(found)} samples"
    return found[0]


class RunningExporter:
    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter

    @property
    def url(self) -> str:
        return self.exporter.url

    @property
    def state(self) -> Any:
        return self.exporter.state

    async def metrics_text(self) -> str:
        status, _, body = await asyncio.to_thread(http_get, self.url + "/metrics")
        assert status == 200
        return body.decode()

    async def metrics(self) -> dict[str, Any]:
        return parse_metrics(await self.metrics_text())

    async def wait_for_sweeps(self, count: int, timeout: float = 60) -> None:
        """`count` snapshots published and no sweep running: a sweep publishes its snapshot
        before its task ends, and a test that starts a sweep next must not find one running."""
        async with asyncio.timeout(timeout):
            while self.state.sweeps < count or (self.exporter.sweeper is not None and self.exporter.sweeper.running):
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_exporter(settings: Settings, load_settings: Callable[[], Settings] | None = None) -> AsyncIterator[RunningExporter]:
    from exporter.app import Exporter

    exporter = Exporter(settings, load_settings)
    task = asyncio.create_task(exporter.run())
    try:
        yield RunningExporter(exporter)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------- AWS operations vs IAM policies
# Every AWS operation the exporter performs anywhere in the suite (in this process) is recorded
# with the principal that signed it (exporter.aws.client.OPERATION_OBSERVERS); at the end of the session
# each must be allowed for that principal by deploy/iam/actions.json, or the run fails.

import json as _json  # noqa: E402
from collections import Counter as _Counter  # noqa: E402
from collections.abc import Iterable as _Iterable, Mapping as _Mapping  # noqa: E402

from exporter.aws import client as _aws  # noqa: E402

IAM_ACTIONS_FILE = ROOT / "deploy" / "iam" / "actions.json"
# API operations authorized by an IAM action of another name.
OPERATION_TO_IAM_ACTION = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


class OperationRecorder:
    """Counts (principal, "service:Operation") of every AWS request while started."""

    def __init__(self) -> None:
        self.seen: _Counter[tuple[str, str]] = _Counter()

    def __call__(self, operation: str, principal: str) -> None:
        self.seen[(principal, operation)] += 1

    def start(self) -> OperationRecorder:
        _aws.OPERATION_OBSERVERS.append(self)
        return self

    def stop(self) -> None:
        if self in _aws.OPERATION_OBSERVERS:
            _aws.OPERATION_OBSERVERS.remove(self)

    def lines(self) -> list[str]:
        return [f"{principal:<20} {operation:<50} {count:>6}" for (principal, operation), count in sorted(self.seen.items())]


def iam_action(operation: str) -> str:
    return OPERATION_TO_IAM_ACTION.get(operation, operation)


def load_iam_actions(path: Path = IAM_ACTIONS_FILE) -> dict[str, Any]:
    return _json.loads(path.read_text(encoding="utf-8"))


def disallowed_operations(recorded: _Iterable[tuple[str, str]], actions: _Mapping[str, Any]) -> list[str]:
    """The recorded (principal, operation) pairs actions.json does not allow, as readable lines."""
    free = set(actions.get("no_permission_needed", []))
    principals = actions["principals"]
    problems = set()
    for principal, operation in recorded:
        action = iam_action(operation)
        if action in free:
            continue
        if principal not in principals:
            problems.add(f"{principal}: {operation} (unknown principal)")
        elif action not in principals[principal]["actions"]:
            shown = operation if action == operation else f"{operation} (IAM action {action})"
            problems.add(f"{principal}: {shown}")
    return sorted(problems)


class _PermissionsPlugin:
    """Session-wide recording; fails the session when an operation is not allowed."""

    def __init__(self, actions_file: Path = IAM_ACTIONS_FILE) -> None:
        self.actions_file = actions_file
        self.recorder = OperationRecorder()
        self.problems: list[str] = []

    def pytest_sessionstart(self, session: Any) -> None:
        self.recorder.start()

    def pytest_sessionfinish(self, session: Any, exitstatus: int) -> None:
        self.recorder.stop()
        self.problems = disallowed_operations(self.recorder.seen, load_iam_actions(self.actions_file))
        if self.problems:
            session.exitstatus = 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.problems:
            terminalreporter.section(f"AWS operations not allowed by {self.actions_file}", red=True, bold=True)
            for line in self.problems:
                terminalreporter.write_line(line, red=True)
        elif self.recorder.seen:
            terminalreporter.write_line(
                f"AWS operations recorded: {len(self.recorder.seen)} distinct (principal, operation), "
                f"{sum(self.recorder.seen.values())} requests, all allowed by {self.actions_file}"
            )
            if terminalreporter.verbosity > 0:  # -v: the whole list (principal, operation, requests)
                for line in self.recorder.lines():
                    terminalreporter.write_line("  " + line)


def pytest_configure(config: Any) -> None:
    if not config.pluginmanager.has_plugin("aws-root-exporter-iam-permissions"):
        config.pluginmanager.register(_PermissionsPlugin(), "aws-root-exporter-iam-permissions")
