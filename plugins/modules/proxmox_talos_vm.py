#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_talos_vm
short_description: Create, update, start or remove a Talos VM on Proxmox VE, with check and diff mode
version_added: 0.1.0
description:
  - Makes one QEMU VM on a Proxmox VE cluster look exactly as described, with the settings Talos
    Linux needs (OVMF with an EFI disk, machine C(q35), CPU type C(host), ballooning off, the
    C(virtio-scsi-pci) controller), an install disk, an optional data disk (for Ceph), one NIC,
    a cloud-init (nocloud) drive carrying a static address, the Talos ISO, tags and start on boot.
  - The VM is found by O(vmid) across the whole cluster (one C(GET /cluster/resources)). A VMID held
    by a VM with another name, or the name held by another VMID, is refused before anything changes.
  - Settings that can change in place (cores, memory, tags, description, start on boot, disk growth,
    a new data disk, the ISO) are applied with one C(PUT config) carrying the config digest, so a
    concurrent edit is detected. On a running VM, Proxmox applies cores and memory at the next boot.
  - Settings that need the VM restarted (firmware, machine, CPU type, controller, NIC, address,
    boot order) are refused on a running VM unless O(allow_restart=true); then the VM is rebooted.
  - Why not C(community.proxmox.proxmox_kvm) - it has no check mode and no diff, takes the next
    free VMID in a way that races when VMs are created in parallel, skips disks and NICs on update
    unless C(update_unsafe) is set, and reports cloud-init settings as changed on every run. This
    module reads before it writes, predicts in check mode what it would do, shows it with C(--diff),
    uses only the VMID it is given and compares property strings by meaning, not by text.
options:
  node:
    description: Cluster node the VM lives on.
    type: str
    required: true
  vmid:
    description: VMID of the VM, always explicit; no "next free id" is ever taken.
    type: int
    required: true
  name:
    description: VM name (a DNS name); identifies the VM together with O(vmid).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the VM; V(absent) stops it (hard) and destroys it with its disks.
    type: str
    choices: [present, absent]
    default: present
  started:
    description: Whether the VM should be running (with O(state=present)).
    type: bool
    default: true
  cores:
    description: Virtual CPU cores.
    type: int
    default: 2
  memory:
    description: Memory in MiB.
    type: int
    default: 4096
  cpu_type:
    description: QEMU CPU type; Talos wants C(host) (x86-64-v2 at least).
    type: str
    default: host
  machine:
    description: QEMU machine type.
    type: str
    default: q35
  scsihw:
    description:
      - SCSI controller. C(virtio-scsi-pci) (VirtIO SCSI); C(virtio-scsi-single) is reported to hang
        the Talos bootstrap.
    type: str
    default: virtio-scsi-pci
  disk:
    description: The install disk (C(scsi0)).
    type: dict
    required: true
    suboptions:
      storage:
        description: Storage to allocate it on.
        type: str
        required: true
      size:
        description: Size in GiB (grown in place when raised; never shrunk).
        type: int
        required: true
      options:
        description: Extra drive options.
        type: str
        default: discard=on,ssd=1
  data_disk:
    description: Optional second disk (C(scsi1)) left empty for Ceph. Omit for none.
    type: dict
    suboptions:
      storage:
        description: Storage to allocate it on.
        type: str
        required: true
      size:
        description: Size in GiB.
        type: int
        required: true
      options:
        description: Extra drive options.
        type: str
        default: discard=on,ssd=1
  efi_storage:
    description: Storage of the EFI vars disk (C(efidisk0)); defaults to the install disk's storage.
    type: str
  iso:
    description: Volume id of the Talos ISO attached as a CD-ROM (C(ide2)), for example C(local:iso/talos.iso).
    type: str
  cloudinit_storage:
    description:
      - Storage of the cloud-init drive (C(ide0)) that carries O(address) to the nocloud image.
        Defaults to the install disk's storage.
    type: str
  network:
    description: The VM's NIC (C(net0)).
    type: dict
    default: {}
    suboptions:
      bridge:
        description: Bridge.
        type: str
        default: vmbr0
      vlan:
        description: VLAN tag; omit for untagged.
        type: int
      mac:
        description: MAC address; omit to let Proxmox pick one (then it is not compared).
        type: str
      model:
        description: NIC model.
        type: str
        default: virtio
      firewall:
        description: Proxmox firewall on the NIC.
        type: bool
        default: false
  address:
    description: Static IPv4 address with prefix (C(192.168.1.11/24)) given to the node by cloud-init.
    type: str
  gateway:
    description: Default gateway for O(address).
    type: str
  nameservers:
    description: DNS servers for cloud-init.
    type: list
    elements: str
    default: []
  tags:
    description: Proxmox tags (compared as a set).
    type: list
    elements: str
    default: []
  description:
    description: VM description (notes).
    type: str
    default: ''
  onboot:
    description: Start the VM when its node boots.
    type: bool
    default: true
  agent:
    description: Enable the QEMU guest agent device; only when the image carries the qemu-guest-agent extension.
    type: bool
    default: false
  allow_restart:
    description: Allow changes that need a restart of a running VM, and restart it to apply them.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - homecluster.platform.proxmox
