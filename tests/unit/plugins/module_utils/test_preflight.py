# SPDX-License-Identifier: GPL-3.0-or-later
"""The preflight rules (module_utils/_preflight.py) on described inputs, and the compatibility table."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ansible_collections.homecluster.platform.plugins.module_utils import _preflight as p

TABLE = yaml.safe_load((Path(__file__).resolve().parents[4] / "compat" / "compatibility.yml").read_text())


def vm(host, vmid, address, mac, role="worker", **kw):
    base = {"host": host, "name": host, "vmid": vmid, "node": "pve1", "role": role, "memory": 4096, "cores": 4,
            "disk_size": 32, "disk_storage": "local-lvm", "data_disk_size": 0, "data_disk_storage": "local-lvm",
            "image_storage": "local", "address": address, "mac": mac, "vlan": 0, "state": "present",
            "removal_confirmation": "", "removal_phrase": "yes-really-destroy-vms"}
    base.update(kw)
    return base


MIN = {"memory": {"controlplane": 2048, "worker": 1024}, "cores": {"controlplane": 2, "worker": 1}, "disk_size": 10}
API = {"host": "pve", "user": "automation@pve", "token_id": "ansible", "token_secret_set": True, "password_set": False}


def variables(findings, severity="error"):
    return sorted({f["variable"] for f in findings if f["severity"] == severity})


def test_valid_vms_pass():
    vms = [vm("cp1", 811, "192.168.1.10/24", "BC:24:11:00:08:11", "controlplane"),
           vm("w1", 821, "192.168.1.21/24", "BC:24:11:00:08:21")]
    assert p.check_proxmox_vms(vms, MIN, API) == []


def test_duplicates_name_every_host_and_variable():
    vms = [vm("a", 310, "127.0.20.41/24", "BC:24:11:20:00:41"), vm("b", 310, "127.0.20.41/24", "bc:24:11:20:00:41")]
    found = p.check_proxmox_vms(vms, MIN, API)
    assert variables(found) == ["proxmox_vm_address", "proxmox_vm_mac", "proxmox_vm_vmid"]
    assert {f["host"] for f in found} == {"a", "b"}
    assert any("proxmox_vm_vmid 310 is also given to b" in f["message"] for f in found)


@pytest.mark.parametrize(("change", "variable"), [
    ({"memory": 1024, "role": "controlplane"}, "proxmox_vm_memory"),
    ({"cores": 1, "role": "controlplane"}, "proxmox_vm_cores"),
    ({"disk_size": 4}, "proxmox_vm_disk_size"),
    ({"vmid": 42}, "proxmox_vm_vmid"),
    ({"name": "bad_name"}, "proxmox_vm_name"),
    ({"mac": "01:00:5E:00:00:01"}, "proxmox_vm_mac"),
    ({"mac": "nope"}, "proxmox_vm_mac"),
    ({"address": "192.168.1.300/24"}, "proxmox_vm_address"),
    ({"vlan": 5000}, "proxmox_vm_vlan"),
    ({"state": "absent"}, "proxmox_vm_removal_confirmation"),
])
def test_one_bad_vm_setting(change, variable):
    spec = dict({"host": "w1", "vmid": 821, "address": "192.168.1.21/24", "mac": ""}, **change)
    assert variables(p.check_proxmox_vms([vm(**spec)], MIN, API)) == [variable]


def test_api_settings():
    found = p.check_proxmox_vms([vm("w1", 821, "", "")], MIN, dict(API, token_secret_set=False, user="root"))
    assert variables(found) == ["proxmox_vm_api_token_secret", "proxmox_vm_api_user"]


def test_cluster_nodes_storages_and_vmids():
    cluster = {"nodes": ["pve1", "pve2"], "vms": {"821": {"name": "intruder", "node": "pve2"}},
               "storage_list": [{"node": "pve1", "storage": "local"}, {"node": "pve1", "storage": "local-lvm"}]}
    vms = [vm("w1", 821, "", ""), vm("w2", 822, "", "", node="pve9"), vm("w3", 823, "", "", disk_storage="fast")]
    found = p.check_proxmox_cluster(vms, cluster)
    by_host = {(f["host"], f["variable"]) for f in found}
    assert by_host == {("w1", "proxmox_vm_vmid"), ("w2", "proxmox_vm_node"), ("w3", "proxmox_vm_disk_storage")}


def node(host, address, role, groups=None, **kw):
    return dict({"host": host, "address": address, "role": role, "install_disk": "/dev/sda",
                 "groups": groups or ["talos", "controlplane" if role == "controlplane" else "workers"]}, **kw)


CLUSTER = {"name": "home", "endpoint": "https://192.168.1.10:6443", "pod_cidr": "10.42.0.0/16",
           "service_cidr": "10.43.0.0/16", "dns_domain": "cluster.local", "schedulable_control_planes": False,
           "allow_even_control_planes": False, "release": "1.14", "contract": "1.14", "user_volumes": [],
           "kubelet_extra_mounts": []}
NODES = [node("cp1", "192.168.1.10", "controlplane"), node("cp2", "192.168.1.11", "controlplane"),
         node("cp3", "192.168.1.12", "controlplane"), node("w1", "192.168.1.21", "worker")]


def test_valid_talos_passes():
    assert p.check_talos(NODES, CLUSTER) == []


@pytest.mark.parametrize(("cluster", "variable"), [
    ({"name": "Home_Lab"}, "talos_bootstrap_cluster_name"),
    ({"endpoint": "192.168.1.10:6443"}, "talos_bootstrap_cluster_endpoint"),
    ({"endpoint": "http://192.168.1.10:6443"}, "talos_bootstrap_cluster_endpoint"),
    ({"pod_cidr": "10.42.0.1/16"}, "talos_bootstrap_pod_cidr"),
    ({"service_cidr": "10.42.128.0/17"}, "talos_bootstrap_service_cidr"),
    ({"pod_cidr": "192.168.0.0/16"}, "talos_bootstrap_pod_cidr"),
    ({"dns_domain": "cluster..local"}, "talos_bootstrap_cluster_dns_domain"),
    ({"contract": "1.15"}, "talos_bootstrap_talos_version"),
    ({"contract": "1.13", "user_volumes": ["x"]}, "talos_bootstrap_user_volumes"),
])
def test_one_bad_cluster_input(cluster, variable):
    assert variable in variables(p.check_talos(NODES, dict(CLUSTER, **cluster)))


def test_control_plane_count_groups_and_schedulable():
    two = [node("cp1", "10.0.0.1", "controlplane"), node("cp2", "10.0.0.2", "controlplane")]
    assert variables(p.check_talos(two, dict(CLUSTER, endpoint="https://10.0.0.1:6443"))) == [
        "talos_bootstrap_allow_scheduling_on_control_planes", "talos_bootstrap_node_role"]
    ok = dict(CLUSTER, endpoint="https://10.0.0.1:6443", allow_even_control_planes=True,
              schedulable_control_planes=True)
    assert p.check_talos(two, ok) == []
    both = [node("cp1", "10.0.0.1", "controlplane", groups=["controlplane", "workers"])]
    found = p.check_talos(both, dict(ok, schedulable_control_planes=True))
    assert variables(found) == ["groups controlplane/workers"]
    assert variables(p.check_talos([node("cp1", "10.0.0.1", "controlplane", vm_role="worker")], ok)) == [
        "proxmox_vm_talos_role"]


def cilium(**kw):
    values = {"kubeProxyReplacement": True, "k8sServiceHost": "localhost", "k8sServicePort": 7445,
              "bpf": {"masquerade": False, "hostLegacyRouting": False}, "cni": {"exclusive": False},
              "socketLB": {"hostNamespaceOnly": True},
              "hubble": {"enabled": True, "relay": {"enabled": True}, "ui": {"enabled": False}},
              "l2announcements": {"enabled": True}, "gatewayAPI": {"enabled": False}, "ipam": {"mode": "kubernetes"}}
    data = {"values": values, "istio_ambient": True, "forward_kube_dns_to_host": True, "l2_announcements": True,
            "lb_pools": [{"name": "lan", "blocks": [{"start": "192.168.1.200", "stop": "192.168.1.229"}]}],
            "pod_cidr": "10.42.0.0/16", "service_cidr": "10.43.0.0/16", "endpoint": "https://192.168.1.10:6443",
            "node_addresses": {"cp1": "192.168.1.10", "cp2": "192.168.1.11"}, "node_networks": ["192.168.1.10/24"]}
    data.update(kw)
    return data


def test_valid_cilium_passes():
    assert p.check_cilium(cilium()) == []


@pytest.mark.parametrize(("pools", "fragment"), [
    ([{"name": "a", "blocks": [{"start": "192.168.1.5", "stop": "192.168.1.15"}]}], "contains the address of node"),
    ([{"name": "a", "blocks": [{"start": "192.168.1.229", "stop": "192.168.1.200"}]}], "comes after stop"),
    ([{"name": "a", "blocks": [{"cidr": "10.43.0.0/28"}]}], "overlaps the service CIDR"),
    ([{"name": "a", "blocks": [{"cidr": "192.168.2.0/28"}]}], "outside the node network"),
    ([{"name": "a", "blocks": [{"cidr": "192.168.1.0/33"}]}], "is not a CIDR"),
    ([{"name": "a", "blocks": [{"cidr": "192.168.1.64/28"}]}, {"name": "b", "blocks": [{"cidr": "192.168.1.72/29"}]}],
     "overlaps LB pool 'a'"),
    ([{"name": "a", "blocks": []}], "needs at least one block"),
])
def test_bad_pools(pools, fragment):
    found = p.check_cilium(cilium(lb_pools=pools))
    assert any(fragment in f["message"] and f["variable"].startswith("cilium_lb_pools") for f in found), found


def test_ambient_and_masquerade():
    data = cilium()
    data["values"]["bpf"]["masquerade"] = True
    assert variables(p.check_cilium(data)) == ["cilium_bpf_masquerade"]
    assert any("without bpf.masquerade" in f["message"] for f in p.check_cilium(data))
    assert variables(p.check_cilium(cilium(istio_ambient=False, istio_layer=True))) == ["cilium_istio_ambient"]


def test_rook_disks_replicas_and_mons():
    osd = [{"name": f"w{i}", "devices": ["sdb"]} for i in (1, 2, 3)]
    base = {"state": "present", "osd_nodes": osd, "from_inventory": True,
            "hostnames": {f"w{i}": f"w{i}" for i in (1, 2, 3)},
            "disk_sizes": {"w1": 100, "w2": 100, "w3": 100}, "block_replicas": 3, "filesystem": True,
            "filesystem_replicas": 3, "failure_domain": "host", "mon_count": 3, "mgr_count": 2, "min_osd_size_gib": 5}
    assert p.check_rook(base) == []
    small = dict(base, disk_sizes={"w1": 1, "w2": 100, "w3": 100})
    found = p.check_rook(small)
    assert [(f["host"], f["variable"]) for f in found if f["variable"] == "proxmox_vm_data_disk_size"] == [
        ("w1", "proxmox_vm_data_disk_size")]
    assert "rook_ceph_block_replicas" in variables(found)
    assert variables(p.check_rook(dict(base, block_replicas=4, filesystem=False))) == ["rook_ceph_block_replicas"]
    assert variables(p.check_rook(dict(base, mon_count=2))) == ["rook_ceph_mon_count"]
    assert variables(p.check_rook(dict(base, state="absent"))) == ["rook_ceph_teardown_confirmation"]
    assert variables(p.check_rook(dict(base, osd_nodes=[]))) == ["proxmox_vm_data_disk_size"]


def pair(component, release, against, aspect="kubernetes"):
    return p.check_compat(TABLE, component, aspect, release, against, variable=f"{component}_version",
                          against_variable="talos_bootstrap_kubernetes_version")


def test_table_has_a_source_for_every_fact():
    for component, aspects in TABLE.items():
        for section in aspects.values():
            if component == "limits":
                assert str(section["source"]).startswith("https://")
                continue
            for release, entry in section["releases"].items():
                assert str(entry.get("source") or section.get("source")).startswith("https://"), (component, release)


@pytest.mark.parametrize(("release", "kube", "ok"), [
    ("v1.14.1", "1.37.2", True), ("v1.14.1", "1.32.0", True), ("v1.14.1", "1.31.9", False),
    ("v1.13.7", "1.36.1", True), ("v1.13.7", "1.37.0", False), ("v1.13.0", "1.31.0", True),
])
def test_talos_kubernetes(release, kube, ok):
    found = pair("talos", release, kube)
    assert (found == []) is ok
    if not ok:
        assert found[0]["severity"] == "error"
        assert "Nearest supported" in found[0]["message"]


def test_nearest_supported_is_named():
    msg = pair("talos", "v1.13.7", "1.37.2")[0]["message"]
    assert "Talos 1.14 supports Kubernetes 1.37" in msg


def test_allowed_and_unknown_are_warnings():
    assert pair("istio", "1.27.0", "1.37.2")[0]["severity"] == "error"
    allowed = p.check_compat(TABLE, "istio", "kubernetes", "1.27.0", "1.37.2", variable="istio_ambient_version",
                             allow=["istio"])
    assert allowed[0]["severity"] == "warning"
    assert pair("istio", "9.1.0", "1.37.2")[0]["severity"] == "warning"
    assert pair("cilium", "1.18.0", "1.37.2")[0]["severity"] == "warning"  # Cilium: untested, not unsupported


def test_rook_ceph_majors():
    assert pair("rook", "v1.18.8", "v19.2.3", aspect="ceph") == []
    assert pair("rook", "v1.19.0", "v18.2.4", aspect="ceph")[0]["severity"] == "error"


def test_report_and_table():
    findings = p.run(["rook"], {"state": "absent"})
    for f in findings:
        f["layer"] = "storage"
    doc = p.report([*findings, dict(findings[0], severity="warning", layer="cilium")])
    assert doc["result"] == "refused"
    assert doc["errors"] == 1
    assert doc["warnings"] == 1
    lines = p.table(doc["findings"])
    assert any(line.startswith("storage") and "REFUSED" in line for line in lines)
    assert any("rook_ceph_teardown_confirmation" in line for line in lines)


def test_report_and_table_of_the_layers_checked():
    # a narrowed run (node-add.yml checks proxmox and talos) lists those, and a layer with findings
    finding = dict(p.run(["rook"], {"state": "absent"})[0], layer="storage")
    doc = p.report([finding], ["proxmox", "talos"])
    assert doc["layers_checked"] == ["proxmox", "talos"]
    assert [line.split()[0] for line in p.table(doc["findings"], ["proxmox", "talos"])[:4]] == [
        "layer", "proxmox", "talos", "storage"]
    assert "cilium" not in " ".join(p.table([], ["proxmox", "talos"]))
    assert p.report([])["layers_checked"] == p.LAYERS


def test_message_names_host_and_variable():
    found = p.check_proxmox_vms([vm("w1", 821, "", "", memory=512)], MIN, API)
    assert p.message(found) == ("host w1: proxmox_vm_memory 512 MiB is under the Talos minimum for a worker (1024 MiB)."
                                " [proxmox_vm_memory]")


def test_inputs_are_not_modified():
    data = cilium()
    before = copy.deepcopy(data)
    p.check_cilium(data)
    assert data == before
