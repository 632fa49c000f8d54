# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import copy

import pytest
from ansible_collections.homecluster.platform.plugins.module_utils import _proxmox_vm as vmu
from ansible_collections.homecluster.platform.plugins.modules import proxmox_talos_vm as m

from .conftest import RUNNING_CONFIG

ARGS = {"node": "pve1", "vmid": 811, "name": "cp1", "cores": 2, "memory": 4096,
        "disk": {"storage": "local-lvm", "size": 32}, "iso": "local:iso/talos.iso",
        "network": {"bridge": "vmbr0", "vlan": 20, "mac": "bc:24:11:00:08:11"},
        "address": "192.168.20.11/24", "gateway": "192.168.20.1", "tags": ["talos", "controlplane"],
        "description": "Talos node"}


def running(client, **config):
    client.vms[811] = {"name": "cp1", "node": "pve1", "status": "running",
                       "config": {**copy.deepcopy(RUNNING_CONFIG), **config}}


def test_desired_config_has_what_talos_needs():
    params = {**{k: None for k in ("data_disk", "efi_storage", "cloudinit_storage")}, **ARGS,
              "cpu_type": "host", "machine": "q35", "scsihw": "virtio-scsi-pci", "onboot": True, "agent": False,
              "nameservers": [], "disk": {"storage": "local-lvm", "size": 32, "options": "discard=on,ssd=1"},
              "network": {"bridge": "vmbr0", "vlan": 20, "mac": "bc:24:11:00:08:11", "model": "virtio",
                          "firewall": False}}
    cfg = vmu.desired_config(params)
    assert cfg["bios"] == "ovmf" and cfg["machine"] == "q35" and cfg["cpu"] == "host"
    assert cfg["balloon"] == 0 and cfg["scsihw"] == "virtio-scsi-pci"
    assert cfg["efidisk0"] == "local-lvm:1,efitype=4m,pre-enrolled-keys=0"
    assert cfg["scsi0"] == "local-lvm:32,discard=on,ssd=1"
    assert cfg["net0"] == "virtio=BC:24:11:00:08:11,bridge=vmbr0,tag=20"
    assert cfg["ipconfig0"] == "ip=192.168.20.11/24,gw=192.168.20.1"
    assert cfg["ide0"] == "local-lvm:cloudinit" and cfg["ide2"] == "local:iso/talos.iso,media=cdrom"
    assert cfg["tags"] == "controlplane;talos"


@pytest.mark.parametrize(("key", "cur", "want", "equal"), [
    ("tags", "talos;controlplane", "controlplane;talos", True),
    ("tags", "talos", "controlplane;talos", False),
    ("tags", "controlplane;talos", "Talos;ControlPlane", True),
    ("tags", "controlplane,talos", "controlplane;talos", True),
    ("memory", "current=4096", "4096", True),
    ("memory", "2048", "4096", False),
    ("net0", "virtio=BC:24:11:00:08:11,bridge=vmbr0,tag=20", "virtio=bc:24:11:00:08:11,bridge=vmbr0,tag=20", True),
    ("net0", "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0", "virtio,bridge=vmbr0", True),
    ("net0", "virtio=BC:24:11:00:08:11,bridge=vmbr0,tag=20", "virtio,bridge=vmbr0,tag=30", False),
    ("ipconfig0", "gw=10.0.0.1,ip=10.0.0.5/24", "ip=10.0.0.5/24,gw=10.0.0.1", True),
    ("description", "Talos node\n", "Talos node", True),
    ("ide0", "local-lvm:vm-811-cloudinit,media=cdrom", "local-lvm:cloudinit", True),
    ("scsi0", "local-lvm:vm-811-disk-1,size=32G", "local-lvm:32,discard=on", True),
    ("scsi0", "local-lvm:vm-811-disk-1,size=32G", "local-lvm:40,discard=on", False),
    ("cores", 2, 2, True),
    ("cores", None, 2, False),
])
def test_compare_by_meaning(key, cur, want, equal):
    assert vmu.compare(key, cur, want)[0] is equal


def test_disks_are_never_shrunk():
    equal, note = vmu.compare("scsi0", "local-lvm:vm-811-disk-1,size=64G", "local-lvm:32")
    assert equal and "never shrunk" in note


def test_create_in_check_mode_writes_nothing(fake, run_module):
    res = run_module(m.main, ARGS, check_mode=True, diff=True)
    assert not res.failed and res.result["changed"] and res.result["created"]
    assert res.result["actions"] == ["create", "start"]
    assert res.result["diff"]["before"] == {} and res.result["diff"]["after"]["scsi0"] == "local-lvm: 32 GiB"
    assert fake.writes() == []


