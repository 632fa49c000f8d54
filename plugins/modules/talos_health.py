#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_health
short_description: Wait until every Talos node is up, with one call per round for all nodes
version_added: 0.1.0
description:
  - Polls the machine status of every node with one multi-node call
    (C(talosctl get machinestatus -n a,b,c)) per round, until each node reports stage C(running)
    and ready, or O(timeout) passes.
  - The wait is shared by all nodes, so it does not grow with a serial timeout per node.
  - On timeout the task fails naming each node that is not ready and why (unmet conditions,
    or the error the node returned).
options:
  nodes:
    description: Every node to wait for.
    type: list
    elements: str
    required: true
  timeout:
    description: Total seconds to wait for all nodes.
    type: int
    default: 600
  interval:
    description: Seconds between rounds.
    type: int
    default: 2
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Read-only; check mode waits the same way.
  diff_mode:
    support: none
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Wait for every node
  homecluster.platform.talos_health:
    nodes: "{{ groups['talos'] | map('extract', hostvars, 'talos_address') | list }}"
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11]
    timeout: 900
"""

RETURN = r"""
nodes:
  description: Last status per node.
  returned: always
  type: dict
  sample: {192.168.1.11: {stage: running, ready: true, unmet: [], error: null}}
rounds:
  description: Number of polling rounds (one talosctl call each).
  returned: always
  type: int
  sample: 3
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 4.2
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._talos_state import machine_status
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    talosctl_argument_spec,
)

HINT = ("Check that each node named is powered on and reachable on the Talos API port (its console or "
        "`talosctl -n <node> dmesg` shows why it is not ready), then run again: nothing is re-applied while "
        "waiting, so the rerun only waits")


def not_ready(status):
    return {n: s for n, s in status.items() if not (s["stage"] == "running" and s["ready"])}


def describe(pending):
    parts = []
    for node, s in sorted(pending.items()):
        why = s["error"] or "; ".join(s["unmet"]) or f"stage {s['stage']}, ready {s['ready']}"
        parts.append(f"{node}: {why}")
    return " | ".join(parts)


def main():
    spec = talosctl_argument_spec()
    spec.update(
        nodes={"type": "list", "elements": "str", "required": True},
        timeout={"type": "int", "default": 600},
        interval={"type": "int", "default": 2},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    nodes = list(dict.fromkeys(p["nodes"]))
    if not nodes:
        module.fail_json(msg="nodes must list at least one node address")
    if not p["talosconfig"]:
        module.fail_json(msg="talosconfig is required: health is read over mutual TLS")
    talos = Talosctl.from_module(module)
    started = time.monotonic()
    deadline = started + p["timeout"]
    rounds = 0
    status = {}
    while True:
        rounds += 1
        remaining = max(5, int(deadline - time.monotonic()))
        try:
            status = machine_status(talos, nodes, timeout=min(p["command_timeout"], remaining))
        except TalosctlError as exc:
            status = {n: {"stage": None, "ready": False, "unmet": [], "error": exc.msg} for n in nodes}
        pending = not_ready(status)
        if not pending:
            break
        if time.monotonic() + p["interval"] >= deadline:
            module.fail_json(msg=f"{len(pending)} of {len(nodes)} node(s) not ready after {p['timeout']}s: "
                                 f"{describe(pending)}. {HINT}", nodes=status, rounds=rounds,
                             elapsed=round(time.monotonic() - started, 2))
        time.sleep(p["interval"])
    module.exit_json(changed=False, nodes=status, rounds=rounds, elapsed=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
