"""The HTTP endpoints: /metrics, /-/healthy, /-/ready, /-/reload and a landing page.

Served from threads, not the asyncio loop, so a busy sweep never delays a scrape; every
handler reads memory only.
"""

from __future__ import annotations

import html
import logging
import sys
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from exporter import __version__
from exporter.config.files import SettingsError
from exporter.metrics.exposition import Exposition
from exporter.engine.state import ExporterState

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _landing(state: ExporterState) -> bytes:
    snap = state.snapshot
    failing = sum(1 for s in snap.status.values() if not s.success)
    ready = "ready" if state.ready.is_set() else "waiting for the first sweep"
    if any(s.reason == "no_credentials" for s in snap.status.values()):
        ready += "; no AWS credentials found, nothing is collected (the log says how to provide them; retrying)"
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>AWS root exporter</title></head>
<body>
<h1>AWS root exporter</h1>
<p>Version {html.escape(__version__)}. Status: {html.escape(ready)}.</p>
<p>Accounts collected: {len(snap.accounts)}; collectors failing: {failing}; sweeps completed: {state.sweeps}.</p>
<ul>
<li><a href="metrics">Metrics</a></li>
<li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li>
</ul>
<p>POST to <code>/-/reload</code> (or send SIGHUP) to reload the configuration file.</p>
</body></html>
"""
    return body.encode()


class _Gather:
    """Stands in for a handler's wfile while BaseHTTPRequestHandler writes the head, which
    then goes out with the body (`_send`)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: tuple) -> None:
        # A client that hangs up mid-request (a probe's timeout, a cancelled scrape) is no fault
        # of ours; socketserver would print a traceback to stderr for it.
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("http client hung up", extra={"client": client_address[0], "reason": str(sys.exc_info()[1])})
            return
        super().handle_error(request, client_address)


class MetricsServer:
    """A threaded HTTP server on its own thread; `stop()` shuts it down and closes the socket."""

    def __init__(
        self,
        state: ExporterState,
        exposition: Exposition,
        host: str,
        port: int,
        wrap: Callable | None = None,
        reload: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        self.state = state
        self.exposition = exposition
        self.reload = reload
        handler = self._handler()
        try:
            self.httpd = _Server((host, port), handler)
        except OSError as exc:
            # Port taken, a host not on this machine, a port below 1024 without the right:
            # a setting to change, not a crash.
            raise SettingsError(
                f"listen_address: cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "choose another address with --web.listen-address HOST:PORT or the listen_address setting"
            ) from None
        self.httpd.daemon_threads = True
        if wrap is not None:
            wrap(self.httpd)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = f"aws-root-exporter/{__version__}"

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http %s", format % args)

            def _send(self, status: int, body: bytes | list[bytes], content_type: str, extra: dict[str, str] | None = None) -> None:
                # The head and the body leave in ONE write. Every write is a blocking call that
                # releases the GIL, and this thread then waits for a busy sweep to hand it back
                # (up to the 5 ms switch interval each time): written piece by piece (about 30
                # /metrics families), scrapes during a sweep were slower (docs/performance.md,
                # What made it fast). The price is one copy of the body per scrape: at most
                # about 20 MB plain at 10,000 accounts (the series budget), under 1 MB gzip,
                # which is what Prometheus asks for.
                chunks = body if isinstance(body, list) else [body]
                real, self.wfile = self.wfile, _Gather()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(sum(map(len, chunks))))
                    for key, value in (extra or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                finally:
                    head, self.wfile = self.wfile.parts, real
                real.write(b"".join(head if self.command == "HEAD" else [*head, *chunks]))

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/metrics":
                    want_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
                    names = frozenset(urllib.parse.parse_qs(query).get("name[]", ()))
                    body = server.exposition.chunks(want_gzip, names)
                    extra = {"Content-Encoding": "gzip"} if want_gzip else None
                    self._send(200, body, CONTENT_TYPE, extra)
                elif path == "/-/healthy":
                    self._send(200, b"OK\n", "text/plain; charset=utf-8")
                elif path == "/-/ready":
                    if server.state.ready.is_set():
                        self._send(200, b"Ready\n", "text/plain; charset=utf-8")
                    else:
                        self._send(503, b"Not ready: the first posture sweep has not completed\n", "text/plain; charset=utf-8")
                elif path == "/":
                    self._send(200, _landing(server.state), "text/html; charset=utf-8")
                elif path == "/-/reload" and server.reload is not None:
                    # A GET must never change anything (a crawler or a prefetch would reload).
                    self._send(405, b"Only POST reloads the configuration\n", "text/plain; charset=utf-8", {"Allow": "POST"})
                else:
                    self._send(404, b"Not found\n", "text/plain; charset=utf-8")

            def do_POST(self) -> None:
                # No endpoint reads a request body: close the connection rather than read it,
                # so an unread body is never taken for the next request.
                self.close_connection = True
                close = {"Connection": "close"}
                if self.path.partition("?")[0] != "/-/reload" or server.reload is None:
                    self._send(405, b"Method not allowed\n", "text/plain; charset=utf-8", {**close, "Allow": "GET, HEAD"})
                    return
                ok, message = server.reload()
                # 500 on failure, as Prometheus answers a failed /-/reload.
                self._send(200 if ok else 500, (message + "\n").encode(), "text/plain; charset=utf-8", close)

        return Handler
