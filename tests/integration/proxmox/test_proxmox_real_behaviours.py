# SPDX-License-Identifier: GPL-3.0-or-later
"""proxmox_talos_* against the simulator where it behaves as a real PVE cluster does and a naive client breaks:
pvestatd's lagging /cluster/resources, locks that fail inside the task, WARNINGS exit status, the bare
permission error of create, and PVE's tag normalisation."""

from __future__ import annotations

import pytest
from pvehelp import TOKEN, conn, run_module, sim_config

VM = {"node": "pve1", "cores": 2, "memory": 2048, "disk": {"storage": "local-lvm", "size": 10},
      "network": {"bridge": "vmbr0"}, "tags": ["talos"]}


def vm(sim, vmid, **extra):
    return {**conn(sim), **VM, "vmid": vmid, "name": f"n{vmid}", **extra}


def test_fresh_vm_missing_from_pvestatd_is_found_by_its_config(sim):
    created = run_module("proxmox_talos_vm", vm(sim, 501))
    assert created["created"] and created["status"] == "running"
    # pvestatd has not run since: the resource list has the VMID, but no name and status "unknown".
    seen = sim.resources()[501]
    assert "name" not in seen and seen["status"] == "unknown"
    writes = sim.writes()
    again = run_module("proxmox_talos_vm", vm(sim, 501))
    assert again["changed"] is False and again["status"] == "running"
    assert sim.writes() == writes  # no write call: no false collision, no start of the running VM
    info = run_module("proxmox_talos_cluster_info", conn(sim))
    assert info["vms"]["501"]["name"] == "n501" and info["vms"]["501"]["status"] == "running"
    # Another VM asking for the same name is refused although the list does not show the name yet.
    clash = run_module("proxmox_talos_vm", {**vm(sim, 511), "name": "n501"}, expect_fail=True)
    assert "already exists with VMID 501" in clash["msg"]
    # Removal while the list still says "unknown": the VM is running, so it is stopped first.
    gone = run_module("proxmox_talos_vm", {**vm(sim, 501), "state": "absent"})
    assert gone["actions"] == ["stop", "destroy"] and 501 not in sim.resources()


def test_placeholder_name_of_a_vm_seen_during_its_create_is_read_live(sim):
    """pvestatd names a VM whose config has no name yet (its create task still running) 'VM <vmid>', as
    PVE's vmstatus does; until its next round the list keeps that name after the create has set the
    real one. Taken at face value, the preflight saw a VMID collision with 'VM <vmid>' (found by the
    Ctrl-C fault case)."""
    sim.wait_task("pve1", sim.api("POST", "nodes/pve1/qemu", vmid=504))
    sim.pvestatd()
    assert sim.resources()[504]["name"] == "VM 504"
    sim.api("PUT", "nodes/pve1/qemu/504/config", name="n504")
    assert sim.resources()[504]["name"] == "VM 504" and sim.resources()[504]["status"] == "stopped"  # stale
    info = run_module("proxmox_talos_cluster_info", conn(sim))
    assert info["vms"]["504"]["name"] == "n504", info["vms"]["504"]
    assert info["vms"]["504"]["status"] == "stopped"


def test_stale_stopped_status_does_not_start_a_running_vm(sim):
    run_module("proxmox_talos_vm", vm(sim, 502, started=False))
    sim.pvestatd()  # pvestatd sees it stopped
    sim.wait_task("pve1", sim.api("POST", "nodes/pve1/qemu/502/status/start"))
    assert sim.resources()[502]["status"] == "stopped"  # stale
    writes = sim.writes()
    res = run_module("proxmox_talos_vm", vm(sim, 502))
    assert res["changed"] is False and res["actions"] == [] and sim.writes() == writes


def test_backup_lock_fails_inside_the_task_and_is_retried(sim):
    run_module("proxmox_talos_vm", vm(sim, 503, started=False))
    sim.admin("POST", "faults", {"type": "backup", "vmid": 503, "failures": 2})  # ends after two refused starts
    res = run_module("proxmox_talos_vm", vm(sim, 503))
    assert res["actions"] == ["start"] and res["status"] == "running"
    starts = [t for t in sim.tasks() if t["type"] == "qmstart" and t["id"] == "503"]
    # PVE answered 200 with a UPID and the task failed on the lock; the module retried until the backup ended.
    assert [t["status"] for t in starts].count("VM is locked (backup)") == 2
    assert max(starts, key=lambda t: t["pid"])["status"] == "OK"  # the last start (pids only grow)


def test_lock_held_by_a_backup_names_qm_unlock(sim, monkeypatch):
    run_module("proxmox_talos_vm", vm(sim, 504, started=False))
    sim.admin("POST", "faults", {"type": "backup", "vmid": 504})  # held until the test ends
    res = run_module("proxmox_talos_vm", {**vm(sim, 504), "cores": 3}, expect_fail=True)
    # A config write is checked at once (500), and the module retried it before failing.
    assert "VM is locked (backup)" in res["msg"] and "qm unlock 504" in res["msg"]
    assert sim.admin("GET", "state")["vms"]["504"]["config"]["cores"] == 2


def test_warnings_exit_status_is_success_and_shown(sim):
    sim.admin("POST", "faults", {"type": "task_warning", "task_type": "qmstart", "vmid": 505,
                                 "message": "cloud-init drive is not on shared storage"})
    res = run_module("proxmox_talos_vm", vm(sim, 505))
    assert res["status"] == "running" and res["changed"]
    assert len(res["task_warnings"]) == 1 and "cloud-init drive is not on shared storage" in res["task_warnings"][0]
    assert "cloud-init drive is not on shared storage" in str(res["warnings"])  # shown by Ansible


def test_mixed_case_tags_converge(sim):
    first = run_module("proxmox_talos_vm", vm(sim, 506, tags=["Talos", "ControlPlane"]))
    assert first["config"]["tags"] == "controlplane;talos"
    again = run_module("proxmox_talos_vm", vm(sim, 506, tags=["ControlPlane", "Talos"]))
    assert again["changed"] is False


@pytest.fixture(scope="module")
def sim_no_allocate(make_sim):
    acl = [{"path": "/", "roles": ["PVEVMAdmin", "PVEDatastoreAdmin", "PVEAuditor", "PVESDNUser"]},
           {"path": "/vms", "privs": ["VM.Audit", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Options",
                                      "VM.Config.HWType", "VM.Config.Disk", "VM.Config.Network", "VM.PowerMgmt"]}]
    return make_sim(sim_config(**{"automation@pve!ansible": {"secret": TOKEN, "privsep": True, "acl": acl}}))


def test_bare_permission_error_on_create_names_vm_allocate(sim_no_allocate):
    res = run_module("proxmox_talos_vm", vm(sim_no_allocate, 507), expect_fail=True)
    assert "failed: 403 Permission check failed." in res["msg"]
    assert "lacks VM.Allocate on /vms/507" in res["msg"]
    assert "Datastore.AllocateSpace on /storage/local-lvm" in res["msg"]
