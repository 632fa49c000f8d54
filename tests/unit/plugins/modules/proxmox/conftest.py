# SPDX-License-Identifier: GPL-3.0-or-later
"""Run proxmox_talos_* modules in-process against a fake Proxmox client that records every call."""
from __future__ import annotations

import copy
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.homecluster.platform.plugins.module_utils._proxmox import ProxmoxError

CONN = {"api_host": "pve1.example", "api_user": "automation@pve", "api_token_id": "ansible",
        "api_token_secret": "s3cr3t-token"}
UPID = "UPID:pve1:00001234:00ABCDEF:6B07E31F:{type}:{id}:automation@pve!ansible:"

# A config as PVE 8 returns it for a VM created by proxmox_talos_vm (recorded from the simulator,
# which follows the API viewer's shapes: ints for cores/onboot/balloon, memory as a string).
RUNNING_CONFIG = {
    "meta": "creation-qemu=9.2.0,ctime=1795679008", "vmgenid": "50a3fcdc-89bd-7e89-119c-f28d0b20c8a8",
    "smbios1": "uuid=f54aba14-1b12-b00e-c165-082a20b868fb", "name": "cp1", "cores": 2, "memory": "4096",
    "cpu": "host", "machine": "q35", "bios": "ovmf", "scsihw": "virtio-scsi-pci", "balloon": 0, "ostype": "l26",
    "onboot": 1, "agent": "0", "efidisk0": "local-lvm:vm-811-disk-0,efitype=4m,pre-enrolled-keys=0,size=4M",
    "scsi0": "local-lvm:vm-811-disk-1,discard=on,ssd=1,size=32G", "boot": "order=scsi0;ide2;net0",
    "ide2": "local:iso/talos.iso,media=cdrom,size=100M", "net0": "virtio=BC:24:11:00:08:11,bridge=vmbr0,tag=20",
    "ide0": "local-lvm:vm-811-cloudinit,media=cdrom", "ipconfig0": "ip=192.168.20.11/24,gw=192.168.20.1",
    "tags": "controlplane;talos", "description": "Talos node", "digest": "337654e6c99710349b26cc46dc2c34ca663573de",
}


class FakeClient:
    """Stands in for ProxmoxClient: answers reads from a dict of VMs, records writes."""

    def __init__(self):
        self.vms = {}  # vmid -> {"name", "node", "status", "config"}
        self.iso = []
        self.calls = []
        self.fail_task = None
        self.warnings = []
        self.warn_task = None
        # What pvestatd last saw, per VMID, when it differs from the live state (None: not seen yet).
        self.resources_view = {}

    def call(self, method, path, **params):
        self.calls.append((method.upper(), path, params))
        parts = path.strip("/").split("/")
        if path == "cluster/resources":
            out = []
            for k, v in self.vms.items():
                seen = {"name": v["name"], "status": v["status"], **self.resources_view.get(k, {})}
                out.append({"vmid": k, "node": v["node"], "type": "qemu",
                            **{key: val for key, val in seen.items() if val is not None}})
            return out
        if method == "get" and parts[-1] == "current":
            return {"status": self.vms[int(parts[3])]["status"], "vmid": int(parts[3])}
        if method == "get" and parts[-1] == "config":
            return copy.deepcopy(self.vms[int(parts[3])]["config"])
        if method == "get" and parts[-1] == "content":
            return [{"volid": v, "content": "iso"} for v in self.iso]
        if method == "put" and parts[-1] == "config":
            return None
        if method == "post" and path.endswith("/qemu"):
            self.vms[params["vmid"]] = {"name": params["name"], "node": parts[1], "status": "running",
                                        "config": dict(params)}
        kind = {"qemu": "qmcreate", "start": "qmstart", "stop": "qmstop", "reboot": "qmreboot",
                "resize": "resize", "download-url": "download"}.get(parts[-1], "qmdestroy")
        return UPID.format(type=kind, id=params.get("vmid", parts[3] if len(parts) > 3 else "x"))

    def wait(self, node, upid, what=None):
        if self.fail_task and self.fail_task in upid:
            raise ProxmoxError(f"{what} failed: boom (task {upid})", upid=upid, exitstatus="boom",
                               task_log=["TASK ERROR: boom"])
        if self.warn_task and self.warn_task in upid:
            self.warnings.append(f"{what}: disk is almost full (task {upid})")
            return {"exitstatus": "WARNINGS: 1", "warnings": ["disk is almost full"]}
        return {"exitstatus": "OK"}

    def run_task(self, node, method, path, what, **params):
        return self.wait(node, self.call(method, path, **params), what)

    def vm_status(self, node, vmid):
        return self.call("get", f"nodes/{node}/qemu/{vmid}/status/current")

    def writes(self):
        return [c for c in self.calls if c[0] != "GET"]


@pytest.fixture
def fake(monkeypatch):
    client = FakeClient()
    from ansible_collections.homecluster.platform.plugins.modules import (  # noqa: PLC0415
        proxmox_talos_image,
        proxmox_talos_vm,
    )

    monkeypatch.setattr(proxmox_talos_vm, "ProxmoxClient", lambda module: client)
    monkeypatch.setattr(proxmox_talos_image, "ProxmoxClient", lambda module: client)
    return client


@pytest.fixture
def run_module(module_exit):
    """The shared runner (tests/unit/plugins/modules/conftest.py) with the connection options added,
    and the token never in a result."""
    def run(main, args, check_mode=False, diff=False):
        full = {**CONN, **args, "_ansible_check_mode": check_mode, "_ansible_diff": diff}
        with patch_module_args(full):
            try:
                main()
            except module_exit as e:
                assert "s3cr3t-token" not in json.dumps(e.result, default=str)
                return e
        raise AssertionError("module did not exit")

    return run
