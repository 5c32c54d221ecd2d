"""The web config file and its certificates are re-read for new connections (exporter/config/webconfig.py).

A real exporter on the sandbox serves TLS; the files are replaced on disk the way
cert-manager and Kubernetes secret volumes do (a new file renamed over the old one), and a
real TLS client reads the certificate the next connection is served.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import urllib.parse
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from exporter.sandbox import Sandbox

from .conftest import running_exporter, sandbox_settings
from .test_webconfig import PASSWORD, _basic, _cert, _key, _write, https_get

SANS = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def _server_cert(directory: Path, name: str) -> x509.Certificate:
    """A self-signed server certificate named `name`, renamed over server.crt and server.key."""
    key = _key()
    cert = _cert(name, key, name, key, sans=SANS, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    for final, data in (("server.key", dict(key=key)), ("server.crt", dict(cert=cert))):
        _write(directory / f".{final}.new", **data)
        os.replace(directory / f".{final}.new", directory / final)
    return cert


def _served_cert(url: str) -> bytes:
    """The DER certificate a new TLS connection to the exporter is served."""
    address = urllib.parse.urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test compares the certificate itself
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        with context.wrap_socket(raw) as conn:
            der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


async def test_certificate_replaced_on_disk_is_served_to_the_next_client(sandbox: Sandbox, tmp_path: Path) -> None:
    first = _server_cert(tmp_path, "first")
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    async with running_exporter(sandbox_settings(sandbox, web_config_file=config)) as exporter:
        assert await asyncio.to_thread(_served_cert, exporter.url) == _der(first)
        renewed = _server_cert(tmp_path, "renewed")
        assert _der(renewed) != _der(first)
        assert await asyncio.to_thread(_served_cert, exporter.url) == _der(renewed)
        # And it serves HTTP over it.
        context = ssl.create_default_context(cafile=str(tmp_path / "server.crt"))
        status, _, _ = await asyncio.to_thread(https_get, exporter.url + "/-/healthy", context)
        assert status == 200


async def test_user_list_change_applies_to_new_requests_and_a_broken_file_keeps_the_last_good(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.config.webconfig")
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: {_hash(PASSWORD)}\n")
    async with running_exporter(sandbox_settings(sandbox, web_config_file=config)) as exporter:
        url = exporter.url + "/-/healthy"

        async def status(user: str, password: str) -> int:
            return (await asyncio.to_thread(https_get, url, None, _basic(user, password)))[0]

        assert await status("prometheus", PASSWORD) == 200
        assert await status("grafana", "other secret") == 401

        config.write_text(f"basic_auth_users:\n  grafana: {_hash('other secret')}\n")
        assert await status("grafana", "other secret") == 200
        assert await status("prometheus", PASSWORD) == 401
        assert [r.getMessage() for r in caplog.records].count("web config reloaded") == 1

        # A broken file (a plain password pasted in): the last good user list stays, and the
        # reason is logged once however many requests come.
        config.write_text("basic_auth_users:\n  grafana: plain-text\n")
        for _ in range(3):
            assert await status("grafana", "other secret") == 200
        failures = [r for r in caplog.records if r.getMessage() == "web config not reloaded; keeping the last good one"]
        assert len(failures) == 1
        assert "basic_auth_users.grafana" in failures[0].reason and "plain-text" not in failures[0].reason

        # A file that names a certificate not written yet, then the certificate appears: it is
        # read again (and refused, as turning TLS on needs a restart; the server stays plain HTTP).
        config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
        assert await status("grafana", "other secret") == 200
        _server_cert(tmp_path, "later")
        assert await status("grafana", "other secret") == 200
        failures = [r.reason for r in caplog.records if r.getMessage() == "web config not reloaded; keeping the last good one"]
        assert len(failures) == 3
        assert "cannot read" in failures[1] and "server.crt" in failures[1]
        assert failures[2].endswith("turns TLS on, which needs a restart")
