#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_info
short_description: Report the state of Talos nodes (maintenance or running, version, services, etcd)
version_added: 0.1.0
description:
  - Asks every node at once (one multi-node C(talosctl) call per question, never one call per
    node) whether it is in maintenance mode, configured or unreachable, and for configured nodes
    their Talos version, machine stage, services and the etcd members.
  - Read-only; reports no change.
options:
  nodes:
    description: Node addresses to ask.
    type: list
    elements: str
    required: true
  control_plane_nodes:
    description: Control planes asked for etcd members; defaults to every configured node.
    type: list
    elements: str
    default: []
  gather:
    description:
      - What to collect. C(version) for every reachable node; C(status), C(services) and C(etcd) for configured nodes.
      - C(disks) lists the block devices of every reachable node (C(get disks), insecure in maintenance),
        as used by the install-disk preflight; not gathered unless asked for.
    type: list
    elements: str
    default: [version, status, services, etcd]
    choices: [version, status, services, etcd, disks]
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Look at the nodes
  homecluster.platform.talos_info:
    nodes: [192.168.1.11, 192.168.1.12, 192.168.1.21]
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11]
  register: talos
"""

RETURN = r"""
nodes:
  description: Per node address, what was found.
  returned: always
  type: dict
  sample:
    192.168.1.11:
      state: configured
      stage: running
      ready: true
      version: {tag: v1.14.1}
      services: {etcd: {running: true, healthy: true}}
      disks: [{id: sda, dev_path: /dev/sda, size: 107374182400, model: QEMU HARDDISK}]
      error: null
maintenance_nodes:
  description: Nodes in maintenance mode.
  returned: always
  type: list
  elements: str
  sample: [192.168.1.21]
configured_nodes:
  description: Configured nodes (answer only with mutual TLS).
  returned: always
  type: list
  elements: str
  sample: [192.168.1.11]
unreachable_nodes:
  description: Nodes that did not answer.
  returned: always
  type: list
  elements: str
  sample: []
etcd_members:
  description: etcd members as reported by the control planes.
  returned: always
  type: list
  elements: dict
  sample: [{"node": "192.168.1.11", "id": "1a2b", "hostname": "cp1"}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._talos_state import (
    CONFIGURED,
    MAINTENANCE,
    UNREACHABLE,
    machine_status,
    probe_maintenance,
)
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    talosctl_argument_spec,
)


def services_by_node(talos, nodes):
    items, errors, _res = talos.get("services", nodes=nodes, check=False)
    out = {n: {} for n in nodes}
    for item in items:
        node = item.get("node")
        sid = (item.get("metadata") or {}).get("id")
        spec = item.get("spec") or {}
        if node in out and sid:
            out[node][sid] = {"running": bool(spec.get("running")), "healthy": bool(spec.get("healthy"))}
    return out, errors


DISK_FIELDS = ("dev_path", "size", "pretty_size", "model", "transport", "readonly", "cdrom", "serial", "wwid")


def disks_by_node(talos, nodes, insecure):
    items, errors, _res = talos.get("disks", nodes=nodes, insecure=insecure, check=False)
    out = {n: [] for n in nodes}
    for item in items:
        node = item.get("node")
        spec = item.get("spec") or {}
        if node in out:
            disk = {"id": (item.get("metadata") or {}).get("id")}
            disk.update({k: spec[k] for k in DISK_FIELDS if k in spec})
            out[node].append(disk)
    return out, errors


def gather(module, talos):
    p = module.params
    nodes = list(dict.fromkeys(p["nodes"]))
    probe = probe_maintenance(talos, nodes)
    info = {n: {"state": probe[n]["state"], "stage": probe[n]["stage"], "ready": False, "version": None,
                "services": {}, "disks": [], "error": probe[n]["error"]} for n in nodes}
    maint = [n for n in nodes if info[n]["state"] == MAINTENANCE]
    conf = [n for n in nodes if info[n]["state"] == CONFIGURED]
    if maint and "disks" in p["gather"]:
        disks, _errors = disks_by_node(talos, maint, insecure=True)
        for node, found in disks.items():
            info[node]["disks"] = found
    if maint and "version" in p["gather"]:
        versions, _errors, _res = talos.version(nodes=maint, insecure=True, check=False)
        for node, version in versions.items():
            if node in info:
                info[node]["version"] = version
    members = []
    if conf and p["talosconfig"]:
        members = gather_configured(talos, p, conf, info)
    elif conf:
        module.warn("configured nodes found but no talosconfig given: only their state is reported")
    return {
        "changed": False,
        "nodes": info,
        "maintenance_nodes": maint,
        "configured_nodes": conf,
        "unreachable_nodes": [n for n in nodes if info[n]["state"] == UNREACHABLE],
        "etcd_members": members,
    }


def gather_configured(talos, p, conf, info):
    members = []
    if "disks" in p["gather"]:
        disks, _errors = disks_by_node(talos, conf, insecure=False)
        for node, found in disks.items():
            info[node]["disks"] = found
    if "version" in p["gather"]:
        versions, _errors, _res = talos.version(nodes=conf, check=False)
        for node, version in versions.items():
            if node in info:
                info[node]["version"] = version
    if "status" in p["gather"]:
        for node, status in machine_status(talos, conf).items():
            info[node].update(stage=status["stage"], ready=status["ready"])
            if status["error"]:
                info[node]["error"] = status["error"]
    if "services" in p["gather"]:
        services, _errors = services_by_node(talos, conf)
        for node, svc in services.items():
            info[node]["services"] = svc
    if "etcd" in p["gather"]:
        cps = [n for n in (p["control_plane_nodes"] or conf) if n in conf]
        if cps:
            rows, _errors, _res = talos.etcd_members(nodes=cps, check=False)
            members = [r for r in rows if r.get("id")]
    return members


def main():
    spec = talosctl_argument_spec()
    spec.update(
        nodes={"type": "list", "elements": "str", "required": True},
        control_plane_nodes={"type": "list", "elements": "str", "default": []},
        gather={"type": "list", "elements": "str", "default": ["version", "status", "services", "etcd"],
                "choices": ["version", "status", "services", "etcd", "disks"]},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if not module.params["nodes"]:
        module.fail_json(msg="nodes must list at least one node address")
    talos = Talosctl.from_module(module)
    try:
        result = gather(module, talos)
    except TalosctlError as exc:
        module.fail_json(**exc.as_fail_kwargs())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
