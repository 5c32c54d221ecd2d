"""Shared fixtures: the sandbox organization (moto server on 127.0.0.1) and an exporter against it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.sandbox import SANDBOX_ENV, Sandbox, Scenario, load_scenario
from exporter.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent

# Figures tests measure (times to alert, delays); printed at the end of every run.
MEASUREMENTS: list[str] = []


def report_measurement(text: str) -> None:
    MEASUREMENTS.append(text)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


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


def sandbox_settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "endpoint_url": sandbox.endpoint_url,
        "listen_address": "127.0.0.1:0",
        "max_attempts": 2,
        "account_timeout_seconds": 30,
        # Posture tests count requests; the activity tests turn the pollers on themselves.
        "lookup_events_enabled": False,
    }
    values.update(overrides)
    return load_settings(None, values)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


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
        async with asyncio.timeout(timeout):
            while self.state.sweeps < count:
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_exporter(settings: Settings) -> AsyncIterator[RunningExporter]:
    from exporter.app import Exporter

    exporter = Exporter(settings)
    task = asyncio.create_task(exporter.run())
    try:
        yield RunningExporter(exporter)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
