# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitors the observability layer adds for earlier layers (roles/observability/vars/main.yml,
_observability_layer_monitor_defs) select what those layers' charts create: each chart is rendered
with the real helm, with the values its role gives, and every ServiceMonitor must select a Service
(and name one of its ports) and every PodMonitor a pod template (and name one of its container
ports), in a namespace the monitor looks in. A monitor that matches nothing scrapes nothing and
says nothing, so this is the only place such a mistake shows."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHARTS = ROOT / "lab" / "charts"
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
HELM = shutil.which("helm", path=str(CACHE / "bin")) or shutil.which("helm")


def role_defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


CILIUM = role_defaults("cilium")

# layer -> the charts whose objects its monitors must select: (chart, release, namespace, values)
RENDERED = {
    "cert-manager": [("cert-manager", "cert-manager", "cert-manager", {})],
    "cilium": [("cilium", "cilium", "kube-system",
                {"prometheus": {"enabled": CILIUM["cilium_metrics"]},
                 "hubble": {"enabled": CILIUM["cilium_hubble_enabled"],
                            "metrics": {"enabled": CILIUM["cilium_hubble_metrics"]}}})],
    "istio-ambient": [("istiod", "istiod", "istio-system", {}), ("ztunnel", "ztunnel", "istio-system", {})],
    # the edge layer installs the chart twice (public and internal DNS)
    "external-dns": [("external-dns", "external-dns-cloudflare", "external-dns", {}),
                     ("external-dns", "external-dns-internal", "external-dns", {})],
}
# Made by operators, not charts (the Flux controllers by flux-operator from a FluxInstance, the
# Ceph manager's Service by Rook from the CephCluster): not rendered here.
OPERATOR_MADE = {"flux", "rook-ceph"}


def monitor_defs() -> dict:
    data = yaml.safe_load((ROOT / "roles" / "observability" / "vars" / "main.yml").read_text())
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - YAML values, not HTML

    def render(value):
        if isinstance(value, str) and "{{" in value:
            return env.from_string(value).render()
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v) for v in value]
        return value
    return render(data["_observability_layer_monitor_defs"])


