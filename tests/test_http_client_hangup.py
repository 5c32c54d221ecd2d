"""A client that resets its connection (a probe giving up, a cancelled scrape) is logged at
debug level, not as a traceback on stderr: in a container's log, tracebacks read as crashes."""

from __future__ import annotations

import logging
import socket
import struct
import time

import pytest

from exporter.web.http import MetricsServer
from exporter.metrics.exposition import Exposition
from exporter.engine.state import ExporterState

from .conftest import http_get


def test_client_reset_is_logged_at_debug_without_traceback(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    state = ExporterState(posture_interval=60)
    server = MetricsServer(state, Exposition(state), "127.0.0.1", 0).start()
    try:
        with caplog.at_level(logging.DEBUG, logger="exporter.web.http"):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            client.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: exporter\r\n\r\n")
            answer = b""
            while not answer.endswith(b"OK\n"):
                answer += client.recv(4096)
            # The server now waits for the next request on this kept-alive connection; an
            # abortive close (linger 0) sends it a reset instead of an end of stream.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            deadline = time.monotonic() + 10
            while not [r for r in caplog.records if r.getMessage() == "http client hung up"]:
                assert time.monotonic() < deadline, "no debug record of the reset; stderr:\n" + capfd.readouterr().err
                time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert http_get(f"http://127.0.0.1:{server.port}/-/healthy")[0] == 200, "the server goes on serving"
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
