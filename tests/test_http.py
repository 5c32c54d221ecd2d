"""The HTTP endpoints: readiness after the first sweep, gzip, landing page, unknown paths; each
answer leaves in one write."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import socket
from typing import Any

from exporter.discovery.accounts import Account
from exporter.engine.state import ExporterState, Snapshot
from exporter.metrics.exposition import Exposition
from exporter.sandbox import Sandbox, Scenario
from exporter.web.http import MetricsServer

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


class _CountingSocket(socket.socket):
    """An accepted connection that notes every write the server makes on it."""

    writes: list[int]

    def sendall(self, data: Any, *args: Any) -> None:
        self.writes.append(len(data))
        super().sendall(data, *args)

    def send(self, data: Any, *args: Any) -> int:
        self.writes.append(len(data))
        return super().send(data, *args)

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        self.writes.append(sum(len(b) for b in buffers))
        return super().sendmsg(buffers, *args)


def test_each_answer_is_one_write() -> None:
    """A scrape's head and body go out in one write: each write releases the GIL and waits to
    take it back from a busy sweep (docs/performance.md, scrape latency)."""
    state = ExporterState(posture_interval=60)
    state.publish(Snapshot(accounts=tuple(Account(f"{n:012d}", name=f"a{n}") for n in range(1, 50))))
    exposition = Exposition(state)
    # The exposition comes in pieces, so one write is not one piece by chance.
    assert len(exposition.chunks()) > 10 and len(exposition.chunks(want_gzip=True)) > 1
    connections: list[_CountingSocket] = []

    def count_writes(httpd: Any) -> None:
        accept = httpd.get_request

        def get_request() -> tuple[socket.socket, Any]:
            sock, address = accept()
            counted = _CountingSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            counted.writes = []
            connections.append(counted)
            return counted, address

        httpd.get_request = get_request

    server = MetricsServer(state, exposition, "127.0.0.1", 0, wrap=count_writes).start()
    try:
        answers = []
        for method, path, headers in (
            ("GET", "/metrics", {}),
            ("GET", "/metrics", {"Accept-Encoding": "gzip"}),
            ("HEAD", "/metrics", {}),
            ("GET", "/metrics?name[]=aws_root_account_info", {}),
            ("GET", "/-/healthy", {}),
        ):
            client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            client.request(method, path, headers=headers)
            response = client.getresponse()
            body = response.read()
            client.close()
            answers.append((method, path, headers, response.status, response.getheader("Content-Length"), body, connections[-1].writes))
    finally:
        server.stop()
    plain = exposition.render()
    for method, path, headers, status, length, body, writes in answers:
        assert status == 200, (method, path, headers)
        assert len(writes) == 1, f"{method} {path} {headers}: {len(writes)} writes of {writes} bytes"
        if path == "/metrics" and method == "HEAD":
            assert body == b"" and int(length) == len(plain)
        elif path == "/metrics" and headers:
            assert gzip.decompress(body) == plain and int(length) == len(body)
        elif path == "/metrics":
            assert body == plain and int(length) == len(body)
