# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Private helpers of proxmox_talos_vm: the desired VM config, comparison by meaning, and finding the VM.

Kept apart from the module so the module holds only the create/update/remove flow, and so the
rules (what PVE normalises, which keys need a restart) are unit-tested on their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ansible_collections.homecluster.platform.plugins.module_utils._proxmox import (
    ProxmoxError,
    parse_prop,
    size_to_gib,
)

# Keys whose change needs a restart of a running VM (PVE keeps them pending until the next boot).
RESTART_KEYS = frozenset({"bios", "machine", "cpu", "scsihw", "balloon", "ostype", "efidisk0", "boot", "net0",
                          "ipconfig0", "agent"})
MANAGED = ("name", "cores", "memory", "cpu", "machine", "bios", "scsihw", "balloon", "ostype", "onboot", "agent",
           "efidisk0", "scsi0", "scsi1", "ide2", "ide0", "boot", "net0", "ipconfig0", "nameserver", "tags",
           "description")
NET_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")
TAG_RE = re.compile(r"^[a-z0-9_][a-z0-9_+.-]*$")


def normalise_tags(tags: Any) -> list[str]:
    """Tags as PVE stores them: lower-cased, de-duplicated, sorted (it joins them with ';').

    Accepts a list or a PVE tag string (separated by ';', ',' or spaces).
    """
    if isinstance(tags, (list, tuple, set)):
        items = [str(t) for t in tags]
    else:
        items = re.split(r"[;,\s]+", str(tags or ""))
    return sorted({t.strip().lower() for t in items if t.strip()})


def bad_tags(tags: list[str]) -> list[str]:
    """Tags PVE's `pve-tag` format refuses (letters, digits, `_`, then also `-`, `+`, `.`)."""
    return [t for t in tags if not TAG_RE.match(t.strip().lower())]


def desired_config(p: dict[str, Any]) -> dict[str, Any]:
    """The managed part of the VM config, as values PVE accepts on create."""
    disk = p["disk"]
    cfg: dict[str, Any] = {
        "name": p["name"], "cores": p["cores"], "memory": str(p["memory"]), "cpu": p["cpu_type"],
        "machine": p["machine"], "bios": "ovmf", "scsihw": p["scsihw"], "balloon": 0, "ostype": "l26",
        "onboot": int(p["onboot"]), "agent": "enabled=1" if p["agent"] else "0",
        "efidisk0": f"{p['efi_storage'] or disk['storage']}:1,efitype=4m,pre-enrolled-keys=0",
        "scsi0": ",".join(x for x in (f"{disk['storage']}:{disk['size']}", disk["options"]) if x),
        "boot": "order=scsi0;ide2;net0",
    }
    if p["data_disk"]:
        dd = p["data_disk"]
        cfg["scsi1"] = ",".join(x for x in (f"{dd['storage']}:{dd['size']}", dd["options"]) if x)
    if p["iso"]:
        cfg["ide2"] = f"{p['iso']},media=cdrom"
    net = p["network"]
    parts = [f"{net['model']}={net['mac'].upper()}" if net.get("mac") else net["model"], f"bridge={net['bridge']}"]
    if net.get("firewall"):
        parts.append("firewall=1")
    if net.get("vlan") is not None:
        parts.append(f"tag={net['vlan']}")
    cfg["net0"] = ",".join(parts)
    if p["address"]:
        cfg["ide0"] = f"{p['cloudinit_storage'] or disk['storage']}:cloudinit"
        cfg["ipconfig0"] = ",".join([f"ip={p['address']}"] + ([f"gw={p['gateway']}"] if p["gateway"] else []))
    if p["nameservers"]:
        cfg["nameserver"] = " ".join(p["nameservers"])
    tags = normalise_tags(p["tags"])
    if tags:
        cfg["tags"] = ";".join(tags)
    if p["description"]:
        cfg["description"] = p["description"]
    return cfg


def _net_equal(cur: Any, want: Any) -> bool:
    c, w = parse_prop(cur), parse_prop(want)
    cm = next((k for k in c if k in NET_MODELS), c.get("model"))
    wm = next((k for k in w if k in NET_MODELS), w.get("model"))
    if cm != wm or c.get("bridge") != w.get("bridge") or c.get("tag") != w.get("tag"):
        return False
    if c.get("firewall", "0") != w.get("firewall", "0"):
        return False
    want_mac = w.get(wm, "")
    return not (want_mac and want_mac != "1" and want_mac.upper() != c.get(cm, "").upper())