def test_create_posts_once_with_the_explicit_vmid_then_starts(fake, run_module):
    res = run_module(m.main, ARGS)
    assert res.result["changed"]
    writes = fake.writes()
    assert [(w[0], w[1]) for w in writes] == [("POST", "nodes/pve1/qemu"), ("POST", "nodes/pve1/qemu/811/status/start")]
    assert writes[0][2]["vmid"] == 811 and "newid" not in writes[0][2]
    assert not any("nextid" in c[1] for c in fake.calls)


def test_unchanged_vm_makes_no_write_call(fake, run_module):
    running(fake)
    res = run_module(m.main, ARGS)
    assert res.result["changed"] is False and res.result["changed_keys"] == []
    assert fake.writes() == []
    assert [c[1] for c in fake.calls] == ["cluster/resources", "nodes/pve1/qemu/811/config",
                                          "nodes/pve1/qemu/811/status/current"]


def test_safe_change_is_one_put_with_the_digest(fake, run_module):
    running(fake)
    res = run_module(m.main, {**ARGS, "cores": 4, "tags": ["talos", "controlplane", "lab"]}, diff=True)
    assert res.result["changed_keys"] == ["cores", "tags"] and res.result["restart_keys"] == []
    (method, path, params), = fake.writes()
    assert (method, path) == ("PUT", "nodes/pve1/qemu/811/config")
    assert params["digest"] == RUNNING_CONFIG["digest"] and params["cores"] == 4
    assert res.result["diff"] == {"before": {"cores": 2, "tags": "controlplane;talos"},
                                  "after": {"cores": 4, "tags": "controlplane;lab;talos"}}


def test_disk_growth_uses_resize(fake, run_module):
    running(fake)
    res = run_module(m.main, {**ARGS, "disk": {"storage": "local-lvm", "size": 40}})
    assert res.result["actions"] == ["resize"]
    assert [(w[0], w[1], w[2]) for w in fake.writes()] == [
        ("PUT", "nodes/pve1/qemu/811/resize", {"disk": "scsi0", "size": "40G"})]


def test_restart_change_on_running_vm_needs_opt_in(fake, run_module):
    running(fake)
    res = run_module(m.main, {**ARGS, "network": {"bridge": "vmbr1", "vlan": 20}})
    assert res.failed and "need a restart: net0" in res.result["msg"] and "allow_restart" in res.result["msg"]
    assert fake.writes() == []
    res = run_module(m.main, {**ARGS, "network": {"bridge": "vmbr1", "vlan": 20}, "allow_restart": True})
    assert res.result["actions"] == ["update", "reboot"]
    assert fake.writes()[-1][1] == "nodes/pve1/qemu/811/status/reboot"


def test_vmid_used_by_another_name_is_refused(fake, run_module):
    fake.vms[811] = {"name": "intruder", "node": "pve2", "status": "stopped", "config": {"name": "intruder"}}
    res = run_module(m.main, ARGS)
    assert res.failed
    assert "VMID 811 is already used by VM 'intruder' on node pve2" in res.result["msg"]
    assert fake.writes() == []


def test_name_used_by_another_vmid_is_refused(fake, run_module):
    fake.vms[900] = {"name": "cp1", "node": "pve1", "status": "running", "config": {"name": "cp1"}}
    res = run_module(m.main, ARGS)
    assert res.failed and "already exists with VMID 900" in res.result["msg"]


def test_failed_task_is_reported_with_upid_and_log(fake, run_module):
    fake.fail_task = "qmcreate"
    res = run_module(m.main, ARGS)
    assert res.failed
    assert res.result["msg"].startswith("creating VM 811 'cp1' on pve1 failed: boom")
    assert res.result["upid"].startswith("UPID:pve1:") and res.result["task_log"] == ["TASK ERROR: boom"]


def test_absent_stops_then_destroys_and_check_mode_writes_nothing(fake, run_module):
    running(fake)
    res = run_module(m.main, {**ARGS, "state": "absent"}, check_mode=True)
    assert res.result["changed"] and res.result["actions"] == ["stop", "destroy"] and fake.writes() == []
    res = run_module(m.main, {**ARGS, "state": "absent"})
    want = [("POST", "nodes/pve1/qemu/811/status/stop"), ("DELETE", "nodes/pve1/qemu/811")]
    assert [(w[0], w[1]) for w in fake.writes()] == want


def test_absent_when_missing_is_no_change(fake, run_module):
    res = run_module(m.main, {**ARGS, "state": "absent"})
    assert res.result["changed"] is False and fake.writes() == []