def helm_template(chart: str, release: str, namespace: str, values: dict, tmp_path: Path) -> list:
    vf = tmp_path / f"{release}-values.yaml"
    vf.write_text(yaml.safe_dump(values))
    out = subprocess.run([HELM, "template", release, str(CHARTS / chart), "-n", namespace, "-f", str(vf)],
                         capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    for d in docs:
        d.setdefault("metadata", {}).setdefault("namespace", namespace)
    return docs


def labels_match(selector: dict, labels: dict) -> bool:
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return False  # an empty selector selects everything: never what a layer monitor means
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]) \
                or (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def in_namespaces(monitor: dict, namespace: str) -> bool:
    sel = monitor["spec"].get("namespaceSelector") or {}
    if sel.get("any"):
        return True
    names = sel.get("matchNames")
    return namespace in names if names else namespace == monitor["metadata"].get("namespace")


def pod_templates(objects: list) -> list:
    return [(o["metadata"]["namespace"], o["spec"]["template"]) for o in objects
            if o.get("kind") in ("Deployment", "DaemonSet", "StatefulSet")]


def service_port_ok(endpoint: dict, service: dict, objects: list) -> bool:
    ports = service["spec"].get("ports") or []
    if "port" in endpoint:
        return any(p.get("name") == endpoint["port"] for p in ports)
    target = endpoint.get("targetPort")
    if not any(p.get("targetPort", p.get("port")) == target or p.get("port") == target for p in ports):
        return False
    # a numeric targetPort reaches the pods behind the Service: one of them must listen on it
    backends = [t for ns, t in pod_templates(objects) if ns == service["metadata"]["namespace"]
                and labels_match({"matchLabels": service["spec"].get("selector") or {}},
                                 t["metadata"].get("labels") or {})]
    return any(c.get("containerPort") == target for t in backends for ctr in t["spec"]["containers"]
               for c in ctr.get("ports") or [])


def problems(monitor: dict, objects: list) -> list:
    """Why a monitor would scrape nothing in these objects; [] when every endpoint has a target."""
    spec, kind, name = monitor["spec"], monitor["kind"], monitor["metadata"]["name"]
    if kind == "ServiceMonitor":
        services = [o for o in objects if o.get("kind") == "Service"
                    and in_namespaces(monitor, o["metadata"]["namespace"])
                    and labels_match(spec["selector"], o["metadata"].get("labels") or {})]
        if not services:
            return [f"ServiceMonitor {name}: no Service carries the labels {spec['selector']}"]
        return [f"ServiceMonitor {name}: endpoint {e} matches no port of {[s['metadata']['name'] for s in services]}"
                for e in spec["endpoints"] if not any(service_port_ok(e, s, objects) for s in services)]
    if kind == "PodMonitor":
        pods = [t for ns, t in pod_templates(objects) if in_namespaces(monitor, ns)
                and labels_match(spec["selector"], t["metadata"].get("labels") or {})]
        if not pods:
            return [f"PodMonitor {name}: no pod template carries the labels {spec['selector']}"]
        names = {p.get("name") for t in pods for c in t["spec"]["containers"] for p in c.get("ports") or []}
        return [f"PodMonitor {name}: no container port named {e['port']} (there are {sorted(n for n in names if n)})"
                for e in spec["podMetricsEndpoints"] if e.get("port") not in names]
    return [f"{kind} {name}: not a monitor kind"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    if HELM is None:
        pytest.skip("helm is built by make tools")
    tmp = tmp_path_factory.mktemp("charts")
    return {layer: [o for args in charts for o in helm_template(*args, tmp)] for layer, charts in RENDERED.items()}


def test_every_layer_with_monitors_is_checked_here() -> None:
    assert set(monitor_defs()) == set(RENDERED) | OPERATOR_MADE


@pytest.mark.parametrize("layer", sorted(RENDERED))
def test_each_monitor_selects_a_target_of_its_layer(rendered: dict, layer: str) -> None:
    monitors = monitor_defs()[layer]
    assert monitors
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert problems(monitor, rendered[layer]) == []


def test_external_dns_monitor_covers_both_instances(rendered: dict) -> None:
    (monitor,) = monitor_defs()["external-dns"]
    services = [o["metadata"]["name"] for o in rendered["external-dns"] if o["kind"] == "Service"
                and labels_match(monitor["spec"]["selector"], o["metadata"].get("labels") or {})]
    assert sorted(services) == ["external-dns-cloudflare", "external-dns-internal"]


def test_planted_mistakes_are_found(rendered: dict) -> None:
    defs = monitor_defs()
    wrong_label = copy.deepcopy(defs["istio-ambient"][0])
    wrong_label["spec"]["selector"]["matchLabels"]["app"] = "pilot"
    assert "no Service carries" in problems(wrong_label, rendered["istio-ambient"])[0]
    wrong_port = copy.deepcopy(defs["istio-ambient"][1])
    wrong_port["spec"]["podMetricsEndpoints"][0]["port"] = "stats"
    assert "no container port named stats" in problems(wrong_port, rendered["istio-ambient"])[0]
    wrong_ns = copy.deepcopy(defs["cert-manager"][0])
    wrong_ns["spec"]["namespaceSelector"]["matchNames"] = ["monitoring"]
    assert problems(wrong_ns, rendered["cert-manager"])
    wrong_target = copy.deepcopy(defs["cert-manager"][0])
    wrong_target["spec"]["endpoints"][0]["targetPort"] = 9403
    assert "matches no port" in problems(wrong_target, rendered["cert-manager"])[0]


def test_cilium_metrics_off_leaves_the_monitor_nothing(tmp_path: Path) -> None:
    if HELM is None:
        pytest.skip("helm is built by make tools")
    objects = helm_template("cilium", "cilium", "kube-system", {}, tmp_path)  # upstream's defaults: off
    found = problems(monitor_defs()["cilium"][0], objects)
    assert found and "no container port named prometheus" in found[0]