def _disk_size(key: str, cur: Any, want: Any) -> tuple[bool, str | None]:
    have = size_to_gib(parse_prop(cur, "file").get("size"))
    need = float(str(want).split(",", maxsplit=1)[0].rsplit(":", 1)[1])
    if need < have:
        return True, f"{key} is {have:g} GiB, larger than the {need:g} GiB asked; disks are never shrunk"
    return need == have, None


def _prop(key: str, default_key: str | None = None) -> Callable[[Any, Any], bool]:
    return lambda cur, want: parse_prop(cur, default_key).get(key) == parse_prop(want, default_key).get(key)


COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "tags": lambda cur, want: normalise_tags(cur) == normalise_tags(want),
    "memory": lambda cur, want: parse_prop(cur, "current").get("current") == str(want),
    "description": lambda cur, want: str(cur).rstrip() == str(want).rstrip(),
    "net0": _net_equal,
    "ipconfig0": lambda cur, want: parse_prop(cur) == parse_prop(want),
    "nameserver": lambda cur, want: str(cur).split() == str(want).split(),
    "agent": lambda cur, want: (parse_prop(cur, "enabled").get("enabled", "0")
                                == parse_prop(want, "enabled").get("enabled", "0")),
    "efidisk0": _prop("efitype", "file"),
    "ide0": lambda cur, want: "cloudinit" in str(cur),
    "ide2": _prop("file", "file"),
}


def compare(key: str, cur: Any, want: Any) -> tuple[bool, str | None]:
    """(equal, note) for one key, comparing by meaning rather than by text."""
    if cur is None:
        return False, None
    if key in ("scsi0", "scsi1"):
        return _disk_size(key, cur, want)
    if key in COMPARATORS:
        return COMPARATORS[key](cur, want), None
    return str(cur) == str(want), None


def shown(key: str, value: Any) -> Any:
    """How a value appears in the diff (volumes by size rather than allocation syntax)."""
    if value is None:
        return None
    if key in ("scsi0", "scsi1") and "size=" not in str(value) and ":" in str(value):
        head = str(value).split(",", maxsplit=1)[0]
        return f"{head.rsplit(':', 1)[0]}: {head.rsplit(':', 1)[1]} GiB"
    return value


def managed(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings this module manages, out of a full VM config."""
    return {k: cfg[k] for k in MANAGED if k in cfg}


def locate(client: Any, vmid: int, name: str, node: str, state: str) -> dict[str, Any] | None:
    """Find the VM by VMID (and any other VM by its name) across the cluster; refuse collisions.

    `/cluster/resources` lists every VMID with its node at once (from the cluster's VM list), but
    takes `name` and `status` from pvestatd, which refreshes them about every 10 s: a VM created or
    started in the last seconds has no name there and status `unknown` or a stale one. So the name
    comes from the VM's config and the power state from `status/current`; the resource list is only
    trusted for which VMIDs exist and where.

    Returns None when the VMID is free, else {"node", "config", "status"} read live.
    """
    resources = [r for r in client.call("get", "cluster/resources", type="vm") or []
                 if r.get("type", "qemu") == "qemu"]
    by_id = next((r for r in resources if int(r.get("vmid", -1)) == vmid), None)
    found = None
    if by_id:
        where = by_id.get("node") or node
        cfg = client.call("get", f"nodes/{where}/qemu/{vmid}/config")
        if cfg.get("name") != name:
            raise ProxmoxError(f"VMID {vmid} is already used by VM '{cfg.get('name') or '(no name)'}' on node "
                               f"{where}, not by '{name}': choose another vmid for '{name}' (or rename/remove that "
                               "VM)")
        if where != node:
            raise ProxmoxError(f"VM {vmid} '{name}' is on node {where}, the inventory says {node}: migrate it in "
                               "Proxmox or correct the node; this module does not migrate")
        found = {"node": where, "config": cfg, "status": client.vm_status(where, vmid).get("status")}
    if state == "present":
        # A name in the list may be stale and a fresh VM has none: confirm each candidate from its config.
        for r in resources:
            if int(r.get("vmid", -1)) == vmid or r.get("name") not in (name, None, ""):
                continue
            other = client.call("get", f"nodes/{r.get('node')}/qemu/{r['vmid']}/config") or {}
            if other.get("name") == name:
                raise ProxmoxError(f"a VM named '{name}' already exists with VMID {r['vmid']} on node "
                                   f"{r.get('node')}; the inventory asks for VMID {vmid}: fix vmid or the name")
    return found
