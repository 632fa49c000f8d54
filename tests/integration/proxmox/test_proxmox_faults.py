# SPDX-License-Identifier: GPL-3.0-or-later
"""Proxmox cases of the fault matrix: each fault gives an error naming what failed and what to do, and a
rerun (fault gone) converges to one VM under its VMID, with nothing duplicated."""

from __future__ import annotations

import pytest
from pvehelp import conn, run_module, sim_config


@pytest.fixture(scope="module")
def fsim(make_sim):
    config = sim_config()
    config["storages"]["local-lvm"]["total"] = 100 << 30  # room for these VMs, not for a 200 GiB data disk
    return make_sim(config)


def vm(sim, vmid, **extra):
    return {**conn(sim), "node": "pve1", "vmid": vmid, "name": f"f{vmid}", "cores": 2, "memory": 2048,
            "disk": {"storage": "local-lvm", "size": 10}, "network": {"bridge": "vmbr0"}, **extra}


def converged(sim, vmid, args):
    """The rerun made the VM; a third run changes nothing; the cluster holds it once, with its disks once."""
    rerun = run_module("proxmox_talos_vm", args)
    assert rerun["status"] == "running"
    again = run_module("proxmox_talos_vm", args)
    assert again["changed"] is False
    state = sim.admin("GET", "state")
    named = [k for k, v in state["vms"].items() if v["config"].get("name") == args["name"]]
    assert named == [str(vmid)]
    volumes = [v for vols in state["content"].values() for v in vols if f"vm-{vmid}-" in v]
    assert len(volumes) == len(set(volumes)) and len([v for v in volumes if "disk" in v]) == 2  # efi + scsi0


def test_api_5xx_names_the_call_and_what_to_do(fsim):
    fsim.admin("POST", "faults", {"method": "GET", "path": "^/cluster/resources$", "status": 503,
                                  "message": "Service Unavailable"})
    res = run_module("proxmox_talos_vm", vm(fsim, 701), expect_fail=True)
    assert "GET cluster/resources failed: 503 Service Unavailable" in res["msg"]
    assert "systemctl status pveproxy pvedaemon" in res["msg"] and "rerun" in res["msg"]
    converged(fsim, 701, vm(fsim, 701))


def test_timeout_on_create_then_rerun_finds_the_vm(fsim):
    # The node is slow: the create call outlives api_timeout, but the node still makes the VM.
    fsim.admin("POST", "faults", {"method": "POST", "path": "^/nodes/pve1/qemu$", "delay": 3})
    res = run_module("proxmox_talos_vm", {**vm(fsim, 702), "api_timeout": 1}, expect_fail=True)
    assert "POST nodes/pve1/qemu failed" in res["msg"] and "api_timeout (1 s)" in res["msg"]
    assert "rerun" in res["msg"]
    import time  # noqa: PLC0415

    while "702" not in fsim.admin("GET", "state")["vms"]:  # the late create lands (a state wait, not a timing test)
        time.sleep(0.1)
    converged(fsim, 702, vm(fsim, 702))


def test_backup_lock_past_the_wait_then_rerun(fsim):
    run_module("proxmox_talos_vm", vm(fsim, 703, started=False))
    fsim.admin("POST", "faults", {"type": "backup", "vmid": 703})
    res = run_module("proxmox_talos_vm", vm(fsim, 703), expect_fail=True)
    assert "start of VM 703 failed: VM is locked (backup)" in res["msg"] and "qm unlock 703" in res["msg"]
    fsim.srv.cluster.vms[703]["config"].pop("lock")  # the backup ended
    converged(fsim, 703, vm(fsim, 703))


def test_task_failing_midway_then_rerun(fsim):
    fsim.admin("POST", "faults", {"type": "task_error", "task_type": "qmstart", "vmid": 704,
                                  "message": "start failed: QEMU exited with code 1"})
    res = run_module("proxmox_talos_vm", vm(fsim, 704), expect_fail=True)
    assert "starting VM 704 failed: start failed: QEMU exited with code 1" in res["msg"]
    assert "task_log" in res["msg"] and res["upid"].startswith("UPID:pve1:")
    converged(fsim, 704, vm(fsim, 704))


def test_storage_full_names_the_storage_then_rerun(fsim):
    big = vm(fsim, 705, data_disk={"storage": "local-lvm", "size": 200})
    res = run_module("proxmox_talos_vm", big, expect_fail=True)
    assert "creating VM 705 'f705' on pve1 failed: lvcreate" in res["msg"] and "insufficient free space" in res["msg"]
    assert "storage 'local-lvm' has no room" in res["msg"] and "Proxmox removed the half-created VM 705" in res["msg"]
    assert "705" not in fsim.admin("GET", "state")["vms"]
    converged(fsim, 705, vm(fsim, 705))
