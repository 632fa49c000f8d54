# SPDX-License-Identifier: GPL-3.0-or-later
"""The API token ACL of docs/roles/proxmox_vm.md is enough and minimal.

The table is read from the page itself. With exactly that ACL the role's whole lifecycle (read the
cluster, download the image, create and start a VM, change it in every way the role does, stop it,
remove it) runs through the modules against the simulator, whose checks follow PVE's per-endpoint
permissions. Then, for every single privilege taken away, the same lifecycle fails with a message
naming that privilege and its path.
"""

from __future__ import annotations

import re

import pytest
from pvehelp import REPO_ROOT, TOKEN, conn, run_module, sim_config

DOC = REPO_ROOT / "docs" / "roles" / "proxmox_vm.md"


def documented_acl():
    """[(path, [privileges])] from the page's "Privileges of the API token" table."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Privileges of the API token", 1)[1].split("\n## ", 1)[0]
    acl = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        path = re.match(r"^`(/[^`]*)`", cells[0]) if len(cells) >= 2 else None
        if path:
            acl.append((path.group(1), re.findall(r"`([A-Z][\w.]+)`", cells[1])))
    return acl


def sim_with(make_sim, acl):
    token_acl = [{"path": path.replace("<node>", "pve1"), "privs": privs} for path, privs in acl]
    config = sim_config(**{"automation@pve!ansible": {"secret": TOKEN, "privsep": True, "acl": token_acl}})
    # The user may do anything: the privilege-separated token's own ACL alone decides.
    config["users"]["automation@pve"]["acl"] = [{"path": "/", "roles": ["Administrator"]}]
    return make_sim(config)


def lifecycle(sim):
    """The calls the proxmox_vm role makes, step by step; returns the first failure (or None)."""
    c = conn(sim)
    vm = {**c, "node": "pve1", "vmid": 601, "name": "cp1", "cores": 2, "memory": 2048,
          "disk": {"storage": "local-lvm", "size": 10}, "network": {"bridge": "vmbr0", "vlan": 20},
          "tags": ["talos"], "description": "Talos node"}
    image = {**c, "node": "pve1", "storage": "local", "factory_url": "https://factory.example"}
    steps = [
        ("proxmox_talos_cluster_info", c),
        ("proxmox_talos_image", {**image, "talos_version": "v1.14.1"}),
        ("proxmox_talos_image", {**image, "talos_version": "v1.14.2"}),
        ("proxmox_talos_vm", {**vm, "iso": "local:iso/talos-v1.14.1-376567988ad3-nocloud-amd64.iso"}),
        ("proxmox_talos_vm", {**vm, "iso": "local:iso/talos-v1.14.2-376567988ad3-nocloud-amd64.iso",
                              "cores": 3, "memory": 3072, "tags": ["talos", "controlplane"],
                              "disk": {"storage": "local-lvm", "size": 12},
                              "data_disk": {"storage": "local-lvm", "size": 20},
                              "address": "127.0.31.61/24", "gateway": "127.0.31.1", "allow_restart": True}),
        ("proxmox_talos_vm", {**vm, "started": False}),
        ("proxmox_talos_vm", {**vm, "state": "absent"}),
    ]
    for name, args in steps:
        res = run_module(name, args, expect_fail=None)
        if res.get("failed"):
            return name, res["msg"]
    return None


def test_the_documented_acl_is_enough(make_sim):
    acl = documented_acl()
    assert acl, f"no ACL table found in {DOC}"
    sim = sim_with(make_sim, acl)
    assert lifecycle(sim) is None
    assert sim.admin("GET", "state")["vms"] == {}


@pytest.mark.parametrize(("path", "priv"), [(path, priv) for path, privs in documented_acl() for priv in privs])
def test_each_privilege_is_needed_and_named_when_missing(make_sim, path, priv):
    acl = [(p, [x for x in privs if not (p == path and x == priv)]) for p, privs in documented_acl()]
    failure = lifecycle(sim_with(make_sim, acl))
    assert failure, f"the lifecycle passed without {priv} on {path}: the documented ACL is not minimal"
    module, msg = failure
    assert priv in msg, f"{module}: {msg}"
    want_path = path.replace("<node>", "pve1")
    assert want_path in msg, f"{module}: {msg}"
