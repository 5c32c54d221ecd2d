"""TLS and HTTP basic auth for the HTTP endpoints, from a Prometheus web configuration file.

The file has the format of prometheus/exporter-toolkit (`--web.config.file`), so one file can
serve this exporter and the Prometheus exporters beside it:

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
    http_server_config:
      headers:
        X-Frame-Options: deny
    basic_auth_users:
      prometheus: $2b$12$...

Differences from exporter-toolkit, each refused with a message rather than ignored where it
would weaken what the file asks for:

- The file and the files it names are re-read, as in exporter-toolkit, for every new TLS
  connection and every request (a renewed certificate, key or CA, or a changed user list,
  takes effect without a restart), but only when one of them changed on disk (their
  modification times, sizes and inodes are compared: a few `stat` calls). Where
  exporter-toolkit then fails every handshake and request until a broken file is fixed, a
  broken file here keeps the last good configuration and logs why once per problem (it is
  read again at each look until it is fixed): a half-renewed certificate must not take
  down monitoring. Turning TLS on or off needs a
  restart (in exporter-toolkit too: it is decided when the server starts).
- `client_auth_type` `RequestClientCert` and `RequireAnyClientCert` accept a client
  certificate without verifying it; Python's ssl module cannot do that, so they are refused.
- `curve_preferences` and `rate_limit` are refused; `http_server_config.http2` is accepted and
  has no effect (the server speaks HTTP/1.1).

Every endpoint needs the basic-auth password when `basic_auth_users` is set, `/-/healthy` and
`/-/ready` included, as exporter-toolkit does (see docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import re
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt

from exporter.config.files import SettingsError, YamlFileError, read_yaml_file

log = logging.getLogger(__name__)

SETTING = "web_config_file"
REALM = "aws-root-exporter"
HANDSHAKE_TIMEOUT_SECONDS = 10.0

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
_TLS_KEYS = {
    "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
    "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
    "curve_preferences",
}
_HTTP_KEYS = {"http2", "headers"}

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's names (crypto/tls.CipherSuites) for the TLS 1.2 suites, as OpenSSL names them.
_CIPHERS_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
# TLS 1.3 suites are not configurable, in Go as in OpenSSL through Python: accepted, no effect.
_CIPHERS_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}

# The headers exporter-toolkit lets a web config set, with the values it accepts (None: any).
_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_BCRYPT_MAX_PASSWORD_BYTES = 72
_CACHE_LIMIT = 1024


class WebConfigError(ValueError):
    """A problem with the web config file; the message leaves out `web_config_file: `."""


def _problem(path: Path, key: str, message: str) -> WebConfigError:
    return WebConfigError(f"{key} in {str(path)!r}: {message}")


class BasicAuth:
    """Checks `Authorization: Basic ...` headers against bcrypt hashes.

    bcrypt is slow on purpose (cost 10 is ~70 ms) and Prometheus scrapes every few seconds,
    so, as exporter-toolkit does, a verified (user, password) pair is remembered in memory and
    later requests with it skip bcrypt. The cache holds only SHA-256 digests of passwords that
    already matched a configured hash, never a password, and only successes: a wrong password
    always pays the full bcrypt cost, so caching gives a guesser nothing. A bcrypt hash matches
    one password (passwords over 72 bytes are refused), so the cache stays as small as the user
    list; it is bounded all the same. Looking a digest up in a set is not constant-time, but
    what it could leak is whether a SHA-256 digest is close to one of a correct password's,
    which tells nothing about the password.

    An unknown user is checked against a dummy hash so that the answer takes as long as for a
    known user with a wrong password, and user names are compared by dictionary lookup of the
    configured names only. Only one bcrypt runs at a time, so a burst of bad requests cannot
    take every core.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {name: digest.encode("ascii") for name, digest in users.items()}
        # Same cost as the most expensive configured hash, so unknown users take as long;
        # made on first use (checking a config file must not pay for it).
        self._dummy_cost = max(int(digest[4:6]) for digest in users.values())
        self._dummy: bytes | None = None
        self._verified: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()
        self.bcrypt_checks = 0  # for tests: how often bcrypt actually ran

    @property
    def users(self) -> int:
        return len(self._users)

    def check_header(self, header: str | None) -> bool:
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        return self.check(*credentials)

    def check(self, user: str, password: bytes) -> bool:
        key = (user, hashlib.sha256(password).digest())
        if key in self._verified:
            return True
        known = self._users.get(user)
        too_long = len(password) > _BCRYPT_MAX_PASSWORD_BYTES
        with self._lock:
            if known is None and self._dummy is None:
                self._dummy = bcrypt.hashpw(b"not anyone's password", bcrypt.gensalt(rounds=self._dummy_cost))
            digest = known if known is not None else self._dummy
            assert digest is not None
            self.bcrypt_checks += 1
            matched = bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD_BYTES], digest)
        if not matched or known is None or too_long:
            return False
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified.clear()
        self._verified.add(key)
        return True


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