def test_stopped_vm_is_started(fake, run_module):
    running(fake)
    fake.vms[811]["status"] = "stopped"
    res = run_module(m.main, ARGS, diff=True)
    assert res.result["actions"] == ["start"]
    assert res.result["diff"] == {"before": {"status": "stopped"}, "after": {"status": "running"}}


# ---------------------------------------------------------------- pvestatd lag (cluster/resources)
def test_fresh_vm_without_name_in_resources_is_not_a_collision(fake, run_module):
    """A VM created a moment ago: pvestatd has no name for it yet and status 'unknown'."""
    running(fake)
    fake.resources_view[811] = {"name": None, "status": "unknown"}
    res = run_module(m.main, ARGS)
    assert not res.failed, res.result["msg"]
    assert res.result["changed"] is False and res.result["status"] == "running"
    assert fake.writes() == []


def test_stale_stopped_status_does_not_start_a_running_vm(fake, run_module):
    running(fake)
    fake.resources_view[811] = {"status": "stopped"}
    res = run_module(m.main, ARGS)
    assert not res.failed and res.result["actions"] == [] and fake.writes() == []


def test_stale_status_does_not_skip_the_stop_before_destroy(fake, run_module):
    running(fake)
    fake.resources_view[811] = {"name": None, "status": "unknown"}
    res = run_module(m.main, {**ARGS, "state": "absent"})
    assert [(w[0], w[1]) for w in fake.writes()] == [("POST", "nodes/pve1/qemu/811/status/stop"),
                                                     ("DELETE", "nodes/pve1/qemu/811")]
    assert res.result["actions"] == ["stop", "destroy"]


def test_collision_names_the_vm_from_its_config(fake, run_module):
    fake.vms[811] = {"name": "intruder", "node": "pve2", "status": "running", "config": {"name": "intruder"}}
    fake.resources_view[811] = {"name": None, "status": "unknown"}
    res = run_module(m.main, ARGS)
    assert res.failed and "already used by VM 'intruder' on node pve2" in res.result["msg"]
    assert "None" not in res.result["msg"] and fake.writes() == []


def test_fresh_vm_of_the_same_name_is_found_through_its_config(fake, run_module):
    fake.vms[900] = {"name": "cp1", "node": "pve1", "status": "running", "config": {"name": "cp1"}}
    fake.resources_view[900] = {"name": None, "status": "unknown"}
    res = run_module(m.main, ARGS)
    assert res.failed and "already exists with VMID 900" in res.result["msg"] and fake.writes() == []


def test_stale_name_in_resources_is_checked_against_the_config(fake, run_module):
    """VM 900 was just renamed from cp1: the resource list still says cp1, its config does not."""
    fake.vms[900] = {"name": "cp9", "node": "pve1", "status": "running", "config": {"name": "cp9"}}
    fake.resources_view[900] = {"name": "cp1"}
    res = run_module(m.main, ARGS, check_mode=True)
    assert not res.failed and res.result["created"]


# ---------------------------------------------------------------- tags, warnings
def test_mixed_case_tags_show_no_perpetual_diff(fake, run_module):
    running(fake)  # PVE stored the tags lower-cased and sorted: controlplane;talos
    res = run_module(m.main, {**ARGS, "tags": ["Talos", "ControlPlane", "talos"]}, diff=True)
    assert res.result["changed"] is False and fake.writes() == []


def test_tags_are_sent_as_pve_stores_them(fake, run_module):
    run_module(m.main, {**ARGS, "tags": ["Talos", "ControlPlane"]})
    assert fake.writes()[0][2]["tags"] == "controlplane;talos"


def test_invalid_tag_fails_before_any_call(fake, run_module):
    res = run_module(m.main, {**ARGS, "tags": ["talos", "control plane!"]})
    assert res.failed and "control plane!" in res.result["msg"] and fake.calls == []


def test_task_warnings_are_success_and_shown(fake, run_module, monkeypatch):
    # Recorded where the module calls warn(): ansible's global warning list is shared by every test
    # of the session, and another module's test can leave it in a state this one cannot read.
    shown = []
    monkeypatch.setattr(m.AnsibleModule, "warn", lambda self, msg: shown.append(msg))
    fake.warn_task = "qmstart"
    res = run_module(m.main, ARGS)
    assert not res.failed and res.result["changed"]
    assert len(res.result["task_warnings"]) == 1 and "disk is almost full" in res.result["task_warnings"][0]
    assert any("disk is almost full" in w for w in shown), shown
