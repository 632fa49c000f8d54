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
  - The VM is found by O(vmid) across the whole cluster (C(GET /cluster/resources)); its name is then
    read from its config and its power state from C(status/current), because the name and status in
    C(/cluster/resources) come from pvestatd and lag about 10 s behind (a VM created a moment ago has
    no name there, and status C(unknown)). A VMID held by a VM with another name, or the name held by
    another VMID, is refused before anything changes.
  - A task that ends with the exit status C(WARNINGS) (and a count) succeeded; its warnings are shown
    and returned in RV(task_warnings).
  - A task that fails because another task holds the VM (C(VM is locked (backup))) is retried for 30 s,
    then reported with the C(qm unlock) hint.
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
    description:
      - Proxmox tags, compared as a set. Proxmox stores them in lower case, sorted and joined with C(;),
        so they are sent and compared that way; C(Talos) and C(talos) are the same tag.
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
  - homecluster.platform.attributes
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
task_warnings:
  description: Warnings of Proxmox tasks that ended with C(WARNINGS), each with its task's UPID.
  returned: always
  type: list
  elements: str
  sample: ["starting VM 811 - the cloud-init drive is not on shared storage (task UPID:pve1:...)"]
config:
  description: Managed settings as they are now (as they would be, in check mode).
  returned: success
  type: dict
  sample: {cores: 4, memory: '8192', tags: controlplane;talos}
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._proxmox import (
    PROXMOX_MUTUALLY_EXCLUSIVE,
    PROXMOX_REQUIRED_ONE_OF,
    PROXMOX_REQUIRED_TOGETHER,
    ProxmoxClient,
    ProxmoxError,
    proxmox_argument_spec,
)
from ansible_collections.homecluster.platform.plugins.module_utils._proxmox_vm import (
    RESTART_KEYS,
    bad_tags,
    compare,
    desired_config,
    locate,
    managed,
    shown,
)


class TalosVM:
    """Read the VM, plan, predict (check mode) and act, one VM per run."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.client = ProxmoxClient(module)
        self.actions: list[str] = []
        self.result: dict[str, Any] = {
            "changed": False, "vmid": self.p["vmid"], "node": self.p["node"], "created": False,
            "changed_keys": [], "restart_keys": [], "actions": self.actions,
            "address": (self.p["address"] or "").split("/")[0]}

    def task(self, method: str, path: str, what: str, **params: Any) -> None:
        self.client.run_task(self.p["node"], method, path, what, **params)

    def run(self) -> dict[str, Any]:
        found = locate(self.client, self.p["vmid"], self.p["name"], self.p["node"], self.p["state"])
        if self.p["state"] == "absent":
            return self.remove(found)
        if not found:
            return self.create()
        return self.update(found)

    # ---------------------------------------------------------------- absent
    def remove(self, found: dict[str, Any] | None) -> dict[str, Any]:
        vmid, node = self.p["vmid"], self.p["node"]
        if not found:
            self.result["status"] = "absent"
            return self.result
        running = found["status"] == "running"
        self.result.update(changed=True, status="absent", diff={"before": managed(found["config"]), "after": {}})
        if running:
            self.actions.append("stop")
        self.actions.append("destroy")
        if self.module.check_mode:
            return self.result
        if running:
            self.task("post", f"nodes/{node}/qemu/{vmid}/status/stop", f"stopping VM {vmid}")
        self.task("delete", f"nodes/{node}/qemu/{vmid}", f"destroying VM {vmid}", purge=1,
                  **{"destroy-unreferenced-disks": 1})
        return self.result

    # ---------------------------------------------------------------- create
    def create(self) -> dict[str, Any]:
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
        try:
            self.client.wait(node, self.client.call("post", f"nodes/{node}/qemu", vmid=vmid, **want),
                             f"creating VM {vmid} '{self.p['name']}' on {node}")
        except ProxmoxError as e:
            if e.details.get("upid"):  # the create task ran and failed: PVE removed what it had made
                e.msg += f" Proxmox removed the half-created VM {vmid}, so a rerun creates it afresh."
            raise
        if self.p["started"]:
            self.task("post", f"nodes/{node}/qemu/{vmid}/status/start", f"starting VM {vmid}")
        self.result["config"] = managed(self.client.call("get", f"nodes/{node}/qemu/{vmid}/config"))
        return self.result

    # ---------------------------------------------------------------- update
    def plan(self, cur: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
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

    def update(self, found: dict[str, Any]) -> dict[str, Any]:
        vmid, node = self.p["vmid"], self.p["node"]
        cur = found["config"]
        was = found["status"]
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
            self.result["config"] = managed({**cur, **changes})
            return self.result
        self.apply(cur, changes, resize)
        self.result["config"] = managed(self.client.call("get", f"nodes/{node}/qemu/{vmid}/config"))
        return self.result

    def apply(self, cur: dict[str, Any], changes: dict[str, Any], resize: dict[str, str]) -> None:
        vmid, node = self.p["vmid"], self.p["node"]
        base = f"nodes/{node}/qemu/{vmid}"
        if changes:
            self.client.call("put", f"{base}/config", digest=cur.get("digest"), **changes)
        for disk, size in resize.items():
            self.task("put", f"{base}/resize", f"resizing {disk} of VM {vmid}", disk=disk, size=size)
        for action in self.actions:
            if action in ("reboot", "start", "shutdown"):
                self.task("post", f"{base}/status/{action}", f"{action} of VM {vmid}")


def main() -> None:
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
    wrong = bad_tags(module.params["tags"])
    if wrong:
        module.fail_json(msg=f"tags {', '.join(wrong)} are not valid Proxmox tags: use letters, digits and _ "
                         "(then also - + .); Proxmox stores tags in lower case")
    vm = None
    try:
        vm = TalosVM(module)
        result = vm.run()
    except ProxmoxError as e:
        e.fail(module, vmid=module.params["vmid"], node=module.params["node"],
               task_warnings=vm.client.warnings if vm else [])
    for warning in vm.client.warnings:
        module.warn(warning)
    result["task_warnings"] = vm.client.warnings
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
