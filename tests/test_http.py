"""The HTTP endpoints: readiness after the first sweep, gzip, landing page, unknown paths."""

from __future__ import annotations

import asyncio
import gzip

from exporter.sandbox import Sandbox, Scenario

from .conftest import http_get, running_exporter, sandbox_settings
from .scenario_expect import collected


async def test_endpoints(sandbox: Sandbox, default_scenario: Scenario) -> None:
    scenario = sandbox.scenario.model_copy(deep=True)
    # A slow credential report keeps the first sweep running long enough to see "not ready".
    scenario.account("staging").credential_report.generation_seconds = 2
    sandbox.reset(scenario)
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        await asyncio.sleep(0.3)
        status, _, body = await asyncio.to_thread(http_get, exporter.url + "/-/ready")
        assert status == 503 and b"first posture sweep" in body
        status, _, _ = await asyncio.to_thread(http_get, exporter.url + "/-/healthy")
        assert status == 200
        # /metrics answers during the sweep, from the empty snapshot.
        status, _, body = await asyncio.to_thread(http_get, exporter.url + "/metrics")
        assert status == 200 and b"aws_root_exporter_build_info" in body and b"aws_root_control_compliant{" not in body

        await exporter.wait_for_sweeps(1)
        status, _, _ = await asyncio.to_thread(http_get, exporter.url + "/-/ready")
        assert status == 200
        status, headers, plain = await asyncio.to_thread(http_get, exporter.url + "/metrics")
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        status, headers, packed = await asyncio.to_thread(http_get, exporter.url + "/metrics", {"Accept-Encoding": "gzip"})
        assert headers.get("Content-Encoding") == "gzip"
        assert gzip.decompress(packed) == plain
        # name[] as prometheus_client's handler: only the named families.
        status, _, some = await asyncio.to_thread(http_get, exporter.url + "/metrics?name[]=aws_root_control_compliant&name[]=aws_root_exporter_sweeps_total")
        assert status == 200
        assert {line.split()[2] for line in some.decode().splitlines() if line.startswith("# HELP")} == {"aws_root_control_compliant", "aws_root_exporter_sweeps_total"}
        assert some.count(b"aws_root_control_compliant{") == plain.count(b"aws_root_control_compliant{") > 0
        status, headers, page = await asyncio.to_thread(http_get, exporter.url + "/")
        collected_accounts = len([a for a in default_scenario.all_accounts if collected(a)])
        assert status == 200 and b'href="metrics"' in page and f"Accounts collected: {collected_accounts}".encode() in page
        status, _, _ = await asyncio.to_thread(http_get, exporter.url + "/nope")
        assert status == 404
