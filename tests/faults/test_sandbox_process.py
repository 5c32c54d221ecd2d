"""Faults on a sandbox running as its own process (`python -m exporter.sandbox`): rules are
installed over the control API (POST/GET/DELETE /faults), and an exporter, also its own
process (`python -m exporter serve`), reports the throttling and keeps answering /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

from exporter.sandbox import SANDBOX_ENV, load_scenario

from ..conftest import ROOT, http_get, parse_metrics, report_measurement, sample
from ..scenario_expect import collected, expected_error
from .serve_process import ServeProcess
from .test_transport import posture_series

SCENARIO = load_scenario()
# Accounts the default scenario makes fail on purpose (a denied role, a missing permission).
BROKEN = [a.id for a in SCENARIO.all_accounts if collected(a) and expected_error(a)]
HEALTHY = [a.id for a in SCENARIO.all_accounts if collected(a) and not expected_error(a)]


def _request(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class _Exporter(ServeProcess):
    """`python -m exporter serve` against the sandbox process: the healthy accounts, 10 s sweeps."""

    def __init__(self, info: dict) -> None:
        super().__init__(
            info["endpoint_url"],
            max_attempts="2",
            posture_interval_seconds="10",
            lookup_events_enabled="false",
            # Accounts the scenario breaks on purpose are left out: only the storm fails here.
            exclude_account_ids=json.dumps(BROKEN),
        )

    async def metrics(self) -> tuple[float, dict]:
        """(seconds the scrape took, families)."""
        started = time.monotonic()
        code, _, body = await asyncio.to_thread(http_get, self.url + "/metrics")
        took = time.monotonic() - started
        assert code == 200
        return took, parse_metrics(body.decode())

    async def wait_for(self, predicate, timeout: float) -> tuple[list[float], dict]:
        scrapes = []
        async with asyncio.timeout(timeout):
            while True:
                took, families = await self.metrics()
                scrapes.append(took)
                if predicate(families):
                    return scrapes, families
                await asyncio.sleep(0.1)


def _posture(families: dict) -> dict[str, float]:
    return {s.labels["account_id"]: s.value for s in families["aws_root_exporter_collector_success"].samples if s.labels["collector"] == "posture"}


async def test_throttle_storm_over_the_control_api(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(SANDBOX_ENV, PYTHONUNBUFFERED="1")
    sandbox = subprocess.Popen([sys.executable, "-m", "exporter.sandbox"], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    exporter = None
    try:
        line = await asyncio.to_thread(sandbox.stdout.readline)
        assert line, "the sandbox did not start"
        info = json.loads(line)
        control = info["control_url"]

        # The API checks what it is given.
        assert _request("POST", control + "/faults", {"kind": "meltdown"})[0] == 400
        assert _request("POST", control + "/faults", {"kind": "throttle", "sevice": "iam"})[0] == 400
        assert _request("POST", control + "/faults", {"kind": "throttle", "share": 2})[0] == 400
        # The storm: half of all IAM requests of every account throttled.
        status, rule = _request("POST", control + "/faults", {"kind": "throttle", "service": "iam", "share": 0.5})
        assert status == 200 and rule == {"kind": "throttle", "service": "iam", "operation": None, "account": None, "access_key": None,
                                          "share": 0.5, "limit": None, "seconds": 30.0, "fired": 0}

        exporter = _Exporter(info)
        await exporter.started()
        scrapes, storm = await exporter.wait_for(lambda f: sample(f, "aws_root_exporter_sweeps_total") == 1.0, timeout=60)
        status, state = _request("GET", control + "/faults")
        assert status == 200
        fired = state["total"]
        assert fired > 0 and state["rules"][0]["fired"] == fired
        assert {i["service"] for i in state["injected"]} == {"iam"}

        # Healthy again: every account collected by the next sweep.
        status, cleared = _request("DELETE", control + "/faults")
        assert status == 200 and cleared == {"rules": [], "injected": [], "total": 0}
        cleared_at = time.monotonic()
        _, recovered = await exporter.wait_for(lambda f: set(_posture(f).values()) == {1.0}, timeout=40)
        recovery = time.monotonic() - cleared_at
    finally:
        if exporter is not None:
            exporter.process.terminate()
            exporter.process.wait(timeout=10)
        sandbox.terminate()
        sandbox.wait(timeout=10)

    failing = {a for a, v in _posture(storm).items() if v == 0.0}
    reasons = {
        s.labels["reason"]
        for s in storm["aws_root_exporter_collector_errors"].samples
        if s.name.endswith("_total") and s.value > 0 and s.labels["collector"] == "posture"
    }
    report_measurement(
        f"sandbox process, throttle storm via POST /faults: {fired} throttled answers; "
        f"{len(failing)} of {len(_posture(storm))} accounts failing, reasons {sorted(reasons)}; "
        f"{len(scrapes)} scrapes during the sweep, slowest {max(scrapes) * 1000:.0f} ms; "
        f"all {len(HEALTHY)} fresh {recovery:.1f}s after DELETE /faults (10 s sweep interval)"
    )
    assert failing, "the storm made at least one account fail"
    assert reasons == {"throttled"}
    for account in failing:
        assert posture_series(storm, account) == [], account
    assert set(_posture(recovered)) == set(HEALTHY) and set(_posture(recovered).values()) == {1.0}
