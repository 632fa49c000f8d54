#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_upgrade
short_description: Upgrade one Talos node to an installer image, keeping etcd quorum on control planes
version_added: 0.2.0
description:
  - Reads what the node runs (C(talosctl version), and the Image Factory schematic and extensions
    from C(talosctl get extensions)); a node that already runs the target version and schematic is
    left alone, so a rerun or a resumed run never upgrades a node twice.
  - Refuses an image whose schematic differs from the node's when the node runs system extensions
    (for example Talos 1.14's default installer, the empty schematic, which drops them), unless
    O(allow_schematic_change).
  - For a control plane (O(node) in O(control_plane_nodes)), Talos 1.13+ does not check etcd
    before an upgrade, so this module does - every control plane answers, the member lists are
    identical, no alarm, and quorum holds without this member. If the node leads etcd it forfeits
    leadership first. After the upgrade it waits until every control plane answers again with the
    same member list holding this node.
  - Runs C(talosctl upgrade --image IMAGE -n NODE --wait) (drain, upgrade, reboot, uncordon), then
    checks the node runs the target.
options:
  node:
    description: Address of the node to upgrade.
    type: str
    required: true
  image:
    description: Target installer image, e.g. C(factory.talos.dev/metal-installer/<schematic>:v1.14.2).
    type: str
    required: true
  control_plane_nodes:
    description: Addresses of every control plane (for the etcd gates).
    type: list
    elements: str
    default: []
  allow_schematic_change:
    description: Accept an image whose schematic differs from the schematic of a node that runs extensions.
    type: bool
    default: false
  drain:
    description: Drain the Kubernetes node before the reboot (talosctl C(--drain)).
    type: bool
    default: true
  drain_timeout:
    description: talosctl C(--drain-timeout).
    type: str
    default: 5m
  upgrade_timeout:
    description: Seconds for the upgrade (install, reboot, boot) to finish.
    type: int
    default: 900
  etcd_timeout:
    description: Seconds to wait for etcd to be healthy with the member back after the upgrade.
    type: int
    default: 300
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Reads the node and etcd, runs the same refusals, and reports what would be done; changes nothing.
  diff_mode:
    support: full
    details: The node's version and schematic before and after.
  idempotent:
    description: A node running the target version and schematic is not touched.
    support: full
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Upgrade one control plane
  homecluster.platform.talos_upgrade:
    node: 192.168.1.11
    image: factory.talos.dev/metal-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.14.2
    control_plane_nodes: [192.168.1.11, 192.168.1.12, 192.168.1.13]
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11]
"""

RETURN = r"""
before:
  description: What the node ran before (version, schematic, extensions).
  returned: always
  type: dict
after:
  description: What the node runs after (predicted in check mode).
  returned: always
  type: dict
actions:
  description: What was done (or would be done), in order.
  returned: always
  type: list
  elements: str
  sample: [forfeit etcd leadership, talosctl upgrade, wait for etcd]
leader:
  description: Whether the node led etcd before the upgrade.
  returned: when the node is a control plane
  type: bool
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._talos_day2 import (
    etcd_problems,
    etcd_view,
    installer_parts,
    node_release,
)
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    talosctl_argument_spec,
)


def failure(exc, msg, **extra):
    """fail_json arguments of a failed talosctl call, with our own message."""
    kwargs = exc.as_fail_kwargs()
    kwargs.update(extra)
    kwargs["msg"] = msg
    return kwargs


def schematic_refusal(before, target_schematic, allow):
    """Why the image may not go onto this node (None when it may)."""
    if allow or target_schematic == before.get("schematic"):
        return None
    if not before.get("extensions"):
        return None
    if target_schematic is None:
        return (f"the image is not an Image Factory image and carries no schematic, the node runs schematic "
                f"{before.get('schematic')} with extensions {', '.join(before['extensions'])}")
    return (f"the image's schematic {target_schematic} is not the node's {before.get('schematic')} "
            f"(extensions {', '.join(before['extensions'])} would be lost)")


def quorum_problems(view, node_hostname, control_planes):
    problems = etcd_problems(view, expected_members=len(control_planes))
    members = next((m for m in view["members"].values() if m is not None), [])
    if members and node_hostname and node_hostname not in members:
        problems.append(f"{node_hostname} is not an etcd member ({', '.join(members)})")
    return problems


def hostname_of(talos, node):
    items = talos.get("hostname", nodes=[node], namespace="network", check=False)[0]
    for item in items:
        name = (item.get("spec") or {}).get("hostname")
        if name:
            return name
    items = talos.get("nodename", nodes=[node], namespace="k8s", check=False)[0]
    for item in items:
        name = (item.get("spec") or {}).get("nodename")
        if name:
            return name
    return None


