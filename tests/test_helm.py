"""The Helm chart, rendered and linted offline with helm-python-sdk (Helm SDK v4).

Every scenario in helm/aws-root-exporter/ci/*-values.yaml is rendered, linted strictly and
each manifest validated against the Kubernetes 1.30 schemas (kubernetes-validate); the
prometheus-operator custom resources, which those schemas do not know, get a shape check
here and are validated against the operator's own CRD schemas in tests/test_helm_crds.py.

The tests work on a temporary copy of the chart. When the chart holds no alert rule file
or no dashboard yet (they are written in parallel and synced in by helm/sync_files.py),
the copy gets one placeholder of each, so the PrometheusRule and dashboard templates are
exercised anyway; the repository itself never holds placeholders.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import helm_python
import kubernetes_validate

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "aws-root-exporter"
KUBE_VERSION = "1.30.0"
RELEASE = "aws-root-exporter"
NAMESPACE = "monitoring"
SCENARIOS = sorted(path.name.removesuffix("-values.yaml") for path in (CHART / "ci").glob("*-values.yaml"))
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

PLACEHOLDER_RULES = """\
groups:
  - name: placeholder-root-activity
    rules:
      - alert: PlaceholderRootConsoleLogin
        expr: increase(aws_root_console_logins_total{outcome="success"}[10m]) > 0
        for: 0m
        labels:
          severity: critical
        annotations:
          summary: Root user console login.
          description: 'Root of account {{ $labels.account_id }} signed in ({{ $value }}).'
          runbook_url: https://example.invalid/runbook#placeholder
"""

PLACEHOLDER_DASHBOARD = json.dumps(
    {
        "title": "Placeholder <AWS root> & friends",
        "uid": "placeholder",
        "schemaVersion": 39,
        "panels": [{"type": "stat", "title": "Accounts", "targets": [{"expr": "count(aws_root_account_info)"}]}],
    },
    indent=2,
)

# Every setting the exporter knows, from the table in README.md (Configuration).
SETTINGS = set(
    re.findall(r"^\| `([a-z0-9_]+)` \|", (ROOT / "README.md").read_text().split("\n## Configuration\n")[1].split("\n## ")[0], re.M)
)

HARDENED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


# ----------------------------------------------------------------------------- helpers


def _load_sync_module():
    spec = importlib.util.spec_from_file_location("helm_sync_files", ROOT / "helm" / "sync_files.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


sync_files = _load_sync_module()


def _copy_chart(destination: Path, *, placeholders: bool) -> Path:
    chart = destination / "aws-root-exporter"
    shutil.copytree(CHART, chart, symlinks=False)
    if placeholders:
        alerts, dashboards = chart / "files" / "alerts", chart / "files" / "dashboards"
        if not list(alerts.glob("*.rules.yml")):
            (alerts / "placeholder.rules.yml").write_text(PLACEHOLDER_RULES, encoding="utf-8")
        if not list(dashboards.glob("*.json")):
            (dashboards / "placeholder.json").write_text(PLACEHOLDER_DASHBOARD, encoding="utf-8")
    return chart


@pytest.fixture(scope="module")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_chart(tmp_path_factory.mktemp("chart"), placeholders=True)


@pytest.fixture(scope="module")
def chart(chart_dir: Path):
    return helm_python.Chart.load(chart_dir)


def _scenario_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text(encoding="utf-8")) or {}


def _render(chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rendered = chart.render(copy.deepcopy(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def _kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _kinds(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _config_file(docs: list[dict[str, Any]]) -> str:
    """The exporter's config.yaml (dashboard ConfigMaps are the other ConfigMaps)."""
    (config_map,) = [doc for doc in _kinds(docs, "ConfigMap") if "config.yaml" in doc.get("data", {})]
    return config_map["data"]["config.yaml"]


def _workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    workloads = _kinds(docs, "Deployment") + _kinds(docs, "StatefulSet")
    assert len(workloads) == 1, [doc["kind"] for doc in workloads]
    return workloads[0]