@dataclass
class WebConfig:
    """A loaded web config: an SSL context (None: plain HTTP), basic auth, extra headers."""

    path: Path
    ssl_context: ssl.SSLContext | None = None
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: list[str] | None = None
    auth: BasicAuth | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The certificate, key and CA files it was built from (watched for changes).
    files: list[Path] = field(default_factory=list)

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None


class WebConfigSource:
    """The web config as it is on disk now, for each new connection and request.

    Built from a file that was valid at start (settings validation checked it). `current()`
    compares the `stat` of the file and of the files it names with the last look and reads
    them again only when one changed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            # One read, the stamp taken before it: a change while reading shows at the next look.
            self._config, self._stamp_seen = self._read([])
        except WebConfigError as exc:
            raise SettingsError(f"{SETTING}: {exc}") from None
        self.tls = self._config.tls  # fixed at start: the listening socket is plain or TLS for good
        self._failed: tuple[tuple[Any, ...], str] | None = None

    @property
    def auth(self) -> BasicAuth | None:
        return self._config.auth

    def _stamp(self, files: list[Path]) -> tuple[Any, ...]:
        stamp = []
        for file in [self.path, *files]:
            try:
                st = os.stat(file)
                stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError as exc:
                stamp.append(exc.errno)
        return tuple(stamp)

    def _read(self, files: list[Path]) -> tuple[WebConfig, tuple[Any, ...] | None]:
        """The config and the stamp of its files taken before they were read (a change
        while reading shows at the next look). None: the stamp is not known yet."""
        for _ in range(2):  # a second time when the file now names other files
            stamp = self._stamp(files)
            config = parse_web_config(self.path)
            if config.files == files:
                return config, stamp
            files = config.files
        return config, None

    def current(self) -> WebConfig:
        if self._stamp(self._config.files) == self._stamp_seen:
            return self._config
        with self._lock:
            stamp = self._stamp(self._config.files)
            if stamp == self._stamp_seen:  # another thread read it meanwhile
                return self._config
            try:
                config, seen = self._read(self._config.files)
                if config.tls != self.tls:
                    raise WebConfigError(f"{str(self.path)!r} turns TLS {'on' if config.tls else 'off'}, which needs a restart")
            except WebConfigError as exc:
                # Read again at the next look (the file may name a certificate not written
                # yet, whose appearance no stamp would show), but said once per problem.
                if self._failed != (stamp, str(exc)):
                    self._failed = (stamp, str(exc))
                    log.error("web config not reloaded; keeping the last good one", extra={"web_config_file": str(self.path), "reason": str(exc)})
                return self._config
            self._config, self._stamp_seen, self._failed = config, seen, None
            log.info("web config reloaded", extra=_describe(config))
            return config

    def wrap(self, httpd: ThreadingHTTPServer) -> None:
        """The MetricsServer hook: TLS on each accepted connection, auth and headers on requests."""
        if self.tls:
            original_finish = httpd.finish_request

            def finish_request(request: Any, client_address: Any) -> None:
                # Wrapped here, in the request's thread, not on the listening socket: each
                # connection gets the certificate and client-auth policy of the config as it
                # is now (exporter-toolkit's GetConfigForClient), and a client that connects
                # and says nothing stalls only its own thread.
                config = self.current()
                assert config.ssl_context is not None
                conn = config.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
                try:
                    if _handshake(config, conn, client_address):
                        original_finish(conn, client_address)
                finally:
                    conn.close()

            httpd.finish_request = finish_request  # type: ignore[method-assign]
        httpd.RequestHandlerClass = self._guard(httpd.RequestHandlerClass)  # type: ignore[arg-type]
        log.info("web config loaded", extra=_describe(self._config))

    def _guard(self, base: type[BaseHTTPRequestHandler]) -> type[BaseHTTPRequestHandler]:
        source = self

        class GuardedHandler(base):  # type: ignore[valid-type,misc]
            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                # The user list as it is now (exporter-toolkit also reads it per request).
                self.web_config = source.current()
                auth = self.web_config.auth
                if auth is None or auth.check_header(self.headers.get("Authorization")):
                    return True
                body = b"Unauthorized\n"
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")  # an unread request body cannot confuse the next request
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return False

            def end_headers(self) -> None:
                config = getattr(self, "web_config", None) or source.current()
                for name, value in config.headers.items():
                    self.send_header(name, value)
                super().end_headers()

        return GuardedHandler


def _describe(config: WebConfig) -> dict[str, Any]:
    return {
        "web_config_file": str(config.path),
        "tls": config.tls,
        "client_auth_type": config.client_auth_type if config.tls else None,
        "basic_auth_users": config.auth.users if config.auth else 0,
    }


def _handshake(config: WebConfig, conn: ssl.SSLSocket, client_address: Any) -> bool:
    try:
        conn.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        conn.do_handshake()
        conn.settimeout(None)
    except (OSError, ssl.SSLError) as exc:  # includes timeouts and plain HTTP on the TLS port
        log.debug("TLS handshake failed", extra={"client": client_address[0], "reason": _reason(exc)})
        return False
    if config.client_allowed_sans is not None and not _allowed_san(config.client_allowed_sans, conn.getpeercert()):
        log.debug("client certificate has no allowed SAN", extra={"client": client_address[0]})
        return False
    return True


def _allowed_san(sans: list[str], cert: dict[str, Any] | None) -> bool:
    allowed = {_normal_san(value) for value in sans}
    for _kind, value in (cert or {}).get("subjectAltName", ()):
        if _normal_san(value) in allowed:
            return True
    return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return type(exc).__name__


def _normal_san(value: str) -> str:
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check the file and build what it asks for, or raise SettingsError."""
    try:
        return parse_web_config(Path(path))
    except WebConfigError as exc:
        raise SettingsError(f"{SETTING}: {exc}") from None