attributes:
  check_mode:
    support: full
    details: Reads the VM and reports what would be created, changed, started or removed.
  diff_mode:
    support: full
    details: Before and after of every managed setting, per VM.
  idempotent:
    description: A second run with the same inputs reports no change and makes no write call.
    support: full
  platform:
    platforms: posix
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Create a Talos control plane VM
  homecluster.platform.proxmox_talos_vm:
    api_host: pve1.home.arpa
    api_user: automation@pve
    api_token_id: ansible
    api_token_secret: "{{ vault_proxmox_token_secret }}"
    ca_path: /etc/homecluster/pve-root-ca.pem
    node: pve1
    vmid: 811
    name: cp1
    cores: 4
    memory: 8192
    disk: {storage: local-lvm, size: 32}
    data_disk: {storage: local-lvm, size: 200}
    iso: local:iso/talos-v1.14.1-ce4c980550dd-nocloud-amd64.iso
    network: {bridge: vmbr0, vlan: 20, mac: "BC:24:11:00:08:11"}
    address: 192.168.20.11/24
    gateway: 192.168.20.1
    tags: [talos, controlplane]
  delegate_to: localhost

- name: Remove it
  homecluster.platform.proxmox_talos_vm:
    api_host: pve1.home.arpa
    api_user: automation@pve
    api_token_id: ansible
    api_token_secret: "{{ vault_proxmox_token_secret }}"
    node: pve1
    vmid: 811
    name: cp1
    state: absent
    disk: {storage: local-lvm, size: 32}
  delegate_to: localhost
"""

RETURN = r"""
vmid:
  description: VMID of the VM.
  returned: always
  type: int
  sample: 811
node:
  description: Node of the VM.
  returned: always
  type: str
  sample: pve1
status:
  description: Power state after the run (predicted in check mode); C(absent) once removed.
  returned: always
  type: str
  sample: running
created:
  description: Whether the VM was (or would be) created.
  returned: always
  type: bool
changed_keys:
  description: Config keys that were (or would be) changed on an existing VM.
  returned: always
  type: list
  elements: str
  sample: [cores, memory]
restart_keys:
  description: Changed keys that need a restart of a running VM.
  returned: always
  type: list
  elements: str
  sample: [net0]
