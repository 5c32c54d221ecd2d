"""`aws-root-exporter healthcheck`: is the exporter of this container answering? (Docker HEALTHCHECK)

It reads the same settings as `serve` (environment, `--config`, flags), so it knows the
listen address and the web config. The check asks `/-/healthy` on the loopback address:
over HTTPS when the web config turns TLS on (the certificate is not verified: this is the
container's own server, reached by an address its certificate need not name), and without
a password (the web config holds only bcrypt hashes), so a 401 from a server with basic
auth counts as alive, as a 200 does. When the web config requires client certificates,
only the TCP connection is checked. Exit status 0 when alive, 1 otherwise with the reason
on stderr.
"""

from __future__ import annotations

import http.client
import socket
import ssl

from exporter.config.settings import Settings
from exporter.config.webconfig import load_web_config

_ALIVE = {200, 401}
_REQUIRED_CLIENT_CERT = {"RequireAnyClientCert", "RequireAndVerifyClientCert"}


def _loopback(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host.strip("[]")


def check(settings: Settings, timeout: float = 4.0) -> str | None:
    """None when the exporter answers, else why not."""
    address, _, port_text = settings.listen_address.rpartition(":")
    host, port = _loopback(address), int(port_text)
    web = load_web_config(settings.web_config_file) if settings.web_config_file else None
    try:
        if web is not None and web.tls and web.client_auth_type in _REQUIRED_CLIENT_CERT:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        if web is not None and web.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request("GET", "/-/healthy")
            status = connection.getresponse().status
        finally:
            connection.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"{host}:{port}: {exc.__class__.__name__}: {exc}"
    return None if status in _ALIVE else f"{host}:{port}: /-/healthy answered HTTP {status}"
