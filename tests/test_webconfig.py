"""TLS and basic auth from a web configuration file: a real exporter on the sandbox over HTTPS,
client certificates, and one clear message naming the setting for each bad file."""

from __future__ import annotations

import asyncio
import base64
import datetime
import http.client
import ipaddress
import logging
import socket
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exporter.sandbox import Sandbox
from exporter.config.settings import SettingsError, load_settings
from exporter.config.webconfig import BasicAuth, load_web_config

from .conftest import ROOT, parse_metrics, running_exporter, sandbox_settings, sample

PASSWORD = "correct horse battery staple"
# Cost 4 keeps the tests fast; real files use 10 or more.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


# --- a throwaway PKI: a CA, a server certificate for 127.0.0.1, client certificates -------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          sans: list[x509.GeneralName] | None = None, usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate | None = None, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    data = b""
    if cert is not None:
        data += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(data)
    return path


@dataclass
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # signed by the CA, SAN DNS:prometheus
    client_key: Path
    rogue_cert: Path  # the same name, signed by another CA
    rogue_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key, rogue_ca_key, rogue_key = _key(), _key(), _key(), _key(), _key()
    ca = _cert("test CA", ca_key, "test CA", ca_key, ca=True)
    server = _cert("127.0.0.1", server_key, "test CA", ca_key,
                   sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
                   usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _cert("prometheus", client_key, "test CA", ca_key, sans=[x509.DNSName("prometheus")], usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue = _cert("prometheus", rogue_key, "rogue CA", rogue_ca_key, sans=[x509.DNSName("prometheus")], usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        dir=d,
        ca=_write(d / "ca.crt", ca),
        server_cert=_write(d / "server.crt", server),
        server_key=_write(d / "server.key", key=server_key),
        client_cert=_write(d / "client.crt", client),
        client_key=_write(d / "client.key", key=client_key),
        rogue_cert=_write(d / "rogue.crt", rogue),
        rogue_key=_write(d / "rogue.key", key=rogue_key),
    )


def _web_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def https_get(url: str, context: ssl.SSLContext | None, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _refused(url: str, context: ssl.SSLContext | None) -> bool:
    """True when the request fails below HTTP: no status line comes back at all."""
    try:
        https_get(url, context, _basic("prometheus", PASSWORD))
    except urllib.error.HTTPError:
        return False
    except (OSError, http.client.HTTPException) as exc:
        print("refused:", url, repr(exc))
        return True
    return False


# --- a real exporter on the sandbox ------------------------------------------------------------


async def test_https_with_basic_auth(sandbox: Sandbox, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = _web_config(tmp_path / "web.yml", f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: {HASH}
""")
    settings = sandbox_settings(sandbox, web_config_file=config, log_level="debug")
    context = _client_context(pki)
    async with running_exporter(settings) as exporter:
        assert exporter.url.startswith("https://127.0.0.1:")
        await exporter.wait_for_sweeps(1)
        url = exporter.url

        status, headers, body = await asyncio.to_thread(https_get, url + "/metrics", context, _basic("prometheus", PASSWORD))
        assert status == 200
        families = parse_metrics(body.decode())
        assert sample(families, "aws_root_control_compliant", account_id="210000000003", control="mfa_enabled") == 0.0
        assert headers["X-Frame-Options"] == "deny" and headers["X-Content-Type-Options"] == "nosniff"
        # Again, from the cache of verified passwords.
        status, _, _ = await asyncio.to_thread(https_get, url + "/metrics", context, _basic("prometheus", PASSWORD))
        assert status == 200
        assert exporter.exporter.web.auth.bcrypt_checks == 1

        for headers_sent in (
            _basic("prometheus", "wrong"),
            _basic("grafana", PASSWORD),
            {},
            {"Authorization": "Bearer " + PASSWORD},
            {"Authorization": "Basic not-base64!"},
        ):
            for path in ("/metrics", "/-/healthy", "/-/ready", "/", "/nope"):
                status, headers, body = await asyncio.to_thread(https_get, url + path, context, headers_sent)
                assert status == 401, (path, headers_sent)
                assert headers["WWW-Authenticate"] == 'Basic realm="aws-root-exporter"'
                assert headers["X-Frame-Options"] == "deny"
                assert b"aws_root" not in body
        status, _, body = await asyncio.to_thread(https_get, url + "/metrics", context, _basic("prometheus", "wrong"), "HEAD")
        assert status == 401 and body == b""
        status, _, _ = await asyncio.to_thread(https_get, url + "/-/healthy", context, _basic("prometheus", PASSWORD))
        assert status == 200

        # A client that connects and says nothing does not hold up the others.
        with socket.create_connection(("127.0.0.1", exporter.exporter.server.port)):
            status, _, _ = await asyncio.to_thread(https_get, url + "/-/healthy", context, _basic("prometheus", PASSWORD))
            assert status == 200

        # Plain HTTP to the TLS port gets no HTTP answer at all; neither does a client that
        # does not trust the server's CA.
        plain = url.replace("https://", "http://")
        assert await asyncio.to_thread(_refused, plain + "/metrics", None)
        assert await asyncio.to_thread(_refused, url + "/metrics", ssl.create_default_context())
        # The server still answers after those.
        status, _, _ = await asyncio.to_thread(https_get, url + "/-/healthy", context, _basic("prometheus", PASSWORD))
        assert status == 200

    logged = caplog.text
    assert "GET /metrics" in logged and " 401 " in logged  # the request log ran at debug level
    assert PASSWORD not in logged
    assert base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode() not in logged
    assert "Basic " not in logged  # no Authorization header of ours (botocore logs its own SigV4 one at debug)


async def test_client_certificate_required(sandbox: Sandbox, pki: Pki, tmp_path: Path) -> None:
    # Relative file names are relative to the web config file.
    config = _web_config(pki.dir / "web-mtls.yml", """
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  client_allowed_sans: [prometheus]
  min_version: TLS13
basic_auth_users:
  prometheus: %s
""" % HASH)
    async with running_exporter(sandbox_settings(sandbox, web_config_file=config)) as exporter:
        url = exporter.url + "/-/healthy"
        assert await asyncio.to_thread(_refused, url, _client_context(pki))
        assert await asyncio.to_thread(_refused, url, _client_context(pki, pki.rogue_cert, pki.rogue_key))
        status, _, _ = await asyncio.to_thread(https_get, url, _client_context(pki, pki.client_cert, pki.client_key), _basic("prometheus", PASSWORD))
        assert status == 200
        # A client certificate does not replace the password.
        status, _, _ = await asyncio.to_thread(https_get, url, _client_context(pki, pki.client_cert, pki.client_key))
        assert status == 401
        # TLS 1.2 is below min_version.
        old = _client_context(pki, pki.client_cert, pki.client_key)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        assert await asyncio.to_thread(_refused, url, old)


async def test_client_certificate_without_an_allowed_san(sandbox: Sandbox, pki: Pki, tmp_path: Path) -> None:
    config = _web_config(tmp_path / "web.yml", f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca}
  client_allowed_sans: [grafana, 10.0.0.1]
""")
    async with running_exporter(sandbox_settings(sandbox, web_config_file=config)) as exporter:
        assert await asyncio.to_thread(_refused, exporter.url + "/-/healthy", _client_context(pki, pki.client_cert, pki.client_key))


async def test_optional_client_certificate_and_no_basic_auth(sandbox: Sandbox, pki: Pki, tmp_path: Path) -> None:
    config = _web_config(tmp_path / "web.yml", f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: {pki.ca}
""")
    async with running_exporter(sandbox_settings(sandbox, web_config_file=config)) as exporter:
        url = exporter.url + "/-/healthy"
        assert (await asyncio.to_thread(https_get, url, _client_context(pki)))[0] == 200
        assert (await asyncio.to_thread(https_get, url, _client_context(pki, pki.client_cert, pki.client_key)))[0] == 200
        assert await asyncio.to_thread(_refused, url, _client_context(pki, pki.rogue_cert, pki.rogue_key))


async def test_basic_auth_without_tls(sandbox: Sandbox, tmp_path: Path) -> None:
    config = _web_config(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: {HASH}\n")
    async with running_exporter(sandbox_settings(sandbox, web_config_file=config)) as exporter:
        assert exporter.url.startswith("http://")
        assert (await asyncio.to_thread(https_get, exporter.url + "/-/healthy", None))[0] == 401
        assert (await asyncio.to_thread(https_get, exporter.url + "/-/healthy", None, _basic("prometheus", PASSWORD)))[0] == 200


# --- the basic-auth checker ---------------------------------------------------------------------


def test_basic_auth_checker_caches_only_successes() -> None:
    auth = BasicAuth({"alice": HASH, "bob": bcrypt.hashpw(b"other", bcrypt.gensalt(rounds=5)).decode()})
    assert not auth.check("alice", b"wrong")
    assert not auth.check("alice", b"wrong")
    assert auth.bcrypt_checks == 2  # failures always pay bcrypt
    assert auth.check("alice", PASSWORD.encode())
    assert auth.check("alice", PASSWORD.encode())
    assert auth.bcrypt_checks == 3
    assert not auth.check("bob", PASSWORD.encode())  # alice's password is not bob's
    assert not auth.check("carol", PASSWORD.encode())  # unknown users run bcrypt too (against a dummy hash)
    assert auth.bcrypt_checks == 5
    assert auth.check("bob", b"other")
    # bcrypt reads 72 bytes: a longer password that starts with the right ones is refused.
    long_hash = bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(rounds=4)).decode()
    long_auth = BasicAuth({"dave": long_hash})
    assert long_auth.check("dave", b"x" * 72)
    assert not long_auth.check("dave", b"x" * 73)
    assert auth.check_header("Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode())
    assert auth.check_header("basic  " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode())
    for header in (None, "", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"alice").decode(), "Digest abc"):
        assert not auth.check_header(header), header


def test_htpasswd_style_2y_hashes_are_accepted(tmp_path: Path) -> None:
    config = _web_config(tmp_path / "web.yml", "basic_auth_users:\n  prometheus: " + HASH.replace("$2b$", "$2y$") + "\n")
    web = load_web_config(config)
    assert web.auth is not None and web.auth.check("prometheus", PASSWORD.encode())
    assert not web.tls


def test_empty_web_config_means_plain_http_without_auth(tmp_path: Path) -> None:
    web = load_web_config(_web_config(tmp_path / "web.yml", ""))
    assert not web.tls and web.auth is None and web.headers == {}


def test_inline_certificate_and_key(pki: Pki, tmp_path: Path) -> None:
    cert = pki.server_cert.read_text().replace("\n", "\n    ")
    key = pki.server_key.read_text().replace("\n", "\n    ")
    config = _web_config(tmp_path / "web.yml", f"tls_server_config:\n  cert: |\n    {cert}\n  key: |\n    {key}\n")
    assert load_web_config(config).tls


# --- bad files: one message naming the setting and the key -----------------------------------------

BAD_FILES = [
    ("tls_config:\n  cert_file: x\n", "tls_config in '{web}': unknown key (see docs/security.md)"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  client_auth: Require\n",
     "tls_server_config.client_auth in '{web}': unknown key (see docs/security.md)"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n",
     "http_server_config.headers.X-Powered-By in '{web}': cannot be configured (only Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
     "http_server_config.headers.X-Frame-Options in '{web}': must be one of deny, sameorigin, got 'allow'"),
    ("basic_auth_users:\n  prometheus: hunter2\n",
     "basic_auth_users.prometheus in '{web}': must be a bcrypt hash ($2a$, $2b$ or $2y$, see docs/security.md); the value is not shown"),
    ("basic_auth_users: [prometheus]\n", "basic_auth_users in '{web}': must be a mapping"),
    ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate_limit in '{web}': is not supported by aws-root-exporter"),
    ("tls_server_config:\n  key_file: {pki}/server.key\n", "tls_server_config.cert_file in '{web}': missing (or cert): TLS needs a certificate"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n", "tls_server_config.key_file in '{web}': missing (or key): TLS needs a private key"),
    ("tls_server_config:\n  cert_file: {pki}/missing.crt\n  key_file: {pki}/server.key\n",
     "tls_server_config.cert_file in '{web}': cannot read '{pki}/missing.crt': No such file or directory"),
    ("tls_server_config:\n  cert_file: {pki}/server.key\n  key_file: {pki}/server.key\n",
     "tls_server_config.cert_file in '{web}': holds no PEM certificate"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/ca.crt\n",
     "tls_server_config.key_file in '{web}': holds no PEM private key"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/client.key\n",
     "tls_server_config.key_file in '{web}': does not match the certificate"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  client_auth_type: RequireAnyClientCert\n  client_ca_file: {pki}/ca.crt\n",
     "tls_server_config.client_auth_type in '{web}': RequireAnyClientCert is not supported by aws-root-exporter (it accepts client certificates without verifying them); use RequireAndVerifyClientCert"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  client_auth_type: Sometimes\n",
     "tls_server_config.client_auth_type in '{web}': must be NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert, got 'Sometimes'"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file in '{web}': missing: RequireAndVerifyClientCert needs the CA that signs client certificates"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  client_ca_file: {pki}/ca.crt\n",
     "tls_server_config.client_auth_type in '{web}': client CAs are configured without a client auth policy (use RequireAndVerifyClientCert)"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  min_version: TLS1.2\n",
     "tls_server_config.min_version in '{web}': must be TLS10, TLS11, TLS12, TLS13, got 'TLS1.2'"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
     "tls_server_config.cipher_suites in '{web}': unknown or insecure cipher suite 'TLS_RSA_WITH_RC4_128_SHA'"),
    ("tls_server_config:\n  min_version: TLS13\n", "tls_server_config.min_version in '{web}': needs cert_file and key_file (TLS is off without them)"),
    ("- a list\n", "'{web}' must hold a mapping (tls_server_config, http_server_config, basic_auth_users)"),
    ("basic_auth_users: [\n", "'{web}' is not valid YAML at line 2: expected the node content, but found '<stream end>'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m.split(" in ")[0] for _, m in BAD_FILES])
def test_bad_web_config_names_the_setting_and_key(pki: Pki, tmp_path: Path, text: str, message: str) -> None:
    web = _web_config(tmp_path / "web.yml", text.format(pki=pki.dir))
    with pytest.raises(SettingsError) as raised:
        load_settings(None, {"web_config_file": web})
    assert str(raised.value) == "web_config_file: " + message.format(web=web, pki=pki.dir)
    with pytest.raises(SettingsError) as raised:
        load_web_config(web)
    assert str(raised.value) == "web_config_file: " + message.format(web=web, pki=pki.dir)
    assert "hunter2" not in str(raised.value)


def test_good_cipher_suites_and_versions(pki: Pki, tmp_path: Path) -> None:
    web = load_web_config(_web_config(tmp_path / "web.yml", f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  min_version: TLS12
  max_version: TLS13
  prefer_server_cipher_suites: false
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256]
http_server_config:
  http2: true
"""))
    assert web.ssl_context is not None
    names = {c["name"] for c in web.ssl_context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"}
    assert web.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_cli_exits_2_naming_the_setting(tmp_path: Path) -> None:
    bad = _web_config(tmp_path / "bad.yml", "basic_auth_users:\n  prometheus: hunter2\n")
    env = {"PATH": "/usr/bin:/bin", "AWS_ROOT_EXPORTER_ENDPOINT_URL": "http://127.0.0.1:9"}
    for command in (["serve"], ["sandbox"]):
        result = subprocess.run(
            [sys.executable, "-m", "exporter", *command, "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(bad)],
            capture_output=True, text=True, env=env, timeout=60, cwd=ROOT,
        )
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.strip() == (
            f"aws-root-exporter: configuration error: web_config_file: basic_auth_users.prometheus in '{bad}': "
            "must be a bcrypt hash ($2a$, $2b$ or $2y$, see docs/security.md); the value is not shown"
        )
        assert "hunter2" not in result.stderr + result.stdout


# --- the container's healthcheck command ------------------------------------------------------


def _healthcheck(listen: str, config: Path | None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "exporter", "healthcheck", "--web.listen-address", listen]
    if config is not None:
        command += ["--web.config.file", str(config)]
    env = {"PATH": "/usr/bin:/bin", "AWS_ROOT_EXPORTER_ENDPOINT_URL": "http://127.0.0.1:9"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


async def test_healthcheck_command_speaks_the_web_config(sandbox: Sandbox, pki: Pki, tmp_path: Path) -> None:
    """Plain HTTP, HTTPS with basic auth (a 401 is alive: the check has no password) and
    required client certificates (TCP only); exit 1 with the reason when nothing answers."""
    tls_auth = _web_config(tmp_path / "web-tls.yml", f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
basic_auth_users:
  prometheus: {HASH}
""")
    mtls = _web_config(tmp_path / "web-mtls.yml", f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca}
""")
    for config in (None, tls_auth, mtls):
        async with running_exporter(sandbox_settings(sandbox, web_config_file=config)) as exporter:
            listen = exporter.url.rpartition("/")[2]
            result = await asyncio.to_thread(_healthcheck, listen, config)
            assert result.returncode == 0, (config, result.stderr)
            if config is tls_auth:
                # Plain HTTP to a TLS server is not a healthy answer.
                wrong = await asyncio.to_thread(_healthcheck, listen, None)
                assert wrong.returncode == 1 and "not healthy" in wrong.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    result = await asyncio.to_thread(_healthcheck, f"0.0.0.0:{free}", None)
    assert result.returncode == 1
    assert result.stderr.startswith(f"aws-root-exporter: not healthy: 127.0.0.1:{free}: ConnectionRefusedError")