def wait_etcd(talos, control_planes, hostname, timeout):
    deadline = time.monotonic() + timeout
    problems = []
    while True:
        view = etcd_view(talos, control_planes, alarms=False)
        problems = quorum_problems(view, hostname, control_planes)
        if not problems:
            return view, []
        if time.monotonic() >= deadline:
            return view, problems
        time.sleep(2)


def main():  # noqa: PLR0912,PLR0915 - the steps of one node upgrade, in order
    spec = talosctl_argument_spec()
    spec.update(
        node={"type": "str", "required": True},
        image={"type": "str", "required": True},
        control_plane_nodes={"type": "list", "elements": "str", "default": []},
        allow_schematic_change={"type": "bool", "default": False},
        drain={"type": "bool", "default": True},
        drain_timeout={"type": "str", "default": "5m"},
        upgrade_timeout={"type": "int", "default": 900},
        etcd_timeout={"type": "int", "default": 300},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    node = p["node"]
    cps = list(dict.fromkeys(p["control_plane_nodes"]))
    is_cp = node in cps
    target_schematic, target_version = installer_parts(p["image"])
    if not target_version:
        module.fail_json(msg=f"image {p['image']!r} has no tag: name the Talos version (…:v1.14.2) so the module "
                             "can tell whether the node already runs it")
    if not p["talosconfig"]:
        module.fail_json(msg="talosconfig is required: upgrades go over mutual TLS")
    talos = Talosctl.from_module(module)

    try:
        before = node_release(talos, [node])[node]
    except TalosctlError as exc:
        module.fail_json(**failure(exc, f"cannot read what {node} runs: {exc.msg}"))
    if before["error"]:
        module.fail_json(msg=f"cannot read what {node} runs: {before['error']}", before=before)
    after = {"version": target_version,
             "schematic": target_schematic,
             "extensions": before["extensions"] if target_schematic == before["schematic"] else None}
    result = {"changed": False, "before": before, "after": before, "actions": []}
    done = before["version"] == target_version and (target_schematic is None or before["schematic"] == target_schematic)
    if done:
        module.exit_json(**result)

    refusal = schematic_refusal(before, target_schematic, p["allow_schematic_change"])
    if refusal:
        module.fail_json(msg=f"refusing to upgrade {node} to {p['image']}: {refusal}; use the node's schematic in "
                             "the installer image (talosctl get extensions shows it) or set allow_schematic_change",
                         before=before)

    hostname = None
    if is_cp:
        hostname = hostname_of(talos, node)
        view = etcd_view(talos, cps)
        problems = quorum_problems(view, hostname, cps)
        if problems:
            module.fail_json(msg=f"refusing to upgrade control plane {node}: etcd is not healthy and consistent: "
                                 + "; ".join(problems), etcd=view, before=before)
        status = view["status"].get(node) or {}
        leader = bool(status.get("member")) and status.get("member") == status.get("leader")
        result["leader"] = leader
        if leader:
            result["actions"].append("forfeit etcd leadership")
    result["actions"].append(f"talosctl upgrade --image {p['image']}")
    if is_cp:
        result["actions"].append("wait for etcd healthy with the member back")
    result["changed"] = True
    result["after"] = after
    if module._diff:
        result["diff"] = {"before": {"version": before["version"], "schematic": before["schematic"]},
                          "after": {"version": target_version, "schematic": target_schematic}}
    if module.check_mode:
        module.exit_json(**result)

    try:
        if is_cp and result.get("leader"):
            talos.run(["etcd", "forfeit-leadership"], nodes=[node], msg=f"etcd forfeit-leadership on {node} failed")
        args = ["upgrade", "--image", p["image"], "--wait", f"--timeout={p['upgrade_timeout']}s",
                f"--drain={'true' if p['drain'] else 'false'}", f"--drain-timeout={p['drain_timeout']}"]
        talos.run(args, nodes=[node], timeout=p["upgrade_timeout"] + 60, msg=f"talosctl upgrade of {node} failed")
    except TalosctlError as exc:
        module.fail_json(**failure(exc, exc.msg, actions=result["actions"], before=before))

    if is_cp:
        view, problems = wait_etcd(talos, cps, hostname, p["etcd_timeout"])
        if problems:
            module.fail_json(msg=f"{node} was upgraded but etcd is not healthy with it after {p['etcd_timeout']}s: "
                                 + "; ".join(problems), etcd=view, actions=result["actions"])
        result["etcd"] = view

    now = node_release(talos, [node])[node]
    result["after"] = now
    if now["version"] != target_version or (target_schematic and now["schematic"] != target_schematic):
        module.fail_json(msg=f"{node} runs {now['version']} (schematic {now['schematic']}) after the upgrade, "
                             f"not {target_version} ({target_schematic}); if its drain failed it stays cordoned "
                             "with the image staged until the next reboot", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
