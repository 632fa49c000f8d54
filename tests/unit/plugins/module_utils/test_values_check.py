# SPDX-License-Identifier: GPL-3.0-or-later
"""The values-key check against a chart's default values (subcharts included)."""
from __future__ import annotations

import io
import json
import tarfile

from ansible_collections.homecluster.platform.plugins.module_utils import _values_check as vc

CILIUM_LIKE = {
    "cgroup": {"autoMount": {"enabled": True, "resources": {}}, "hostRoot": "/run/cilium/cgroupv2"},
    "nodePort": {"enabled": False, "directRoutingDevice": ""},
    "hubble": {"enabled": True, "relay": {"enabled": False}},
    "podAnnotations": {},
    "extraConfig": {},
    "tolerations": [{"operator": "Exists"}],
    "k8sServiceHost": "",
    "resources": {"requests": {"cpu": "100m"}},
    "operator": {"replicas": 2, "podLabels": {"a": "b"}},
}


def keys(problems):
    return {p["key"]: p["nearest"] for p in problems}


def test_known_keys_pass():
    values = {"cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
              "hubble": {"relay": {"enabled": True}}, "k8sServiceHost": "localhost"}
    assert vc.check_values(values, CILIUM_LIKE) == []


def test_a_misspelt_key_names_the_nearest_real_one():
    got = keys(vc.check_values({"cgroup": {"automount": {"enabled": False}}}, CILIUM_LIKE))
    assert got == {"cgroup.automount": "cgroup.autoMount"}
    got = keys(vc.check_values({"hubble": {"rellay": {"enabled": True}}}, CILIUM_LIKE))
    assert got == {"hubble.rellay": "hubble.relay"}


def test_a_key_at_the_wrong_level_points_to_where_it_lives():
    got = keys(vc.check_values({"directRoutingDevice": "eth0"}, CILIUM_LIKE))
    assert got == {"directRoutingDevice": "nodePort.directRoutingDevice"}


def test_open_maps_lists_and_kubernetes_typed_keys_accept_anything():
    values = {"podAnnotations": {"x": "y"}, "extraConfig": {"any": "thing"}, "tolerations": [{"key": "k"}],
              "resources": {"limits": {"memory": "1Gi"}}, "operator": {"podLabels": {"c": "d"}},
              "cgroup": {"autoMount": {"resources": {"limits": {}}}}}
    assert vc.check_values(values, CILIUM_LIKE) == []


def test_free_form_and_extra_keys_of_a_component():
    values = {"profile": "ambient", "hubble": {"relay": {"enabled": True, "custom": 1}}}
    assert keys(vc.check_values(values, CILIUM_LIKE)) == {"profile": None, "hubble.relay.custom": None}
    assert vc.check_values(values, CILIUM_LIKE, free_form=["hubble.*"], extra_keys=["profile"]) == []


def test_a_map_where_the_chart_has_a_scalar_is_refused():
    (p,) = vc.check_values({"k8sServiceHost": {"host": "x"}}, CILIUM_LIKE)
    assert p["key"] == "k8sServiceHost" and "not a map" in p["problem"]


def _archive(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_subchart_defaults_count_under_their_alias():
    sub = _archive({"localpv-provisioner/Chart.yaml": b"name: localpv-provisioner\nversion: 4.4.0\n",
                    "localpv-provisioner/values.yaml": json.dumps(
                        {"hostpathClass": {"enabled": True, "basePath": "/var/openebs/local"}}).encode()})
    parent = _archive({
        "openebs/Chart.yaml": b"name: openebs\nversion: 4.4.0\ndependencies:\n"
                              b"  - name: localpv-provisioner\n    alias: localpv-provisioner\n"
                              b"  - name: mayastor\n    condition: engines.replicated.mayastor.enabled\n",
        "openebs/values.yaml": b"engines: {local: {lvm: {enabled: true}}}\n",
        "openebs/charts/localpv-provisioner-4.4.0.tgz": sub,
    })
    info = vc.chart_info_from_archive(parent)
    assert info.name == "openebs" and info.version == "4.4.0"
    assert info.values["localpv-provisioner"]["hostpathClass"]["basePath"] == "/var/openebs/local"
    ok = {"localpv-provisioner": {"hostpathClass": {"basePath": "/var/mnt/openebs-local"}},
          "mayastor": {"anything": True}}
    assert vc.check_values(ok, info.values) == []
    bad = {"localpv-provisioner": {"hostpathClass": {"basepath": "/x"}}}
    assert keys(vc.check_values(bad, info.values)) == {
        "localpv-provisioner.hostpathClass.basepath": "localpv-provisioner.hostpathClass.basePath"}


def test_packaged_directory_subcharts_and_istio_internal_defaults():
    # `helm package` stores a directory subchart as a directory inside the archive.
    parent = _archive({
        "openebs/Chart.yaml": b"name: openebs\nversion: 4.6.1\ndependencies:\n  - name: localpv-provisioner\n",
        "openebs/values.yaml": b"engines: {}\n",
        "openebs/charts/localpv-provisioner/Chart.yaml": b"name: localpv-provisioner\nversion: 4.6.0\n",
        "openebs/charts/localpv-provisioner/values.yaml": b"hostpathClass: {enabled: true, basePath: /var/x}\n",
    })
    info = vc.chart_info_from_archive(parent)
    assert info.values["localpv-provisioner"]["hostpathClass"]["basePath"] == "/var/x"
    assert vc.check_values({"localpv-provisioner": {"hostpathClass": {"basePath": "/y"}}}, info.values) == []
    istiod = _archive({"istiod/Chart.yaml": b"name: istiod\nversion: 1.30.4\n",
                       "istiod/values.yaml": b"_internal_defaults_do_not_set:\n  replicaCount: 1\n"
                                             b"  autoscaleEnabled: true\n"})
    info = vc.chart_info_from_archive(istiod)
    assert vc.check_values({"replicaCount": 2, "autoscaleEnabled": False}, info.values) == []
    assert keys(vc.check_values({"replicaCont": 2}, info.values)) == {"replicaCont": "replicaCount"}
