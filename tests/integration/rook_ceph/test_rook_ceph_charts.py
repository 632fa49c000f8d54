# SPDX-License-Identifier: GPL-3.0-or-later
"""The stand-in charts for rook_ceph render with the values the role sets and refuse misspelt keys."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHARTS = ROOT / "lab" / "charts"
HELM = shutil.which("helm") or str(Path(os.environ.get("HOMECLUSTER_CACHE", Path.home() / ".cache/homecluster"))
                                   / "bin" / "helm")

# What the role sends (molecule/rook_ceph shows the same through platform_component), trimmed to
# the parts each case needs.
CLUSTER_VALUES = {
    "operatorNamespace": "rook-ceph",
    "clusterName": "rook-ceph",
    "toolbox": {"enabled": True},
    "monitoring": {"enabled": False},
    "cephImage": {"repository": "quay.io/ceph/ceph", "tag": "v19.2.3"},
    "cephClusterSpec": {
        "dataDirHostPath": "/var/lib/rook",
        "mon": {"count": 3, "allowMultiplePerNode": False},
        "mgr": {"count": 2, "allowMultiplePerNode": False},
        "dashboard": {"enabled": False, "ssl": True},
        "storage": {"useAllNodes": False, "useAllDevices": False,
                    "nodes": [{"name": "w1", "devices": [{"name": "sdb"}]}]},
    },
    "cephBlockPools": [{"name": "replicapool", "spec": {"failureDomain": "host", "replicated": {"size": 3}},
                        "storageClass": {"enabled": True, "name": "ceph-block", "isDefault": True,
                                         "reclaimPolicy": "Delete", "allowVolumeExpansion": True,
                                         "volumeBindingMode": "Immediate", "parameters": {"imageFormat": "2"}}}],
    "cephFileSystems": [],
    "cephObjectStores": [],
}


def template(chart: str, values: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    if not Path(HELM).exists():
        pytest.skip("helm is not built yet (make tools)")
    vf = tmp_path / "values.yaml"
    vf.write_text(yaml.safe_dump(values))
    return subprocess.run([HELM, "template", "t", str(CHARTS / chart), "-n", "rook-ceph", "-f", str(vf)],
                          capture_output=True, text=True, check=False, timeout=120)


def test_cluster_chart_renders_the_role_values(tmp_path):
    proc = template("rook-ceph-cluster", CLUSTER_VALUES, tmp_path)
    assert proc.returncode == 0, proc.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(proc.stdout) if d}
    cluster = docs[("CephCluster", "rook-ceph")]
    assert cluster["spec"]["storage"]["nodes"] == [{"name": "w1", "devices": [{"name": "sdb"}]}]
    assert cluster["spec"]["cephVersion"]["image"] == "quay.io/ceph/ceph:v19.2.3"
    sc = docs[("StorageClass", "ceph-block")]
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == "rook-ceph.rbd.csi.ceph.com" and sc["parameters"]["pool"] == "replicapool"
    assert ("Deployment", "rook-ceph-tools") in docs


@pytest.mark.parametrize(("chart", "values", "key", "nearest"), [
    ("rook-ceph-cluster", {"toolbox": {"enable": True}}, "toolbox.enable", "toolbox.enabled"),
    ("rook-ceph-cluster", {"cephImage": {"tags": "v19"}}, "cephImage.tags", "cephImage.tag"),
    ("rook-ceph", {"csi": {"enableRBDDriver": True}}, "csi.enableRBDDriver", "csi.enableRbdDriver"),
    ("rook-ceph", {"crd": {"enabled": True}}, "crd", "crds"),
    ("openebs", {"localpv-provisioner": {"hostpathClass": {"basepath": "/x"}}},
     "localpv-provisioner.hostpathClass.basepath", "localpv-provisioner.hostpathClass.basePath"),
    ("openebs", {"engines": {"replicated": {"mayaStor": {"enabled": False}}}},
     "engines.replicated.mayaStor", "engines.replicated.mayastor"),
])
def test_misspelt_values_are_refused_by_the_values_key_check(chart, values, key, nearest, collection_module):
    """Upstream's Rook and OpenEBS charts ship no values.schema.json (nor do the stand-ins): the
    mechanism's values-key check, against the chart's defaults and subcharts, refuses the key."""
    if not Path(HELM).exists():
        pytest.skip("helm is not built yet (make tools)")
    version = yaml.safe_load((CHARTS / chart / "Chart.yaml").read_text())["version"]
    res = collection_module("platform_components", {
        "components": [{"name": "t", "namespace": "rook-ceph", "values_variable": f"{chart}_values",
                        "chart": {"name": chart, "version": version, "repo": str(CHARTS)}, "values": values}],
        "action": "preflight", "kube_version": "v1.35.0", "collect_problems": True,
        "helm_path": HELM})
    assert not res.get("failed"), res.get("msg")
    problems = {p["key"]: p["message"] for p in res["problems"]}
    assert key in problems, res["problems"]
    if nearest:
        assert f"the nearest real key is {nearest}" in problems[key]


def test_openebs_hostpath_class_uses_the_base_path(tmp_path):
    values = {"engines": {"local": {"lvm": {"enabled": False}, "zfs": {"enabled": False}},
                          "replicated": {"mayastor": {"enabled": False}}},
              "localpv-provisioner": {"localpv": {"basePath": "/var/mnt/openebs-local"},
                                      "hostpathClass": {"enabled": True, "name": "openebs-hostpath",
                                                        "isDefaultClass": False,
                                                        "basePath": "/var/mnt/openebs-local"}},
              "loki": {"enabled": False}, "alloy": {"enabled": False}}
    proc = template("openebs", values, tmp_path)
    assert proc.returncode == 0, proc.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(proc.stdout) if d}
    sc = docs[("StorageClass", "openebs-hostpath")]
    assert "/var/mnt/openebs-local" in sc["metadata"]["annotations"]["cas.openebs.io/config"]
    assert "storageclass.kubernetes.io/is-default-class" not in sc["metadata"]["annotations"]
    assert ("Deployment", "t-localpv-provisioner") in docs