def _exporter_container(workload: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "exporter")


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _schema_error(chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmValuesError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(caught.value)


def _alert_files(chart_dir: Path) -> list[Path]:
    return sorted((chart_dir / "files" / "alerts").glob("*.rules.yml"))


def _dashboard_files(chart_dir: Path) -> list[Path]:
    return sorted((chart_dir / "files" / "dashboards").glob("*.json"))


# ---------------------------------------------------------- CRD shape (no bundled schema)

# Prometheus durations: units in descending order, each at most once (5m, 1h30m, 0).
_DURATION = re.compile(r"^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _check_metadata(doc: dict[str, Any]) -> None:
    metadata = doc["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", metadata["name"]) and len(metadata["name"]) <= 63
    assert metadata["namespace"]
    for key, value in metadata.get("labels", {}).items():
        assert isinstance(value, str), f"label {key} must be a string"


def _check_service_monitor(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    _check_metadata(doc)
    spec = doc["spec"]
    assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    assert spec["selector"]["matchLabels"]
    assert spec["endpoints"], "a ServiceMonitor needs endpoints"
    for endpoint in spec["endpoints"]:
        allowed = {
            "port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "relabelings", "metricRelabelings",
            "tlsConfig", "basicAuth",
        }
        assert set(endpoint) <= allowed, set(endpoint) - allowed
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
        assert endpoint["scheme"] in {"http", "https"}
        assert _DURATION.match(endpoint["interval"]) and _DURATION.match(endpoint["scrapeTimeout"])
        assert isinstance(endpoint["honorLabels"], bool)
        if "tlsConfig" in endpoint:
            assert endpoint["scheme"] == "https"
            _check_safe_tls_config(endpoint["tlsConfig"])
        if "basicAuth" in endpoint:
            assert set(endpoint["basicAuth"]) == {"username", "password"}
            for selector in endpoint["basicAuth"].values():
                _check_key_selector(selector)


def _check_key_selector(selector: dict[str, Any]) -> None:
    """A core/v1 SecretKeySelector or ConfigMapKeySelector: {name, key[, optional]}."""
    assert {"name", "key"} <= set(selector) <= {"name", "key", "optional"}, selector
    assert isinstance(selector["name"], str) and selector["name"]
    assert isinstance(selector["key"], str) and re.fullmatch(r"[-._a-zA-Z0-9]+", selector["key"])


def _check_safe_tls_config(tls: dict[str, Any]) -> None:
    """prometheus-operator SafeTLSConfig (monitoring.coreos.com/v1): ca and cert are a
    SecretOrConfigMap (exactly one of secret/configMap), keySecret a SecretKeySelector."""
    assert set(tls) <= {"ca", "cert", "keySecret", "serverName", "insecureSkipVerify", "minVersion", "maxVersion"}, tls
    for name in ("ca", "cert"):
        if name in tls:
            assert len(tls[name]) == 1 and set(tls[name]) <= {"secret", "configMap"}, tls[name]
            _check_key_selector(next(iter(tls[name].values())))
    if "keySecret" in tls:
        _check_key_selector(tls["keySecret"])
    assert ("cert" in tls) == ("keySecret" in tls), "a client certificate needs its key"
    assert isinstance(tls.get("serverName", ""), str)
    assert isinstance(tls.get("insecureSkipVerify", False), bool)


def _check_prometheus_rule(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    _check_metadata(doc)
    assert set(doc["spec"]) == {"groups"}
    names = [group["name"] for group in doc["spec"]["groups"]]
    assert len(names) == len(set(names)), "rule group names must be unique within a PrometheusRule"
    for group in doc["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"}
        assert group["rules"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], (str, int)) and str(rule["expr"]).strip()
            assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if "for" in rule:
                assert _DURATION.match(rule["for"]), rule["for"]
            for mapping in ("labels", "annotations"):
                for key, value in rule.get(mapping, {}).items():
                    assert _LABEL_NAME.match(key) and isinstance(value, str), (key, value)


def _validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "ServiceMonitor":
        _check_service_monitor(doc)
    elif doc["kind"] == "PrometheusRule":
        _check_prometheus_rule(doc)
    else:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# ------------------------------------------------------------------------ every scenario


def test_scenarios_exist() -> None:
    assert {"default", "sharded", "all-optins", "static-credentials", "tls-basic-auth"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict_has_no_findings(chart_dir: Path, scenario: str) -> None:
    result = helm_python.lint(chart_dir, _scenario_values(scenario), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert result["errors"] == []
    assert result["messages"] == [], result["messages"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_validates(chart, scenario: str) -> None:
    docs = _render(chart, _scenario_values(scenario))
    assert docs
    for doc in docs:
        _validate(doc)
    names = [(doc["kind"], doc["metadata"]["name"]) for doc in docs]
    assert len(names) == len(set(names)), "two objects of one kind share a name"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hardened_pods(chart, scenario: str) -> None:
    docs = _render(chart, _scenario_values(scenario))
    pods = [_workload(docs)["spec"]["template"]["spec"]] + [pod["spec"] for pod in _kinds(docs, "Pod")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        for container in pod["containers"]:
            context = container["securityContext"]
            for key, expected in HARDENED_CONTAINER.items():
                assert context[key] == expected, (container["name"], key)
            assert context.get("privileged", False) is False


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_is_rendered_from_values(chart, scenario: str) -> None:
    docs = _render(chart, _scenario_values(scenario))
    assert not _kinds(docs, "Secret"), "the chart never creates Secrets: credentials come from existing ones"
    container = _exporter_container(_workload(docs))
    for name, item in _env(container).items():
        if name in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ROOT_EXPORTER_EXTERNAL_ID"}:
            assert "value" not in item and "secretKeyRef" in item["valueFrom"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_exporter_gets_only_settings_it_knows(chart, scenario: str) -> None:
    """The exporter exits 2 on an unknown AWS_ROOT_EXPORTER_* variable or config key."""
    docs = _render(chart, _scenario_values(scenario))
    container = _exporter_container(_workload(docs))
    for name in _env(container):
        if name.startswith("AWS_ROOT_EXPORTER_"):
            assert name.removeprefix("AWS_ROOT_EXPORTER_").lower() in SETTINGS, name
    config = yaml.safe_load(_config_file(docs)) or {}
    assert set(config) <= SETTINGS, set(config) - SETTINGS
    assert not {"external_id", "shard_index", "shard_count", "state_file"} & set(config)
    assert container["args"][:2] == ["serve", "--config=/etc/aws-root-exporter/config.yaml"]
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/etc/aws-root-exporter"]["readOnly"] is True


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_exporter_settings_load(chart, scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feed the rendered config file and environment to the exporter's own loader."""
    if importlib.util.find_spec("exporter") is None:
        monkeypatch.syspath_prepend(str(ROOT))
    import exporter.config.settings as settings
    docs = _render(chart, _scenario_values(scenario))
    container = _exporter_container(_workload(docs))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(_config_file(docs), encoding="utf-8")
    for name in list(os.environ):
        if name.startswith("AWS_ROOT_EXPORTER_"):
            monkeypatch.delenv(name)
    for name, item in _env(container).items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
        elif "fieldRef" in item.get("valueFrom", {}):
            monkeypatch.setenv(name, "0")
        else:
            monkeypatch.setenv(name, "from-a-secret")
    loaded = settings.load_settings(config_file)
    assert loaded.shard_count == int(_env(container).get("AWS_ROOT_EXPORTER_SHARD_COUNT", {"value": "1"})["value"])


# -------------------------------------------------------------------------- defaults


def test_defaults(chart) -> None:
    docs = _render(chart)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    container = _exporter_container(deployment)
    assert container["image"] == "ghcr.io/aws-root-exporter/aws-root-exporter:0.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 9784, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = _env(container)
    assert "AWS_ROOT_EXPORTER_SHARD_INDEX" not in env and "AWS_ROOT_EXPORTER_SHARD_COUNT" not in env
    # The state file lives on an emptyDir; /tmp is writable; nothing else is.
    state = env["AWS_ROOT_EXPORTER_STATE_FILE"]["value"]
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert state.startswith(mounts["state"] + "/") and "emptyDir" in volumes["state"]
    assert "emptyDir" in volumes["tmp"] and mounts["tmp"] == "/tmp"
    service = _one(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 9784, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_config_change_rolls_the_pods(chart) -> None:
    def checksum(values):
        return _workload(_render(chart, values))["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) != checksum({"config": {"posture_interval_seconds": 300}})


def test_image_tag_and_digest(chart) -> None:
    tagged = _exporter_container(_workload(_render(chart, {"image": {"tag": "1.2.3"}})))
    assert tagged["image"].endswith(":1.2.3")
    digest = "sha256:" + "a" * 64
    pinned = _exporter_container(_workload(_render(chart, {"image": {"tag": "1.2.3", "digest": digest}})))
    assert pinned["image"] == f"ghcr.io/aws-root-exporter/aws-root-exporter@{digest}"


def test_helm_test_pod_fetches_healthy(chart) -> None:
    pod = _one(_render(chart), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-I", "/etc/aws-root-exporter/probe.py", f"http://{RELEASE}.{NAMESPACE}.svc:9784/-/healthy"]
    assert {"name": "probe", "mountPath": "/etc/aws-root-exporter", "readOnly": True} in container["volumeMounts"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert not _kinds(_render(chart, {"test": {"enabled": False}}), "Pod")


def test_irsa_annotation_on_service_account(chart) -> None:
    arn = "arn:aws:iam::111111111111:role/aws-root-exporter"
    docs = _render(chart, {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": arn}}})
    account = _one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
    assert _workload(docs)["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    existing = _render(chart, {"serviceAccount": {"create": False, "name": "shared"}})
    assert not _kinds(existing, "ServiceAccount")
    assert _workload(existing)["spec"]["template"]["spec"]["serviceAccountName"] == "shared"


# -------------------------------------------------------------------------- sharding


def test_sharded_statefulset(chart) -> None:
    docs = _render(chart, _scenario_values("sharded"))
    assert not _kinds(docs, "Deployment")
    statefulset = _one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    env = _env(_exporter_container(statefulset))
    assert env["AWS_ROOT_EXPORTER_SHARD_COUNT"]["value"] == "3"
    index = env["AWS_ROOT_EXPORTER_SHARD_INDEX"]
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    # Kubernetes (>= 1.28) labels pod <name>-i with pod-index "i": the N pods get the
    # distinct indices 0..N-1, and only a StatefulSet guarantees each exists at most once.
    assert "value" not in index, "one pod template for all shards: the index cannot be a literal"
    assert statefulset["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    headless = [svc for svc in _kinds(docs, "Service") if svc["spec"].get("clusterIP") == "None"]
    assert [svc["metadata"]["name"] for svc in headless] == [statefulset["spec"]["serviceName"]]


def test_service_monitor_scrapes_each_shard_once(chart) -> None:
    """The ServiceMonitor must select the main Service only, not the headless one too."""
    docs = _render(chart, _scenario_values("sharded"))
    monitor = _one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]

    def selected(service: dict[str, Any]) -> bool:
        labels = service["metadata"]["labels"]
        if any(labels.get(key) != value for key, value in selector["matchLabels"].items()):
            return False
        for expression in selector.get("matchExpressions", []):
            assert expression["operator"] == "NotIn"
            if labels.get(expression["key"]) in expression["values"]:
                return False
        return True

    assert [svc["metadata"]["name"] for svc in _kinds(docs, "Service") if selected(svc)] == [RELEASE]


def test_more_replicas_than_one_are_refused(chart) -> None:
    assert "at '/replicas': maximum: got 2, want 1" in _schema_error(chart, {"replicas": 2})


# ------------------------------------------------------------------ static credentials


def test_static_credentials_come_from_the_existing_secret(chart) -> None:
    docs = _render(chart, _scenario_values("static-credentials"))
    env = _env(_exporter_container(_workload(docs)))
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "aws-root-exporter-credentials",
        "key": "AWS_ACCESS_KEY_ID",
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "aws-root-exporter-credentials",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert "AWS_SESSION_TOKEN" not in env
    with_token = _render(
        chart, {"aws": {"credentials": {"existingSecret": "creds", "sessionTokenKey": "token"}}}
    )
    token = _env(_exporter_container(_workload(with_token)))["AWS_SESSION_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": "token"}


def test_external_id_comes_from_a_secret(chart) -> None:
    docs = _render(chart, _scenario_values("all-optins"))
    env = _env(_exporter_container(_workload(docs)))
    assert env["AWS_ROOT_EXPORTER_EXTERNAL_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "aws-root-exporter-external-id",
        "key": "external-id",
    }


# ---------------------------------------------------------------------- schema checks

BAD_VALUES = [
    ({"sharding": {"shards": 0}}, "at '/sharding/shards': minimum: got 0, want 1"),
    ({"sharding": {"shards": "3"}}, "at '/sharding/shards': got string, want integer"),
    ({"replicas": -1}, "at '/replicas': minimum: got -1, want 0"),
    ({"image": {"tag": 1.5}}, "at '/image/tag': got number, want string"),
    ({"image": {"digest": "latest"}}, "at '/image/digest'"),
    ({"serviceMonitor": {"enabled": "true"}}, "at '/serviceMonitor/enabled': got string, want boolean"),
    ({"serviceMonitor": {"interval": "1 minute"}}, "at '/serviceMonitor/interval'"),
    ({"serviceMonitor": {"scrapeTimeout": "30s1m"}}, "at '/serviceMonitor/scrapeTimeout'"),
    ({"prometheusRule": {"enabled": "yes"}}, "at '/prometheusRule/enabled': got string, want boolean"),
    ({"prometheusRule": {"runbookBaseUrl": "wiki.example.com/runbook.md"}}, "at '/prometheusRule/runbookBaseUrl'"),
    ({"prometheusRule": {"runbookBaseUrl": "https://wiki.example.com/runbook#top"}}, "at '/prometheusRule/runbookBaseUrl'"),
    ({"dashboards": {"labelValue": 1}}, "at '/dashboards/labelValue': got number, want string"),
    ({"aws": {"credentials": {"secretAccessKey": "abc"}}}, "store the key in a Secret and set aws.credentials.existingSecret"),
    ({"aws": {"credentials": {"accessKeyId": "AKIA"}}}, "store the key in a Secret and set aws.credentials.existingSecret"),
    ({"aws": {"externalId": {"value": "s3cr3t"}}}, "store the external id in a Secret"),
    ({"config": {"external_id": "s3cr3t"}}, "put the external id in a Secret and set aws.externalId.existingSecret"),
    ({"extraConfig": {"external_id": "s3cr3t"}}, "put the external id in a Secret and set aws.externalId.existingSecret"),
    (
        {"extraEnv": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "abc"}]},
        "AWS keys, session tokens and the external id only with valueFrom.secretKeyRef",
    ),
    ({"config": {"shard_count": 2}}, "set sharding.shards"),
    ({"config": {"state_file": "/x"}}, "set stateFile.enabled"),
    ({"config": {"posture_interval": 60}}, "at '/config': additional properties 'posture_interval' not allowed"),
    ({"config": {"include_account_ids": [111111111111]}}, "at '/config/include_account_ids/0': got number, want string"),
    ({"config": {"account_mode": "org"}}, "at '/config/account_mode'"),
    ({"config": {"central_root_access_required": ["RootSession"]}}, "at '/config/central_root_access_required/0'"),
    ({"config": {"mfa_hardware_waived_when_fenced": "yes"}}, "at '/config/mfa_hardware_waived_when_fenced': got string, want boolean"),
    ({"unknownTopLevel": 1}, "additional properties 'unknownTopLevel' not allowed"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[json.dumps(v) for v, _ in BAD_VALUES])
def test_schema_rejects(chart, values: dict[str, Any], message: str) -> None:
    assert message in _schema_error(chart, values)


def test_schema_rejects_even_the_message_as_a_value(chart) -> None:
    """The `const` in a forbidden key only carries the message: no value passes."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    text = schema["properties"]["config"]["properties"]["external_id"]["allOf"][0]["const"]
    assert "'not' failed" in _schema_error(chart, {"config": {"external_id": text}})


def test_secret_env_with_value_from_is_accepted(chart) -> None:
    env = [{"name": "AWS_SESSION_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    container = _exporter_container(_workload(_render(chart, {"extraEnv": env})))
    assert _env(container)["AWS_SESSION_TOKEN"] == env[0]


# ------------------------------------------------------ PrometheusRule and dashboards


def test_prometheus_rule_holds_exactly_the_chart_alert_files(chart, chart_dir: Path) -> None:
    docs = _render(chart, {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}})
    rule = _one(docs, "PrometheusRule")
    expected = []
    for path in _alert_files(chart_dir):
        expected.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    assert expected, "the test chart holds at least the placeholder rule file"
    assert rule["spec"]["groups"] == expected
    assert rule["metadata"]["labels"]["release"] == "kps"
    # Prometheus templates in annotations pass through Helm untouched.
    annotations = [r.get("annotations", {}) for g in rule["spec"]["groups"] for r in g["rules"]]
    if any("placeholder" in path.name for path in _alert_files(chart_dir)):
        assert any("{{ $labels.account_id }}" in a.get("description", "") for a in annotations)


def test_runbook_base_url_is_a_value(chart, chart_dir: Path) -> None:
    """prometheusRule.runbookBaseUrl replaces the address before the "#" of every runbook_url,
    and nothing else of the rule files."""
    base = "https://git.example.com/sec/aws-root-exporter/blob/main/alerts/runbook.md?plain=1&$x"
    rule = _one(_render(chart, {"prometheusRule": {"enabled": True, "runbookBaseUrl": base}}), "PrometheusRule")
    expected = []
    for path in _alert_files(chart_dir):
        expected.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    urls = 0
    for group in expected:
        for r in group["rules"]:
            if "runbook_url" in r.get("annotations", {}):
                r["annotations"]["runbook_url"] = base + "#" + r["annotations"]["runbook_url"].split("#", 1)[1]
                urls += 1
    assert urls, "the chart's rule files hold runbook URLs"
    assert rule["spec"]["groups"] == expected
    # Unset: the files' own addresses, unchanged.
    default = _one(_render(chart, {"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert base not in json.dumps(default)


def test_no_prometheus_rule_unless_enabled(chart) -> None:
    assert not _kinds(_render(chart), "PrometheusRule")
    assert not _kinds(_render(chart), "ServiceMonitor")
    assert not _kinds(_render(chart), "NetworkPolicy")


def test_dashboard_configmaps_hold_exactly_the_chart_dashboards(chart, chart_dir: Path) -> None:
    docs = _render(chart, {"dashboards": {"enabled": True, "annotations": {"grafana_folder": "AWS"}}})
    maps = [doc for doc in _kinds(docs, "ConfigMap") if doc["metadata"]["labels"].get("grafana_dashboard") == "1"]
    files = {path.name: path.read_text(encoding="utf-8") for path in _dashboard_files(chart_dir)}
    assert files
    assert len(maps) == len(files), "one ConfigMap per dashboard"
    found: dict[str, str] = {}
    for config_map in maps:
        assert len(config_map["data"]) == 1
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "AWS"}
        found.update(config_map["data"])
    assert found == files, "dashboard JSON must arrive byte for byte"
    for content in found.values():
        json.loads(content)


def test_dashboard_label_is_configurable(chart) -> None:
    docs = _render(chart, {"dashboards": {"enabled": True, "label": "grafana_dash", "labelValue": "yes", "namespace": "grafana"}})
    maps = [doc for doc in _kinds(docs, "ConfigMap") if "grafana_dash" in doc["metadata"]["labels"]]
    assert maps and all(m["metadata"]["labels"]["grafana_dash"] == "yes" for m in maps)
    assert all(m["metadata"]["namespace"] == "grafana" for m in maps)
    assert not any("grafana_dashboard" in m["metadata"]["labels"] for m in maps)


def test_enabled_without_files_fails_clearly(tmp_path: Path) -> None:
    empty = _copy_chart(tmp_path, placeholders=False)
    for pattern in ("files/alerts/*.rules.yml", "files/dashboards/*.json"):
        for path in empty.glob(pattern):
            path.unlink()
    chart = helm_python.Chart.load(empty)
    with pytest.raises(helm_python.HelmError, match="holds no files/alerts/\\*.rules.yml"):
        chart.render({"prometheusRule": {"enabled": True}}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    with pytest.raises(helm_python.HelmError, match="holds no files/dashboards/\\*.json"):
        chart.render({"dashboards": {"enabled": True}}, name=RELEASE, namespace=NAMESPACE, is_install=True)


# ------------------------------------------------------------------- network policy


def test_network_policy(chart) -> None:
    docs = _render(chart, _scenario_values("all-optins"))
    policy = _one(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ingress = policy["spec"]["ingress"][0]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = ingress["from"]
    assert any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "test" for peer in peers)
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP"), (80, "TCP")} <= egress_ports
    open_ingress = _one(_render(chart, {"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert "from" not in open_ingress["spec"]["ingress"][0]


# ------------------------------------------------------------- chart copies vs repo


def test_chart_copies_equal_repository_files() -> None:
    problems = sync_files.drift()
    assert problems == [], "\n".join(problems) + "\nrun: python3 helm/sync_files.py"


def test_drift_detection_and_sync(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    chart = repo / "helm" / "aws-root-exporter"
    (repo / "alerts").mkdir(parents=True)
    (repo / "dashboards").mkdir()
    (chart / "files" / "alerts").mkdir(parents=True)
    (repo / "alerts" / "root.rules.yml").write_text(PLACEHOLDER_RULES)
    (repo / "alerts" / "alertmanager.example.yml").write_text("route: {}\n")  # not a rule file
    (repo / "dashboards" / "root.json").write_text(PLACEHOLDER_DASHBOARD)
    (chart / "files" / "alerts" / "old.rules.yml").write_text("groups: []\n")
    assert sorted(sync_files.drift(repo, chart)) == [
        "files/alerts/old.rules.yml: stale copy, alerts/old.rules.yml does not exist",
        "files/alerts/root.rules.yml: missing copy of alerts/root.rules.yml",
        "files/dashboards/root.json: missing copy of dashboards/root.json",
    ]
    sync_files.sync(repo, chart)
    assert sync_files.drift(repo, chart) == []
    assert sorted(p.name for p in (chart / "files" / "alerts").iterdir()) == ["root.rules.yml"]
    (repo / "dashboards" / "root.json").write_text("{}")
    assert sync_files.drift(repo, chart) == ["files/dashboards/root.json: differs from dashboards/root.json"]


def test_helm_follows_symlinks_but_not_dangling_ones(tmp_path: Path) -> None:
    """Why the chart holds copies: a file symlink is read through (Helm logs it), but a
    dangling one (e.g. alerts/ not checked out) makes the whole chart fail to load."""
    chart = _copy_chart(tmp_path, placeholders=False)
    outside = tmp_path / "outside.rules.yml"
    outside.write_text(PLACEHOLDER_RULES)
    link = chart / "files" / "alerts" / "linked.rules.yml"
    link.symlink_to(outside)
    docs = _render(helm_python.Chart.load(chart), {"prometheusRule": {"enabled": True}})
    groups = [group["name"] for group in _one(docs, "PrometheusRule")["spec"]["groups"]]
    assert "placeholder-root-activity" in groups
    outside.unlink()
    with pytest.raises(helm_python.HelmChartLoadError, match="symlink"):
        helm_python.Chart.load(chart)


def test_repository_chart_holds_no_placeholders() -> None:
    names = [p.name for p in (CHART / "files").rglob("*") if p.is_file()]
    assert not [name for name in names if name.startswith("placeholder")]
    for path in (CHART / "files").rglob("*"):
        assert not path.is_symlink(), f"{path} is a symlink: the chart holds copies"


def test_job_label_is_stable_for_the_alert_rules(chart) -> None:
    """The alert rules select job="aws-root-exporter", whatever the release is called."""
    rendered = chart.render(
        {"serviceMonitor": {"enabled": True}}, name="security-prod", namespace=NAMESPACE, is_install=True
    )
    docs = [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    monitor = _one(docs, "ServiceMonitor")
    service = next(doc for doc in _kinds(docs, "Service") if doc["metadata"]["name"] == monitor["metadata"]["name"])
    assert service["metadata"]["name"] == "security-prod-aws-root-exporter"
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "aws-root-exporter"


def test_schema_knows_every_documented_setting() -> None:
    """values.schema.json types every setting of README.md (Configuration), and no other: a new
    setting fails here until the schema (and values.yaml) learn it (extraConfig meanwhile)."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    config = schema["properties"]["config"]
    assert config["additionalProperties"] is False
    assert set(config["properties"]) == SETTINGS
    managed = {name for name, prop in config["properties"].items() if "allOf" in prop}
    assert managed == {"listen_address", "shard_index", "shard_count", "state_file", "external_id", "web_config_file"}
    assert set(schema["properties"]["extraConfig"]["properties"]) == managed
