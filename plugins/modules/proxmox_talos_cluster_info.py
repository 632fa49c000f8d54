#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_talos_cluster_info
short_description: Read the Proxmox VE cluster's nodes and VMs
version_added: 0.1.0
description:
  - Returns the cluster's nodes (C(GET /nodes)) and every VM the caller may see
    (C(GET /cluster/resources?type=vm)) with its VMID, name, node and status, and the API version.
  - The name and status in C(/cluster/resources) come from pvestatd and lag about 10 s; they are
    read live from the VM's config and C(status/current) when the VM is listed without a name, with
    PVE's placeholder name C(VM <vmid>) (pvestatd saw it while its create task held a config
    without a name), with a lock, or with a status other than C(running)/C(stopped).
  - Used by the C(proxmox_vm) role's preflight to refuse a VMID held by a VM of another name and
    an unknown node before anything changes. Read-only.
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.proxmox
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    description: A second run with the same inputs reports no change and makes no write call.
    support: full
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Read the cluster
  homecluster.platform.proxmox_talos_cluster_info:
    api_host: pve1.home.arpa
    api_user: automation@pve
    api_token_id: ansible
    api_token_secret: "{{ vault_proxmox_token_secret }}"
  register: cluster
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
nodes:
  description: Names of the cluster nodes.
  returned: always
  type: list
  elements: str
  sample: [pve1, pve2]
vms:
  description: VMs by VMID (as a string key).
  returned: always
  type: dict
  sample: {"811": {name: cp1, node: pve1, status: running}}
version:
  description: Proxmox VE version.
  returned: always
  type: str
  sample: 8.4.1
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._proxmox import (
    PROXMOX_MUTUALLY_EXCLUSIVE,
    PROXMOX_REQUIRED_ONE_OF,
    PROXMOX_REQUIRED_TOGETHER,
    ProxmoxClient,
    ProxmoxError,
    proxmox_argument_spec,
)


def main() -> None:
    module = AnsibleModule(argument_spec=proxmox_argument_spec(), supports_check_mode=True,
                           mutually_exclusive=PROXMOX_MUTUALLY_EXCLUSIVE, required_one_of=PROXMOX_REQUIRED_ONE_OF,
                           required_together=PROXMOX_REQUIRED_TOGETHER)
    try:
        client = ProxmoxClient(module)
        version = client.call("get", "version").get("version")
        nodes = sorted(n["node"] for n in client.call("get", "nodes"))
        vms = {}
        for r in client.call("get", "cluster/resources", type="vm"):
            if r.get("type") != "qemu":
                continue
            vm = {"name": r.get("name"), "node": r.get("node"), "status": r.get("status"), "lock": r.get("lock")}
            if (not vm["name"] or vm["name"] == f"VM {r['vmid']}" or vm["lock"]
                    or vm["status"] not in ("running", "stopped")):
                # pvestatd has not seen this VM as it is now (created or started in the last ~10 s; during
                # a create the config has no name yet, and pvestatd shows "VM <vmid>"): read it live.
                vm["name"] = client.call("get", f"nodes/{r['node']}/qemu/{r['vmid']}/config").get("name")
                live = client.vm_status(r["node"], r["vmid"])
                vm["status"], vm["lock"] = live.get("status"), live.get("lock")
            vms[str(r["vmid"])] = vm
    except ProxmoxError as e:
        e.fail(module)
    module.exit_json(changed=False, nodes=nodes, vms=vms, version=version)


if __name__ == "__main__":
    main()