actions:
  description: What was (or would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: [create, start]
address:
  description: The node address from O(address), without prefix.
  returned: always
  type: str
  sample: 192.168.20.11
config:
  description: Managed settings as they are now (as they would be, in check mode).
  returned: success
  type: dict
  sample: {cores: 4, memory: '8192', tags: controlplane;talos}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._proxmox import (
    PROXMOX_MUTUALLY_EXCLUSIVE,
    PROXMOX_REQUIRED_ONE_OF,
    PROXMOX_REQUIRED_TOGETHER,
    ProxmoxClient,
    ProxmoxError,
    parse_prop,
    proxmox_argument_spec,
    size_to_gib,
)

SAFE_KEYS = {"name", "cores", "memory", "tags", "description", "onboot", "scsi0", "scsi1", "ide2", "ide0",
             "nameserver"}
RESTART_KEYS = {"bios", "machine", "cpu", "scsihw", "balloon", "ostype", "efidisk0", "boot", "net0", "ipconfig0",
                "agent"}


def desired_config(p):
    """The managed part of the VM config, as values PVE accepts on create."""
    disk = p["disk"]
    cfg = {
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
    if p["tags"]:
        cfg["tags"] = ";".join(sorted(set(p["tags"])))
    if p["description"]:
        cfg["description"] = p["description"]
    return cfg


def _net_equal(cur, want):
    c, w = parse_prop(cur), parse_prop(want)
    models = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")
    cm = next((k for k in c if k in models), c.get("model"))
    wm = next((k for k in w if k in models), w.get("model"))
    if cm != wm or c.get("bridge") != w.get("bridge") or c.get("tag") != w.get("tag"):
        return False
    if c.get("firewall", "0") != w.get("firewall", "0"):
        return False
    want_mac = w.get(wm, "")
    return not (want_mac and want_mac != "1" and want_mac.upper() != c.get(cm, "").upper())


def _tags(value):
    return {t for t in str(value).replace(",", ";").replace(" ", ";").split(";") if t}


def _disk_size(key, cur, want):
    have = size_to_gib(parse_prop(cur, "file").get("size"))
    need = float(str(want).split(",", maxsplit=1)[0].rsplit(":", 1)[1])
    if need < have:
        return True, f"{key} is {have:g} GiB, larger than the {need:g} GiB asked; disks are never shrunk"
    return need == have, None


def _prop(key, default_key=None):
    return lambda cur, want: parse_prop(cur, default_key).get(key) == parse_prop(want, default_key).get(key)


COMPARATORS = {
    "tags": lambda cur, want: _tags(cur) == _tags(want),
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


def compare(key, cur, want):
    """(equal, note) for one key, comparing by meaning rather than by text."""
    if cur is None:
        return False, None
    if key in ("scsi0", "scsi1"):
        return _disk_size(key, cur, want)
    if key in COMPARATORS:
        return COMPARATORS[key](cur, want), None
    return str(cur) == str(want), None


def shown(key, value):
    """How a value appears in the diff (volumes by size rather than allocation syntax)."""
    if value is None:
        return None
    if key in ("scsi0", "scsi1") and "size=" not in str(value) and ":" in str(value):
        head = str(value).split(",", maxsplit=1)[0]
        return f"{head.rsplit(':', 1)[0]}: {head.rsplit(':', 1)[1]} GiB"
    return value


class TalosVM:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.client = ProxmoxClient(module)
        self.actions = []
        self.result = {"changed": False, "vmid": self.p["vmid"], "node": self.p["node"], "created": False,
                       "changed_keys": [], "restart_keys": [], "actions": self.actions,
                       "address": (self.p["address"] or "").split("/")[0]}

    def locate(self):
        """Find the VM by VMID and by name across the cluster; refuse collisions."""
        vmid, name, node = self.p["vmid"], self.p["name"], self.p["node"]
        resources = self.client.call("get", "cluster/resources", type="vm")
        by_id = next((r for r in resources if int(r.get("vmid", -1)) == vmid), None)
        if by_id and by_id.get("name") != name:
            raise ProxmoxError(f"VMID {vmid} is already used by VM '{by_id.get('name')}' on node {by_id.get('node')}, "
                               f"not by '{name}': choose another vmid for '{name}' (or rename/remove that VM)")
        same_name = [r for r in resources if r.get("name") == name and int(r.get("vmid", -1)) != vmid
                     and r.get("type") == "qemu"]
        if same_name and self.p["state"] == "present":
            other = same_name[0]
            raise ProxmoxError(f"a VM named '{name}' already exists with VMID {other['vmid']} on node "
                               f"{other.get('node')}; the inventory asks for VMID {vmid}: fix vmid or the name")
        if by_id and by_id.get("node") != node:
            raise ProxmoxError(f"VM {vmid} '{name}' is on node {by_id.get('node')}, the inventory says {node}: "
                               "migrate it in Proxmox or correct the node; this module does not migrate")
        return by_id

    def wait(self, upid, what):
        self.client.wait(self.p["node"], upid, what)

    def run(self):
        found = self.locate()
        if self.p["state"] == "absent":
            return self.remove(found)
        if not found:
            return self.create()
        return self.update(found)

    # ---------------------------------------------------------------- absent
    def remove(self, found):
        vmid, node = self.p["vmid"], self.p["node"]
        if not found:
            self.result["status"] = "absent"
            return self.result
        before = self.client.call("get", f"nodes/{node}/qemu/{vmid}/config")
        self.result.update(changed=True, status="absent", diff={"before": _managed(before), "after": {}})
        if found.get("status") == "running":
            self.actions.append("stop")
        self.actions.append("destroy")
        if self.module.check_mode:
            return self.result
        if found.get("status") == "running":
            self.wait(self.client.call("post", f"nodes/{node}/qemu/{vmid}/status/stop"), f"stopping VM {vmid}")
        upid = self.client.call("delete", f"nodes/{node}/qemu/{vmid}", purge=1, **{"destroy-unreferenced-disks": 1})
        self.wait(upid, f"destroying VM {vmid}")
        return self.result

    # ---------------------------------------------------------------- create
    def create(self):
        vmid, node = self.p["vmid"], self.p["node"]
        want = desired_config(self.p)
        self.result.update(changed=True, created=True, config=want,
                           diff={"before": {}, "after": {k: shown(k, v) for k, v in want.items()}})
        self.actions.append("create")
        if self.p["started"]:
            self.actions.append("start")
        self.result["status"] = "running" if self.p["started"] else "stopped"
        if self.module.check_mode:
            return self.result
        upid = self.client.call("post", f"nodes/{node}/qemu", vmid=vmid, **want)
        self.wait(upid, f"creating VM {vmid} '{self.p['name']}' on {node}")
        if self.p["started"]:
            self.wait(self.client.call("post", f"nodes/{node}/qemu/{vmid}/status/start"), f"starting VM {vmid}")
        self.result["config"] = _managed(self.client.call("get", f"nodes/{node}/qemu/{vmid}/config"))
        return self.result

    # ---------------------------------------------------------------- update
    def plan(self, cur):
        """Changes (PUT config), disk growth (resize) and warnings for an existing VM."""
        changes, resize = {}, {}
        for key, value in desired_config(self.p).items():
            equal, note = compare(key, cur.get(key), value)
            if note:
                self.module.warn(note)
            if equal:
                continue
            if key in ("scsi0", "scsi1") and cur.get(key):
                resize[key] = f"{str(value).split(',', maxsplit=1)[0].rsplit(':', 1)[1]}G"
            else:
                changes[key] = value
        return changes, resize

    def update(self, found):
        vmid, node = self.p["vmid"], self.p["node"]
        cur = self.client.call("get", f"nodes/{node}/qemu/{vmid}/config")
        was = found.get("status")
        running = was == "running"
        changes, resize = self.plan(cur)
        keys = sorted(set(changes) | set(resize))
        restart = sorted(k for k in keys if k in RESTART_KEYS)
        self.result.update(changed_keys=keys, restart_keys=restart, status=was)
        if restart and running and not self.p["allow_restart"]:
            raise ProxmoxError(
                f"VM {vmid} '{self.p['name']}' is running and these changes need a restart: {', '.join(restart)}. "
                "Set allow_restart (role: proxmox_vm_allow_restart: true) to apply them and reboot the VM, "
                "or stop the VM first.", changed_keys=keys, restart_keys=restart)
        diff = {"before": {k: cur.get(k) for k in keys},
                "after": {k: shown(k, changes[k]) if k in changes else f"size={resize[k]} (grown in place)"
                          for k in keys}}
        if changes:
            self.actions.append("update")
        if resize:
            self.actions.append("resize")
        if restart and running:
            self.actions.append("reboot")
        if self.p["started"] != running:
            self.actions.append("start" if self.p["started"] else "shutdown")
            self.result["status"] = "running" if self.p["started"] else "stopped"
            diff["before"]["status"], diff["after"]["status"] = was, self.result["status"]
        self.result["changed"] = bool(self.actions)
        if self.actions:
            self.result["diff"] = diff
        if self.module.check_mode or not self.actions:
            self.result["config"] = _managed({**cur, **changes})
            return self.result
        self.apply(cur, changes, resize)
        self.result["config"] = _managed(self.client.call("get", f"nodes/{node}/qemu/{vmid}/config"))
        return self.result

    def apply(self, cur, changes, resize):
        vmid, node = self.p["vmid"], self.p["node"]
        base = f"nodes/{node}/qemu/{vmid}"
        if changes:
            self.client.call("put", f"{base}/config", digest=cur.get("digest"), **changes)
        for disk, size in resize.items():
            self.wait(self.client.call("put", f"{base}/resize", disk=disk, size=size), f"resizing {disk} of VM {vmid}")
        for action in self.actions:
            if action in ("reboot", "start", "shutdown"):
                self.wait(self.client.call("post", f"{base}/status/{action}"), f"{action} of VM {vmid}")


MANAGED = ("name", "cores", "memory", "cpu", "machine", "bios", "scsihw", "balloon", "ostype", "onboot", "agent",
           "efidisk0", "scsi0", "scsi1", "ide2", "ide0", "boot", "net0", "ipconfig0", "nameserver", "tags",
           "description")


def _managed(cfg):
    return {k: cfg[k] for k in MANAGED if k in cfg}


def main():
    disk_spec = {"storage": {"type": "str", "required": True}, "size": {"type": "int", "required": True},
                 "options": {"type": "str", "default": "discard=on,ssd=1"}}
    spec = proxmox_argument_spec()
    spec.update(
        node={"type": "str", "required": True},
        vmid={"type": "int", "required": True},
        name={"type": "str", "required": True},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        started={"type": "bool", "default": True},
        cores={"type": "int", "default": 2},
        memory={"type": "int", "default": 4096},
        cpu_type={"type": "str", "default": "host"},
        machine={"type": "str", "default": "q35"},
        scsihw={"type": "str", "default": "virtio-scsi-pci"},
        disk={"type": "dict", "required": True, "options": disk_spec},
        data_disk={"type": "dict", "options": disk_spec},
        efi_storage={"type": "str"},
        iso={"type": "str"},
        cloudinit_storage={"type": "str"},
        network={"type": "dict", "default": {}, "options": {
            "bridge": {"type": "str", "default": "vmbr0"}, "vlan": {"type": "int"}, "mac": {"type": "str"},
            "model": {"type": "str", "default": "virtio"}, "firewall": {"type": "bool", "default": False}}},
        address={"type": "str"},
        gateway={"type": "str"},
        nameservers={"type": "list", "elements": "str", "default": []},
        tags={"type": "list", "elements": "str", "default": []},
        description={"type": "str", "default": ""},
        onboot={"type": "bool", "default": True},
        agent={"type": "bool", "default": False},
        allow_restart={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=PROXMOX_MUTUALLY_EXCLUSIVE, required_one_of=PROXMOX_REQUIRED_ONE_OF,
                           required_together=PROXMOX_REQUIRED_TOGETHER)
    if module.params["vmid"] < 100:
        module.fail_json(msg=f"vmid {module.params['vmid']} is below 100, the lowest VMID Proxmox accepts")
    try:
        vm = TalosVM(module)
        result = vm.run()
    except ProxmoxError as e:
        e.fail(module, vmid=module.params["vmid"], node=module.params["node"])
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