def check_web_config(path: Path) -> None:
    """Validate the file at settings time; raises WebConfigError (a ValueError)."""
    parse_web_config(path)


def parse_web_config(path: Path) -> WebConfig:
    try:
        data = read_yaml_file(path)
    except YamlFileError as exc:
        raise WebConfigError(str(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WebConfigError(f"{str(path)!r} must hold a mapping (tls_server_config, http_server_config, basic_auth_users)")
    _known(path, "", data, _TOP_KEYS)
    if "rate_limit" in data:
        raise _problem(path, "rate_limit", "is not supported by aws-root-exporter")
    config = WebConfig(path=path)
    tls = _mapping(path, "tls_server_config", data.get("tls_server_config"))
    _known(path, "tls_server_config.", tls, _TLS_KEYS)
    http = _mapping(path, "http_server_config", data.get("http_server_config"))
    _known(path, "http_server_config.", http, _HTTP_KEYS)
    config.headers = _headers(path, http)
    if "http2" in http and not isinstance(http["http2"], bool):
        raise _problem(path, "http_server_config.http2", "must be true or false")
    users = _users(path, data.get("basic_auth_users"))
    if users:
        config.auth = BasicAuth(users)
    if _tls_enabled(tls):
        config.ssl_context, config.client_auth_type, config.client_allowed_sans, config.files = _ssl_context(path, tls)
    else:
        for key in ("client_allowed_sans", "min_version", "max_version", "cipher_suites", "curve_preferences"):
            if tls.get(key) is not None:
                raise _problem(path, f"tls_server_config.{key}", "needs cert_file and key_file (TLS is off without them)")
    return config


def _known(path: Path, prefix: str, data: dict[str, Any], keys: set[str]) -> None:
    for key in data:
        if key not in keys:
            raise _problem(path, f"{prefix}{key}", "unknown key (see docs/security.md)")


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _problem(path, key, "must be a mapping")
    return value


def _string(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _problem(path, key, "must be a non-empty string")
    return value


def _headers(path: Path, http: dict[str, Any]) -> dict[str, str]:
    headers = _mapping(path, "http_server_config.headers", http.get("headers"))
    result: dict[str, str] = {}
    for name, value in headers.items():
        key = f"http_server_config.headers.{name}"
        if name not in _HEADERS:
            raise _problem(path, key, f"cannot be configured (only {', '.join(_HEADERS)})")
        if value is None or value == "":
            continue  # blank: unset, as in exporter-toolkit
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise _problem(path, key, "must be a one-line string")
        allowed = _HEADERS[name]
        if allowed is not None and value not in allowed:
            raise _problem(path, key, f"must be one of {', '.join(allowed)}, got {value!r}")
        result[name] = value
    return result


def _users(path: Path, value: Any) -> dict[str, str]:
    users = _mapping(path, "basic_auth_users", value)
    result: dict[str, str] = {}
    for name, digest in users.items():
        # Never echo the value: a plain password pasted here by mistake must not reach a log.
        if not isinstance(digest, str) or not _BCRYPT.match(digest):
            raise _problem(path, f"basic_auth_users.{name}", "must be a bcrypt hash ($2a$, $2b$ or $2y$, see docs/security.md); the value is not shown")
        result[str(name)] = digest
    return result


def _tls_enabled(tls: dict[str, Any]) -> bool:
    return any(tls.get(key) for key in ("cert", "key", "cert_file", "key_file", "client_ca", "client_ca_file", "client_auth_type"))


def _relative(path: Path, value: str) -> Path:
    """Relative file names are relative to the web config file's directory, as in exporter-toolkit."""
    file = Path(value).expanduser()
    return file if file.is_absolute() else path.parent / file


def _read_pem(path: Path, key: str, value: Any) -> tuple[str, Path]:
    file = _relative(path, _string(path, key, value))
    try:
        return file.read_text(encoding="ascii"), file
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a PEM file"
        raise _problem(path, key, f"cannot read {str(file)!r}: {reason}") from None


def _ssl_context(path: Path, tls: dict[str, Any]) -> tuple[ssl.SSLContext, str, list[str] | None, list[Path]]:
    p = "tls_server_config."
    files: list[Path] = []
    for inline, file in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if tls.get(inline) and tls.get(file):
            raise _problem(path, p + file, f"set {inline} or {file}, not both")
    if not tls.get("cert") and not tls.get("cert_file"):
        raise _problem(path, p + "cert_file", "missing (or cert): TLS needs a certificate")
    if not tls.get("key") and not tls.get("key_file"):
        raise _problem(path, p + "key_file", "missing (or key): TLS needs a private key")

    if tls.get("cert_file"):
        cert_pem, pem_file = _read_pem(path, p + "cert_file", tls["cert_file"])
        files.append(pem_file)
        cert_key = p + "cert_file"
    else:
        cert_pem, cert_key = _string(path, p + "cert", tls["cert"]), p + "cert"
    if tls.get("key_file"):
        key_pem, pem_file = _read_pem(path, p + "key_file", tls["key_file"])
        files.append(pem_file)
        key_key = p + "key_file"
    else:
        key_pem, key_key = _string(path, p + "key", tls["key"]), p + "key"
    if "-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise _problem(path, cert_key, "holds no PEM certificate")
    if not re.search(r"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----", key_pem):
        raise _problem(path, key_key, "holds no PEM private key")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise _problem(path, cert_key, f"cannot load the certificate ({_reason(exc)})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(path, context, cert_pem, key_pem, key_key, cert_key)

    auth_type = tls.get("client_auth_type") or "NoClientCert"
    if auth_type in _UNVERIFIED_CLIENT_AUTH:
        raise _problem(
            path, p + "client_auth_type",
            f"{auth_type} is not supported by aws-root-exporter (it accepts client certificates without verifying them); "
            "use RequireAndVerifyClientCert",
        )
    if auth_type not in _CLIENT_AUTH:
        raise _problem(path, p + "client_auth_type", f"must be {', '.join(_CLIENT_AUTH)}, got {auth_type!r}")
    ca_pem = None
    if tls.get("client_ca_file"):
        ca_pem, pem_file = _read_pem(path, p + "client_ca_file", tls["client_ca_file"])
        files.append(pem_file)
        ca_key = p + "client_ca_file"
    elif tls.get("client_ca"):
        ca_pem, ca_key = _string(path, p + "client_ca", tls["client_ca"]), p + "client_ca"
    if ca_pem is not None:
        if auth_type == "NoClientCert":
            raise _problem(path, p + "client_auth_type", "client CAs are configured without a client auth policy (use RequireAndVerifyClientCert)")
        try:
            context.load_verify_locations(cadata=ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise _problem(path, ca_key, f"holds no usable PEM CA certificate ({_reason(exc)})") from None
    elif auth_type != "NoClientCert":
        raise _problem(path, p + "client_ca_file", f"missing: {auth_type} needs the CA that signs client certificates")
    context.verify_mode = _CLIENT_AUTH[auth_type]

    sans = tls.get("client_allowed_sans")
    if sans is not None:
        if not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans):
            raise _problem(path, p + "client_allowed_sans", "must be a list of strings")
        if auth_type != "RequireAndVerifyClientCert":
            raise _problem(path, p + "client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")

    minimum = _version(path, p + "min_version", tls.get("min_version"), "TLS12")
    maximum = _version(path, p + "max_version", tls.get("max_version"), "TLS13")
    if minimum > maximum:
        raise _problem(path, p + "max_version", "must not be below min_version")
    try:
        context.minimum_version = minimum
        context.maximum_version = maximum
    except (ValueError, ssl.SSLError) as exc:
        raise _problem(path, p + "min_version", f"not supported here ({exc})") from None

    suites = tls.get("cipher_suites")
    if suites is not None:
        if not isinstance(suites, list) or not all(isinstance(s, str) for s in suites):
            raise _problem(path, p + "cipher_suites", "must be a list of cipher suite names")
        names = []
        for suite in suites:
            if suite in _CIPHERS_TLS12:
                names.append(_CIPHERS_TLS12[suite])
            elif suite not in _CIPHERS_TLS13:
                raise _problem(path, p + "cipher_suites", f"unknown or insecure cipher suite {suite!r}")
        if names:
            context.set_ciphers(":".join(names))
    if tls.get("curve_preferences") is not None:
        raise _problem(path, p + "curve_preferences", "is not supported by aws-root-exporter")
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise _problem(path, p + "prefer_server_cipher_suites", "must be true or false")
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    return context, auth_type, sans, files


def _version(path: Path, key: str, value: Any, default: str) -> ssl.TLSVersion:
    value = default if value is None else value
    if value not in _TLS_VERSIONS:
        raise _problem(path, key, f"must be {', '.join(_TLS_VERSIONS)}, got {value!r}")
    return _TLS_VERSIONS[value]


def _load_chain(path: Path, context: ssl.SSLContext, cert_pem: str, key_pem: str, key_key: str, cert_key: str) -> None:
    """ssl loads a certificate chain from files only: inline PEM goes through a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="aws-root-exporter-tls-") as tmp:
        os.chmod(tmp, 0o700)
        cert_file = Path(tmp) / "cert.pem"
        key_file = Path(tmp) / "key.pem"
        cert_file.write_text(cert_pem, encoding="ascii")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key_pem)
        try:
            # An encrypted key would prompt on the terminal; the callback refuses instead.
            context.load_cert_chain(cert_file, key_file, password=_no_password)
        except ValueError as exc:
            raise _problem(path, key_key, str(exc)) from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise _problem(path, key_key, "does not match the certificate") from None
            raise _problem(path, key_key, f"cannot load the private key ({_reason(exc)})") from None


def _no_password() -> bytes:
    raise ValueError("encrypted private keys are not supported")
