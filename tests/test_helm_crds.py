"""The chart's ServiceMonitor and PrometheusRule against the prometheus-operator CRDs.

kubernetes-validate knows only the built-in kinds; the CRDs' own `openAPIV3Schema`
(vendored in tests/fixtures/prometheus-operator-crds/, see SOURCE there) is what the API
server checks a custom resource against. Every object of every ci/*-values.yaml scenario,
rendered by Helm, must validate; deliberately broken ones must not.

The schema is OpenAPI v3 with Kubernetes extensions, turned into JSON Schema (draft 4, the
dialect OpenAPI 3.0 schemas are built on) as the API server reads it:
- `x-kubernetes-int-or-string: true`: an integer or a string.
- `x-kubernetes-list-type: map` with `x-kubernetes-list-map-keys`: no two items share the
  keys (e.g. two rule groups with one name); `set`: no two items are equal.
- An object with `properties` takes no other field: `kubectl apply` validates fields
  strictly by default (kubectl 1.27+), and the API server would otherwise drop the unknown
  field silently (a typo such as `scrapeTimout` would lose the setting without a word).

The dashboard ConfigMaps are checked against what the Grafana sidecar of the
kube-prometheus-stack chart selects by default (its values.yaml, grafana.sidecar.dashboards:
`label: grafana_dashboard`, `labelValue: "1"`, `searchNamespace: ALL`; the Grafana chart's
`folderAnnotation` is unset by default, so a folder annotation is only what the values ask).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .test_helm import CRD_KINDS, SCENARIOS, _kinds, _render, _scenario_values, chart, chart_dir  # noqa: F401 (fixtures)

CRDS = Path(__file__).parent / "fixtures" / "prometheus-operator-crds"
CONFIGMAP_MAX_BYTES = 1024 * 1024  # the API server's limit on an object's size


def _k8s_to_jsonschema(node: Any) -> Any:
    if isinstance(node, list):
        return [_k8s_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _k8s_to_jsonschema(value) for key, value in node.items() if key != "description"}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        # controller-gen also writes the anyOf itself; the extension alone means the same.
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    pattern = out.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^(?i)"):
        # Go's RE2 (the API server's) takes a flag group anywhere; Python's re only first.
        out["pattern"] = "(?i)^" + pattern[len("^(?i)"):]
    if out.get("nullable"):
        out["type"] = [out["type"], "null"]
    if out.get("type") == "object" and "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def _list_map_keys(validator: Any, keys: list[str], instance: Any, schema: dict[str, Any]) -> Iterator[jsonschema.ValidationError]:
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen: set[tuple[str, ...]] = set()
    for item in instance:
        key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate entries for key {dict(zip(keys, key))} (x-kubernetes-list-type: map)")
        seen.add(key)


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator[jsonschema.ValidationError]:
    if list_type == "set" and isinstance(instance, list):
        items = [json.dumps(item, sort_keys=True) for item in instance]
        if len(items) != len(set(items)):
            yield jsonschema.ValidationError("duplicate items (x-kubernetes-list-type: set)")


CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"x-kubernetes-list-map-keys": _list_map_keys, "x-kubernetes-list-type": _list_type}
)


def _load_crds() -> dict[tuple[str, str], Any]:
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        for version in crd["spec"]["versions"]:
            if version["served"]:
                api_version = f"{crd['spec']['group']}/{version['name']}"
                schema = _k8s_to_jsonschema(version["schema"]["openAPIV3Schema"])
                CrdValidator.check_schema(schema)
                validators[(api_version, crd["spec"]["names"]["kind"])] = CrdValidator(schema)
    return validators


VALIDATORS = _load_crds()


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """What the API server would refuse in a custom resource, as 'path: message' lines."""
    validator = VALIDATORS.get((doc.get("apiVersion"), doc.get("kind")))
    if validator is None:
        return [f"no served CRD for {doc.get('apiVersion')} {doc.get('kind')}"]
    return sorted(
        "/".join(map(str, error.absolute_path)) + ": " + error.message
        for error in validator.iter_errors(doc)
    )


def test_vendored_crds_are_the_ones_the_chart_renders() -> None:
    assert set(VALIDATORS) == {("monitoring.coreos.com/v1", kind) for kind in CRD_KINDS}
    source = (CRDS / "SOURCE").read_text(encoding="utf-8")
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert crd["metadata"]["annotations"]["operator.prometheus.io/version"] in source
        assert path.name in source


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_custom_resource_validates_against_its_crd(chart, scenario: str) -> None:
    docs = [doc for doc in _render(chart, _scenario_values(scenario)) if doc["kind"] in CRD_KINDS]
    for doc in docs:
        assert crd_errors(doc) == [], f"{doc['kind']} {doc['metadata']['name']}"
    enabled = {kind for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PrometheusRule", "prometheusRule"))
               if _scenario_values(scenario).get(key, {}).get("enabled")}
    assert {doc["kind"] for doc in docs} == enabled


def _all_optins(chart) -> dict[str, dict[str, Any]]:
    values = _scenario_values("all-optins")
    values["serviceMonitor"]["enabled"] = values["prometheusRule"]["enabled"] = True
    docs = _render(chart, values)
    return {kind: _kinds(docs, kind)[0] for kind in CRD_KINDS}


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
    node = doc
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()

BROKEN = [
    ("ServiceMonitor", "spec/endpoints/0/interval", "30 seconds", "spec/endpoints/0/interval: '30 seconds' does not match"),
    ("ServiceMonitor", "spec/endpoints/0/scrapeTimout", "10s", "spec/endpoints/0: Additional properties are not allowed ('scrapeTimout' was unexpected)"),
    ("ServiceMonitor", "spec/endpoints/0/scheme", "ftp", "spec/endpoints/0/scheme: 'ftp' is not one of"),
    ("ServiceMonitor", "spec/endpoints/0/honorLabels", "yes", "spec/endpoints/0/honorLabels: 'yes' is not of type 'boolean'"),
    ("ServiceMonitor", "spec/selector", _DELETE, "spec: 'selector' is a required property"),
    ("PrometheusRule", "spec/groups/0/rules/0/for", "10 minutes", "spec/groups/0/rules/0/for: '10 minutes' does not match"),
    ("PrometheusRule", "spec/groups/0/rules/0/expr", _DELETE, "spec/groups/0/rules/0: 'expr' is a required property"),
    ("PrometheusRule", "spec/groups/0/rules/0/expr", ["up"], "spec/groups/0/rules/0/expr: ['up'] is not valid under any of the given schemas"),
    ("PrometheusRule", "spec/groups/0/rules/0/labels", {"severity": 3}, "spec/groups/0/rules/0/labels/severity: 3 is not of type 'string'"),
    ("PrometheusRule", "spec/groups/0/name", "", "spec/groups/0/name: '' should be non-empty"),
]


@pytest.mark.parametrize("kind,path,value,message", BROKEN, ids=[f"{k}:{p}" for k, p, _, _ in BROKEN])
def test_a_broken_custom_resource_does_not_validate(chart, kind: str, path: str, value: Any, message: str) -> None:
    good = _all_optins(chart)[kind]
    assert crd_errors(good) == []
    errors = crd_errors(_set(good, path, value))
    assert any(error.startswith(message) for error in errors), errors


def test_two_rule_groups_with_one_name_do_not_validate(chart) -> None:
    rule = _all_optins(chart)["PrometheusRule"]
    groups = rule["spec"]["groups"]
    assert len(groups) >= 2 and crd_errors(rule) == []
    broken = _set(rule, "spec/groups/1/name", groups[0]["name"])
    assert any("duplicate entries for key" in error for error in crd_errors(broken)), crd_errors(broken)


def test_an_integer_expression_is_valid_as_in_the_crd(chart) -> None:
    """`expr` is int-or-string: `expr: 1` is a valid rule, and the conversion must say so."""
    rule = _all_optins(chart)["PrometheusRule"]
    assert crd_errors(_set(rule, "spec/groups/0/rules/0/expr", 1)) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_dashboard_configmaps_are_what_the_kube_prometheus_stack_sidecar_selects(chart, scenario: str) -> None:
    values = _scenario_values(scenario)
    maps = [doc for doc in _kinds(_render(chart, values), "ConfigMap") if "grafana_dashboard" in doc["metadata"].get("labels", {})]
    if not values.get("dashboards", {}).get("enabled"):
        assert maps == []
        return
    assert maps
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        # The sidecar writes each key as a file; Grafana's file provider reads *.json.
        assert all(key.endswith(".json") for key in config_map["data"])
        assert len(json.dumps(config_map).encode()) < CONFIGMAP_MAX_BYTES
        # A folder annotation only where the values ask (the sidecar's folderAnnotation is unset by default).
        assert config_map["metadata"].get("annotations", {}) == values["dashboards"].get("annotations", {})
