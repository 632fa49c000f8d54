#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_upgrade_preflight
short_description: Check a Talos cluster before a rolling upgrade and report the plan
version_added: 0.2.0
description:
  - Read-only. Reads what every node runs (version, Image Factory schematic, extensions) and
    etcd from every control plane, runs the cluster health check, and returns the upgrade plan -
    which nodes already run their target and which would be upgraded, control planes first.
  - Fails, listing every problem, when a node does not answer, the control planes' etcd member
    lists differ or do not hold every control plane, an etcd alarm is raised, the health check
    fails, a target image would drop a node's extensions (its schematic differs from the node's),
    or a target skips a minor release or goes down (Talos supports upgrades through each minor).
options:
  images:
    description: Target installer image per node address.
    type: dict
    required: true
  control_plane_nodes:
    description: Addresses of the control planes (upgraded one at a time, in this order).
    type: list
    elements: str
    required: true
  worker_nodes:
    description: Addresses of the workers.
    type: list
    elements: str
    default: []
  allow_schematic_change:
    description: Accept target images whose schematic differs from the schematic of a node running extensions.
    type: bool
    default: false
  health:
    description: Run the server-side C(talosctl health) over every node.
    type: bool
    default: true
  health_timeout:
    description: Seconds for the health check.
    type: int
    default: 180
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Read-only; the same checks and plan in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    description: Never changes anything.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Check the cluster and compute the plan
  homecluster.platform.talos_upgrade_preflight:
    images:
      192.168.1.11: "factory.talos.dev/metal-installer/{{ talos_schematic }}:v1.14.2"
    control_plane_nodes: [192.168.1.11]
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11]
  register: plan
"""

RETURN = r"""
nodes:
  description: Per node - what it runs, the target, and whether it would be upgraded.
  returned: always
  type: dict
  sample: {192.168.1.11: {version: v1.14.1, schematic: "3765...", extensions: [], target: v1.14.2, upgrade: true}}
pending:
  description: Addresses that need the upgrade, control planes first in the given order, then workers.
  returned: always
  type: list
  elements: str
etcd:
  description: Member lists, status and alarms as each control plane reports them.
  returned: always
  type: dict
"""

import re

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


def minor(version):
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def path_problem(current, target):
    cur, tgt = minor(current), minor(target)
    if not cur or not tgt:
        return None
    if tgt < cur:
        return f"{target} is older than the running {current} (no downgrades)"
    if tgt[0] != cur[0] or tgt[1] > cur[1] + 1:
        return (f"{current} -> {target} skips a minor release: upgrade through the latest patch of "
                f"v{cur[0]}.{cur[1] + 1} first")
    return None


def main():  # noqa: PLR0912,PLR0915 - one flat list of checks reads best
    spec = talosctl_argument_spec()
    spec.update(
        images={"type": "dict", "required": True},
        control_plane_nodes={"type": "list", "elements": "str", "required": True},
        worker_nodes={"type": "list", "elements": "str", "default": []},
        allow_schematic_change={"type": "bool", "default": False},
        health={"type": "bool", "default": True},
        health_timeout={"type": "int", "default": 180},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    cps = list(dict.fromkeys(p["control_plane_nodes"]))
    workers = [w for w in dict.fromkeys(p["worker_nodes"]) if w not in cps]
    nodes = cps + workers
    if not cps:
        module.fail_json(msg="control_plane_nodes must list at least one control plane")
    missing = [n for n in nodes if not p["images"].get(n)]
    if missing:
        module.fail_json(msg=f"images has no target installer image for {', '.join(missing)}")
    if not p["talosconfig"]:
        module.fail_json(msg="talosconfig is required: the preflight reads the nodes over mutual TLS")
    talos = Talosctl.from_module(module)
    problems = []
    try:
        release = node_release(talos, nodes)
        view = etcd_view(talos, cps)
    except TalosctlError as exc:
        kwargs = exc.as_fail_kwargs()
        kwargs["msg"] = f"preflight read failed: {exc.msg}"
        module.fail_json(**kwargs)

    plan, pending = {}, []
    for node in nodes:
        r = release[node]
        image = p["images"][node]
        schematic, tag = installer_parts(image)
        entry = dict(r, image=image, target=tag, target_schematic=schematic, upgrade=False,
                     role="controlplane" if node in cps else "worker")
        plan[node] = entry
        if r["error"]:
            problems.append(f"{node}: {r['error']}")
            continue
        if not tag:
            problems.append(f"{node}: the target image {image} has no version tag")
            continue
        done = r["version"] == tag and (schematic is None or r["schematic"] == schematic)
        if done:
            continue
        entry["upgrade"] = True
        pending.append(node)
        why = path_problem(r["version"], tag)
        if why:
            problems.append(f"{node}: {why}")
        if (not p["allow_schematic_change"] and r["extensions"] and schematic != r["schematic"]):
            problems.append(f"{node}: target image {image} has schematic {schematic or 'none'}, the node runs "
                            f"{r['schematic']} with extensions {', '.join(r['extensions'])}, which it would lose "
                            "(use the node's schematic in its installer image, or allow_schematic_change)")
    problems += etcd_problems(view, expected_members=len(cps))

    health = None
    if p["health"] and not any(release[n]["error"] for n in nodes):
        args = ["health", f"--wait-timeout={p['health_timeout']}s",
                "--control-plane-nodes", ",".join(cps)]
        if workers:
            args += ["--worker-nodes", ",".join(workers)]
        res = talos.run(args, nodes=[cps[0]], check=False, timeout=p["health_timeout"] + 30)
        health = {"rc": res.rc, "output": (res.stdout + res.stderr).strip().splitlines()[-20:]}
        if res.rc != 0:
            last = (res.stderr or res.stdout).strip().splitlines()
            problems.append(f"talosctl health failed: {last[-1] if last else res.rc}")

    result = {"changed": False, "nodes": plan, "pending": pending, "etcd": view, "health": health}
    if problems:
        module.fail_json(msg=f"upgrade preflight found {len(problems)} problem(s): " + " | ".join(problems),
                         problems=problems, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
