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


@pytest.mark.parametrize(("chart", "values", "key"), [
    ("rook-ceph-cluster", {"cephClusterSpec": {"storage": {"useAllNode": False}}}, "useAllNode"),
    ("rook-ceph-cluster", {"toolbox": {"enable": True}}, "enable"),
    ("rook-ceph-cluster", {"cephClusterSpec": {"cleanupPolicy": {"confirmation": "yes"}}}, "confirmation"),
    ("rook-ceph", {"csi": {"enableRBDDriver": True}}, "enableRBDDriver"),
    ("rook-ceph", {"crd": {"enabled": True}}, "crd"),
    ("openebs", {"localpv-provisioner": {"hostpathClass": {"basepath": "/x"}}}, "basepath"),
    ("openebs", {"engines": {"replicated": {"mayaStor": {"enabled": False}}}}, "mayaStor"),
])
def test_misspelt_or_invalid_values_are_refused(chart, values, key, tmp_path):
    proc = template(chart, values, tmp_path)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert key in proc.stderr


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
