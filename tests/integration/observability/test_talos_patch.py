# SPDX-License-Identifier: GPL-3.0-or-later
"""The observability layer's Talos patches (roles/observability/templates/talos_metrics.yml.j2),
rendered as the inventory renders them and applied with the real talosctl to a generated machine
config, which talosctl's own validator accepts; and the CRDs of the role and the stand-in chart
are the same file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "observability"
CACHE = Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache" / "homecluster"))
ANY = ".".join(["0"] * 4)  # the address the patches make the components listen on
TALOSCTL = shutil.which("talosctl", path=str(CACHE / "bin")) or shutil.which("talosctl")


def render(**variables) -> list:
    template = jinja2.Template((ROLE / "templates" / "talos_metrics.yml.j2").read_text())
    return yaml.safe_load(template.render(**variables))


@pytest.mark.skipif(TALOSCTL is None, reason="talosctl is built by make tools")
@pytest.mark.parametrize("version", ["v1.14", "v1.13"])
@pytest.mark.parametrize("kind", ["controlplane", "worker"])
def test_patch_is_valid_talos_config(tmp_path: Path, kind: str, version: str) -> None:
    subprocess.run([TALOSCTL, "gen", "config", "lab", "https://192.0.2.10:6443", "--output-types", kind,
                    "--talos-version", version, "-o", str(tmp_path / "base.yaml")],
                   check=True, capture_output=True)
    patches = render(observability_etcd_metrics_port=2381, talos_bootstrap_talos_version=version)
    docs = patches["all"] + (patches["controlplane"] if kind == "controlplane" else [])
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump_all(docs))
    subprocess.run([TALOSCTL, "machineconfig", "patch", str(tmp_path / "base.yaml"),
                    "--patch", "@" + str(tmp_path / "patch.yaml"), "-o", str(tmp_path / "out.yaml")],
                   check=True, capture_output=True)
    result = subprocess.run([TALOSCTL, "validate", "--mode", "metal", "--config", str(tmp_path / "out.yaml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    out = [d for d in yaml.safe_load_all((tmp_path / "out.yaml").read_text()) if d]
    by_kind = {d.get("kind", "v1alpha1"): d for d in out}
    main = next(d for d in out if "machine" in d)
    if version == "v1.14":
        kubelet_args = by_kind["KubeletConfig"]["extraArgs"]
    else:
        kubelet_args = main["machine"]["kubelet"]["extraArgs"]
    assert kubelet_args["rotate-server-certificates"] == "true"
    if kind == "controlplane":
        assert main["cluster"]["etcd"]["extraArgs"]["listen-metrics-urls"] == "http://" + ANY + ":2381"
        if version == "v1.14":
            assert by_kind["KubeControllerManagerConfig"]["extraArgs"]["bind-address"] == ANY
            assert by_kind["KubeSchedulerConfig"]["extraArgs"]["bind-address"] == ANY
        else:
            assert main["cluster"]["controllerManager"]["extraArgs"]["bind-address"] == ANY


def test_the_port_follows_the_inventory() -> None:
    etcd = render(observability_etcd_metrics_port=2399)["controlplane"][0]["cluster"]["etcd"]
    assert etcd["extraArgs"]["listen-metrics-urls"] == "http://" + ANY + ":2399"


def test_stand_in_crds_are_the_roles() -> None:
    # the role ships one single-document file per CRD; the stand-in chart's crds/ holds the same objects
    role = sorted((yaml.safe_load(f.read_text()) for f in (ROLE / "files" / "crds").glob("*.yaml")),
                  key=lambda d: d["metadata"]["name"])
    crds = ROOT / "lab" / "charts" / "kube-prometheus-stack" / "charts" / "crds" / "crds"
    chart = sorted((d for d in yaml.safe_load_all((crds / "monitoring.coreos.com.yaml").read_text()) if d),
                   key=lambda d: d["metadata"]["name"])
    assert role == chart
    assert all(f.name == yaml.safe_load(f.read_text())["metadata"]["name"] + ".yaml"
               for f in (ROLE / "files" / "crds").glob("*.yaml"))
    kinds = {d["spec"]["names"]["kind"]: [v["name"] for v in d["spec"]["versions"]] for d in role}
    assert kinds == {"Alertmanager": ["v1"], "AlertmanagerConfig": ["v1alpha1"], "PodMonitor": ["v1"],
                     "Probe": ["v1"], "PrometheusAgent": ["v1alpha1"], "Prometheus": ["v1"],
                     "PrometheusRule": ["v1"], "ScrapeConfig": ["v1alpha1"], "ServiceMonitor": ["v1"],
                     "ThanosRuler": ["v1"]}
