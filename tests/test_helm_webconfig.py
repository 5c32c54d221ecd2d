"""The Helm chart with TLS and basic auth (webConfig): probes, ServiceMonitor, helm test.

The manifests are rendered like tests/test_helm.py and validated with kubernetes-validate
(the ServiceMonitor gets the prometheus-operator shape check of test_helm.py). The probe
script the chart ships (files/probe.py) is then run, exactly as the rendered exec probe and
helm test pod run it, against a real exporter serving HTTPS with basic auth.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import pytest

from .conftest import running_exporter, sandbox_settings
from .test_helm import (
    NAMESPACE,
    RELEASE,
    _exporter_container,
    _kinds,
    _one,
    _render,
    _scenario_values,
    _schema_error,
    _validate,
    _workload,
    chart,  # noqa: F401  (fixture)
    chart_dir,  # noqa: F401  (fixture)
)
from .test_webconfig import HASH, PASSWORD, Pki, pki  # noqa: F401  (pki is a fixture)

WEB_DIR = "/etc/aws-root-exporter-web"
CREDENTIALS_DIR = "/etc/aws-root-exporter-credentials"
SERVICE_HOST = f"{RELEASE}.{NAMESPACE}.svc"

TLS_ONLY = {"webConfig": {"existingSecret": "web", "tls": True}}
BASIC_AUTH = {
    "webConfig": {"existingSecret": "web", "basicAuth": True, "credentialsSecret": {"name": "scrape"}},
}
MUTUAL_TLS = {
    "webConfig": {"existingSecret": "web", "tls": True, "clientCertificates": True},
    "serviceMonitor": {
        "enabled": True,
        "tlsConfig": {
            "ca": {"configMap": {"name": "exporter-ca", "key": "ca.crt"}},
            "cert": {"secret": {"name": "prometheus-client", "key": "tls.crt"}},
            "keySecret": {"name": "prometheus-client", "key": "tls.key"},
        },
    },
    "test": {"enabled": False},
}


def _probes(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    container = _exporter_container(_workload(docs))
    return container["livenessProbe"], container["readinessProbe"]


def _volumes(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in pod_spec["volumes"]}


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mount["name"]: mount for mount in container["volumeMounts"]}


def _render_error(chart, values: dict[str, Any]) -> str:  # noqa: F811
    with pytest.raises(helm_python.HelmError) as caught:
        _render(chart, values)
    return str(caught.value)


# ------------------------------------------------------------ the TLS + basic-auth scenario


def test_scenario_manifests_validate(chart) -> None:  # noqa: F811
    docs = _render(chart, _scenario_values("tls-basic-auth"))
    for doc in docs:
        _validate(doc)
    assert not _kinds(docs, "Secret"), "the chart never creates Secrets"


def test_scenario_mounts_the_web_config_read_only(chart) -> None:  # noqa: F811
    values = _scenario_values("tls-basic-auth")
    pod = _workload(_render(chart, values))["spec"]["template"]["spec"]
    container = _exporter_container({"spec": {"template": {"spec": pod}}})
    assert f"--web.config.file={WEB_DIR}/web-config.yml" in container["args"]
    web = _volumes(pod)["web-config"]["projected"]
    # The web config Secret and the cert-manager TLS Secret share one directory, so the
    # file's relative cert_file: tls.crt / key_file: tls.key resolve; group-readable only.
    assert web["sources"] == [{"secret": {"name": "aws-root-exporter-web-config"}}, {"secret": {"name": "aws-root-exporter-tls"}}]
    assert web["defaultMode"] == 0o440
    assert _mounts(container)["web-config"] == {"name": "web-config", "mountPath": WEB_DIR, "readOnly": True}


def test_scenario_probes_fetch_health_and_readiness_with_the_password(chart) -> None:  # noqa: F811
    docs = _render(chart, _scenario_values("tls-basic-auth"))
    liveness, readiness = _probes(docs)
    for probe, path in ((liveness, "/-/healthy"), (readiness, "/-/ready")):
        assert "httpGet" not in probe and "tcpSocket" not in probe
        assert probe["exec"]["command"] == [
            "python", "-I", "/etc/aws-root-exporter/probe.py",
            f"--credentials={CREDENTIALS_DIR}", "--timeout=4", f"https://127.0.0.1:9784{path}",
        ]
    # Readiness still means "first sweep done", so the rolling update keeps the old pod
    # until the new one has metrics; the thresholds of values.yaml are kept.
    assert readiness["failureThreshold"] == 3 and liveness["failureThreshold"] == 4
    pod = _workload(docs)["spec"]["template"]["spec"]
    credentials = _volumes(pod)["probe-credentials"]["secret"]
    assert credentials == {
        "secretName": "aws-root-exporter-scrape-credentials",
        "defaultMode": 0o440,
        "items": [{"key": "username", "path": "username"}, {"key": "password", "path": "password"}],
    }
    container = _exporter_container(_workload(docs))
    assert _mounts(container)["probe-credentials"] == {"name": "probe-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True}
    # No credential travels in the pod spec itself.
    assert "Authorization" not in str(pod) and "httpHeaders" not in str(pod)


def test_scenario_service_monitor_scrapes_https_with_basic_auth(chart) -> None:  # noqa: F811
    monitor = _one(_render(chart, _scenario_values("tls-basic-auth")), "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "aws-root-exporter-tls", "key": "ca.crt"}},
        # Prometheus scrapes pod IPs: the certificate is checked for the Service's name.
        "serverName": SERVICE_HOST,
    }
    assert endpoint["basicAuth"] == {
        "username": {"name": "aws-root-exporter-scrape-credentials", "key": "username"},
        "password": {"name": "aws-root-exporter-scrape-credentials", "key": "password"},
    }


def test_scenario_helm_test_checks_tls_and_that_auth_is_enforced(chart) -> None:  # noqa: F811
    pod = _one(_render(chart, _scenario_values("tls-basic-auth")), "Pod")
    container = pod["spec"]["containers"][0]
    assert container["command"] == [
        "python", "-I", "/etc/aws-root-exporter/probe.py",
        f"--credentials={CREDENTIALS_DIR}", "--require-auth", "--ca=/etc/aws-root-exporter-ca/ca.crt",
        f"https://{SERVICE_HOST}:9784/-/healthy",
    ]
    volumes = _volumes(pod["spec"])
    assert volumes["credentials"]["secret"]["secretName"] == "aws-root-exporter-scrape-credentials"
    assert volumes["ca"]["secret"] == {"secretName": "aws-root-exporter-tls", "defaultMode": 0o440, "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    # Only the probe script of the ConfigMap, never the server's key.
    assert volumes["probe"]["configMap"]["items"] == [{"key": "probe.py", "path": "probe.py"}]
    assert all(volume.get("projected") is None for volume in volumes.values())


# ------------------------------------------------------------------- other combinations


def test_tls_without_auth_keeps_http_get_probes_over_https(chart) -> None:  # noqa: F811
    docs = _render(chart, TLS_ONLY)
    liveness, readiness = _probes(docs)
    assert liveness["httpGet"] == {"path": "/-/healthy", "port": "http", "scheme": "HTTPS"}
    assert readiness["httpGet"] == {"path": "/-/ready", "port": "http", "scheme": "HTTPS"}
    assert "probe-credentials" not in _volumes(_workload(docs)["spec"]["template"]["spec"])
    pod = _one(docs, "Pod")
    assert pod["spec"]["containers"][0]["command"][-1] == f"https://{SERVICE_HOST}:9784/-/healthy"
    for doc in docs:
        _validate(doc)


def test_basic_auth_over_plain_http(chart) -> None:  # noqa: F811
    docs = _render(chart, {**BASIC_AUTH, "serviceMonitor": {"enabled": True}})
    liveness, _ = _probes(docs)
    assert liveness["exec"]["command"][-1] == "http://127.0.0.1:9784/-/healthy"
    (endpoint,) = _one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "http" and "tlsConfig" not in endpoint and endpoint["basicAuth"]["password"]["name"] == "scrape"
    for doc in docs:
        _validate(doc)


def test_tcp_socket_probes_on_request(chart) -> None:  # noqa: F811
    values = {"webConfig": {**BASIC_AUTH["webConfig"], "probeType": "tcpSocket"}}
    docs = _render(chart, values)
    for probe in _probes(docs):
        assert probe["tcpSocket"] == {"port": "http"} and "exec" not in probe and "httpGet" not in probe
    assert "probe-credentials" not in _volumes(_workload(docs)["spec"]["template"]["spec"])


def test_mutual_tls_probes_tcp_socket_and_prometheus_presents_a_certificate(chart) -> None:  # noqa: F811
    docs = _render(chart, MUTUAL_TLS)
    for probe in _probes(docs):
        assert probe["tcpSocket"] == {"port": "http"}
    (endpoint,) = _one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["tlsConfig"]["cert"] == {"secret": {"name": "prometheus-client", "key": "tls.crt"}}
    assert endpoint["tlsConfig"]["keySecret"] == {"name": "prometheus-client", "key": "tls.key"}
    assert endpoint["tlsConfig"]["serverName"] == SERVICE_HOST
    assert not _kinds(docs, "Pod")
    for doc in docs:
        _validate(doc)


def test_insecure_skip_verify_is_an_explicit_opt_in(chart) -> None:  # noqa: F811
    values = {**TLS_ONLY, "serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": True}}}
    (endpoint,) = _one(_render(chart, values), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    default = _one(_render(chart, {**TLS_ONLY, "serviceMonitor": {"enabled": True}}), "ServiceMonitor")["spec"]["endpoints"][0]
    assert default["tlsConfig"] == {"serverName": SERVICE_HOST}
    named = {**TLS_ONLY, "serviceMonitor": {"enabled": True, "tlsConfig": {"serverName": "exporter.example.org"}}}
    assert _one(_render(chart, named), "ServiceMonitor")["spec"]["endpoints"][0]["tlsConfig"] == {"serverName": "exporter.example.org"}


def test_without_web_config_nothing_changes(chart) -> None:  # noqa: F811
    docs = _render(chart, {"serviceMonitor": {"enabled": True}})
    container = _exporter_container(_workload(docs))
    assert not any(arg.startswith("--web.config.file") for arg in container["args"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    (endpoint,) = _one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "http" and "tlsConfig" not in endpoint and "basicAuth" not in endpoint


REFUSED = [
    ({"webConfig": {"tls": True}}, "set webConfig.existingSecret"),
    ({"webConfig": {"existingSecret": "web"}}, "neither webConfig.tls nor webConfig.basicAuth"),
    ({"webConfig": {"existingSecret": "web", "basicAuth": True}}, "set webConfig.credentialsSecret.name"),
    ({"webConfig": {"existingSecret": "web", "tls": True, "clientCertificates": True}}, "set test.enabled=false"),
    ({"webConfig": {"existingSecret": "web", "basicAuth": True, "clientCertificates": True}, "test": {"enabled": False}},
     "webConfig.clientCertificates needs webConfig.tls"),
    ({**MUTUAL_TLS, "webConfig": {**MUTUAL_TLS["webConfig"], "probeType": "exec"}}, "exec cannot present a client certificate"),
    ({**MUTUAL_TLS, "serviceMonitor": {"enabled": True}}, "set serviceMonitor.tlsConfig.cert and serviceMonitor.tlsConfig.keySecret"),
    ({"webConfig": {"existingSecret": "web", "basicAuth": True, "probeType": "tcpSocket"}, "serviceMonitor": {"enabled": True}, "test": {"enabled": False}},
     "the Secret (in the ServiceMonitor's namespace) Prometheus reads"),
    ({"serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": True}}}, "webConfig.tls is false"),
    ({"test": {"caSecret": {"name": "ca"}}}, "test.caSecret is set but webConfig.tls is false"),
    ({"extraArgs": ["--web.config.file=/etc/web.yml"]}, "set webConfig.existingSecret"),
]


@pytest.mark.parametrize(("values", "message"), REFUSED, ids=range(len(REFUSED)))
def test_inconsistent_values_fail_with_a_pointer(chart, values: dict[str, Any], message: str) -> None:  # noqa: F811
    assert message in _render_error(chart, values)


SCHEMA_REFUSED = [
    ({"webConfig": {"password": "s3cr3t"}}, "store it in a Secret"),
    ({"webConfig": {"basic_auth_users": {"prometheus": "x"}}}, "store it in a Secret"),
    ({"webConfig": {"tls": "true"}}, "at '/webConfig/tls': got string, want boolean"),
    ({"webConfig": {"probeType": "httpGet"}}, "at '/webConfig/probeType'"),
    ({"config": {"web_config_file": "/etc/web.yml"}}, "set webConfig.existingSecret"),
    ({"extraConfig": {"web_config_file": "/etc/web.yml"}}, "set webConfig.existingSecret"),
    ({"serviceMonitor": {"tlsConfig": {"caFile": "/etc/ca.crt"}}}, "additional properties 'caFile' not allowed"),
    ({"serviceMonitor": {"tlsConfig": {"ca": {"secret": {"name": "ca"}}}}}, "missing property 'key'"),
    ({"serviceMonitor": {"tlsConfig": {"ca": {"secret": {"name": "a", "key": "k"}, "configMap": {"name": "b", "key": "k"}}}}},
     "at '/serviceMonitor/tlsConfig/ca'"),
    ({"serviceMonitor": {"tlsConfig": {"insecureSkipVerify": "yes"}}}, "got string, want boolean"),
]


@pytest.mark.parametrize(("values", "message"), SCHEMA_REFUSED, ids=range(len(SCHEMA_REFUSED)))
def test_schema_refuses(chart, values: dict[str, Any], message: str) -> None:  # noqa: F811
    assert message in _schema_error(chart, values)


# ---------------------------------------- the shipped probe script against a real exporter


def _probe_command(command: list[str], script: Path, credentials: Path, ca: Path | None, url: str) -> list[str]:
    """The rendered command with the in-pod paths replaced by local ones."""
    out = [sys.executable]
    for arg in command[1:]:
        if arg == "/etc/aws-root-exporter/probe.py":
            out.append(str(script))
        elif arg.startswith("--credentials="):
            out.append(f"--credentials={credentials}")
        elif arg.startswith("--ca="):
            assert ca is not None
            out.append(f"--ca={ca}")
        elif arg.startswith(("http://", "https://")):
            out.append(url + arg.split(":9784", 1)[1])
        else:
            out.append(arg)
    return out


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


async def test_probe_script_against_an_https_basic_auth_exporter(
    chart, sandbox, pki: Pki, tmp_path: Path  # noqa: F811
) -> None:
    docs = _render(chart, _scenario_values("tls-basic-auth"))
    (config_map,) = [doc for doc in _kinds(docs, "ConfigMap") if "probe.py" in doc.get("data", {})]
    script = tmp_path / "probe.py"
    script.write_text(config_map["data"]["probe.py"])
    liveness, readiness = _probes(docs)
    test_command = _one(docs, "Pod")["spec"]["containers"][0]["command"]

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "username").write_text("prometheus")
    (credentials / "password").write_text(PASSWORD)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "username").write_text("prometheus")
    (wrong / "password").write_text(PASSWORD + "!")

    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\nbasic_auth_users:\n  prometheus: {HASH}\n")
    async with running_exporter(sandbox_settings(sandbox, web_config_file=web)) as exporter:
        url = exporter.url  # https://127.0.0.1:<port>
        await exporter.wait_for_sweeps(1)

        def check() -> None:
            for probe in (liveness, readiness):
                ok = _run(_probe_command(probe["exec"]["command"], script, credentials, None, url))
                assert ok.returncode == 0, ok.stdout + ok.stderr
                bad = _run(_probe_command(probe["exec"]["command"], script, wrong, None, url))
                assert bad.returncode == 1 and "HTTP 401" in bad.stdout, bad.stdout + bad.stderr
                assert PASSWORD not in ok.stdout + ok.stderr + bad.stdout + bad.stderr
            # Plain HTTP to the TLS port is no answer at all: the probe fails cleanly.
            plain = _run(_probe_command(liveness["exec"]["command"], script, credentials, None, url.replace("https://", "http://")))
            assert plain.returncode == 1 and "Traceback" not in plain.stderr, plain.stdout + plain.stderr

            # The helm test: verifies the certificate for the URL's host (the server
            # certificate names localhost), checks that no password means 401, then 200.
            local = url.replace("127.0.0.1", "localhost")
            test = _run(_probe_command(test_command, script, credentials, pki.ca, local))
            assert test.returncode == 0, test.stdout + test.stderr
            assert "without credentials: HTTP 401" in test.stdout and "HTTP 200" in test.stdout
            # A certificate the CA does not vouch for fails the test.
            other_ca = tmp_path / "other-ca.crt"
            other_ca.write_text(pki.rogue_cert.read_text())
            untrusted = _run(_probe_command(test_command, script, credentials, other_ca, local))
            assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout, untrusted.stdout

        await asyncio.to_thread(check)


async def test_probe_script_require_auth_fails_when_the_exporter_has_none(chart, sandbox, tmp_path: Path) -> None:  # noqa: F811
    """The helm test catches a web config Secret that lost its basic_auth_users."""
    docs = _render(chart, _scenario_values("tls-basic-auth"))
    (config_map,) = [doc for doc in _kinds(docs, "ConfigMap") if "probe.py" in doc.get("data", {})]
    script = tmp_path / "probe.py"
    script.write_text(config_map["data"]["probe.py"])
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "username").write_text("prometheus")
    (credentials / "password").write_text(PASSWORD)
    async with running_exporter(sandbox_settings(sandbox)) as exporter:
        url = exporter.url
        command = [sys.executable, str(script), f"--credentials={credentials}", "--require-auth", url + "/-/healthy"]
        result = await asyncio.to_thread(_run, command)
        assert result.returncode == 1 and "expected 401" in result.stdout, result.stdout
