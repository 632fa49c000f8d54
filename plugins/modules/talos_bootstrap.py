#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_bootstrap
short_description: Bootstrap etcd on one Talos control plane, exactly once per cluster
version_added: 0.1.0
description:
  - Looks at etcd first (C(talosctl etcd members) on the control planes); when etcd has members
    the cluster is bootstrapped and nothing is done.
  - Otherwise calls C(talosctl bootstrap) on O(node). A refusal with C(AlreadyExists) (etcd already
    holds data, for example after an interrupted run) counts as done.
  - Transient errors (node still booting, connection dropped) are retried until O(wait_timeout);
    after an interruption, a rerun resumes safely.
options:
  node:
    description: The control plane that bootstraps etcd.
    type: str
    required: true
  control_plane_nodes:
    description: All control planes, asked for etcd members before bootstrapping. Defaults to O(node).
    type: list
    elements: str
    default: []
  wait_timeout:
    description: Seconds to keep retrying while the node is not ready to bootstrap.
    type: int
    default: 300
  retry_interval:
    description: Seconds between retries.
    type: int
    default: 5
  recover_from:
    description: Restore etcd from this snapshot file instead of starting empty (C(--recover-from)).
    type: path
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Check mode asks etcd and reports whether a bootstrap would happen.
  diff_mode:
    support: none
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Bootstrap etcd once
  homecluster.platform.talos_bootstrap:
    node: 192.168.1.11
    control_plane_nodes: [192.168.1.11, 192.168.1.12, 192.168.1.13]
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11]
"""

RETURN = r"""
already_bootstrapped:
  description: Whether etcd was already bootstrapped before this run.
  returned: always
  type: bool
  sample: true
etcd_members:
  description: etcd members found (before bootstrapping, or after when bootstrapped by this run and visible).
  returned: always
  type: list
  elements: dict
  sample: [{"node": "192.168.1.11", "id": "1a2b", "hostname": "cp1", "learner": "false"}]
attempts:
  description: Number of bootstrap calls made.
  returned: always
  type: int
  sample: 1
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    classify_error,
    node_list,
    talosctl_argument_spec,
)

RETRYABLE = ("unreachable", "unavailable", "timeout", "failed_precondition", "internal", "error")


def etcd_state(talos, nodes):
    """Return (members, errors). Members from any control plane mean etcd is bootstrapped."""
    try:
        rows, errors, res = talos.etcd_members(nodes=nodes, check=False)
    except TalosctlError as exc:
        return [], {"*": exc.msg}
    if res.rc != 0 and not errors:
        errors = {"*": res.stderr.strip()}
    return [r for r in rows if r.get("id")], errors


def wait_for_node(module, talos, node, cps, *, deadline, result):
    """Ask etcd until the bootstrap node answers; exit when etcd already has members."""
    p = module.params
    while True:
        members, errors = etcd_state(talos, cps)
        if members:
            result.update(already_bootstrapped=True, etcd_members=members)
            module.exit_json(**result)
        unreachable = {n: e for n, e in errors.items() if classify_error(e) in ("unreachable", "tls")}
        if node not in unreachable and "*" not in unreachable:
            return
        if module.check_mode:
            module.warn(f"{node} does not answer yet; a real run waits for it and bootstraps")
            return
        if time.monotonic() >= deadline:
            detail = unreachable.get(node) or unreachable.get("*")
            module.fail_json(msg=f"control plane {node} did not answer on the Talos API within {p['wait_timeout']}s: "
                                 f"{detail}. Power it on or pick another node, then rerun.",
                             error_kind="unreachable", **result)
        time.sleep(p["retry_interval"])


def bootstrap(module, talos, node, deadline, result):
    """Call bootstrap until it succeeds or etcd shows it happened; AlreadyExists counts as done."""
    p = module.params
    while True:
        result["attempts"] += 1
        try:
            talos.bootstrap(node=node, recover_from=p["recover_from"])
            return
        except TalosctlError as exc:
            if exc.kind == "already_exists":
                # An earlier call (this run or an interrupted one) got through.
                result["already_bootstrapped"] = result["attempts"] == 1
                result["changed"] = result["attempts"] > 1
                return
            if exc.kind not in RETRYABLE or time.monotonic() >= deadline:
                kwargs = exc.as_fail_kwargs()
                kwargs["msg"] = f"bootstrap on {node} failed after {result['attempts']} attempt(s): {exc.msg}"
                module.fail_json(**kwargs, attempts=result["attempts"])
        # a retry may find etcd up already (the previous call succeeded but its answer was lost)
        time.sleep(p["retry_interval"])
        members, _errors = etcd_state(talos, [node])
        if members:
            result["etcd_members"] = members
            return


def main():
    spec = talosctl_argument_spec()
    spec.update(
        node={"type": "str", "required": True},
        control_plane_nodes={"type": "list", "elements": "str", "default": []},
        wait_timeout={"type": "int", "default": 300},
        retry_interval={"type": "int", "default": 5},
        recover_from={"type": "path"},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if not p["talosconfig"]:
        module.fail_json(msg="talosconfig is required: bootstrap runs over mutual TLS on a configured node")
    node = p["node"]
    cps = node_list(p["control_plane_nodes"]) or [node]
    talos = Talosctl.from_module(module)
    result = {"changed": False, "node": node, "already_bootstrapped": False, "etcd_members": [], "attempts": 0}
    deadline = time.monotonic() + p["wait_timeout"]
    wait_for_node(module, talos, node, cps, deadline=deadline, result=result)
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)
    bootstrap(module, talos, node, deadline, result)
    if not result["etcd_members"]:
        members, _errors = etcd_state(talos, [node])
        result["etcd_members"] = members
    module.exit_json(**result)


if __name__ == "__main__":
    main()
