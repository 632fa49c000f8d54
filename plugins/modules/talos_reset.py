#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_reset
short_description: Remove one node from a Talos cluster (talosctl reset), keeping etcd quorum
version_added: 0.3.0
description:
  - Reads the node first - does it answer with its machine configuration, in maintenance mode or
    not at all; is it a control plane (C(talosctl get machinetype), else O(control_planes) or the
    etcd member list); is it an etcd member (the member lists of the other control planes).
  - For a control plane that is an etcd member it refuses, before changing anything, when the node
    is the last member, when fewer than a majority of the members that remain after it leaves are
    healthy (the message names the member that is down, to bring back first), when the other control
    planes list different members, when an etcd alarm is set, or when a member is not in
    O(control_planes).
  - Runs C(talosctl reset --graceful --reboot --wipe-mode --wait=false) against the node (graceful -
    Talos cordons and drains the node and leaves etcd, then wipes), then waits until the other
    control planes no longer list its member and the node no longer answers with its configuration
    (powered off, or back in maintenance mode with O(reboot)).
  - A node that does not answer with a configuration (unreachable, or in maintenance mode) and is
    not an etcd member is already reset - nothing is done, so a rerun is a no-op. One that is still a
    member (a dead control plane) is removed from etcd through another control plane with
    C(talosctl etcd remove-member) when O(remove_member) is set.
  - The Kubernetes Node object stays (NotReady, as after C(talosctl reset)); deleting it
    (C(kubectl delete node)) and draining workloads with care beforehand (PodDisruptionBudgets, Ceph
    OSDs) is the caller's job.
  - Calls to the node go to the node's own address and etcd reads to the other control planes
    (O(endpoints) without the node, else O(control_planes) without it), so a node that is also the
    talosconfig endpoint can be reset.
options:
  node:
    description: Address of the node to reset.
    type: str
    required: true
  control_planes:
    description:
      - Addresses of every control plane of the cluster (the node included when it is one); etcd is read
        from those other than O(node).
      - Required when the node is a control plane.
    type: list
    elements: str
    default: []
  graceful:
    description:
      - Cordon and drain the node and leave etcd before the wipe (talosctl C(--graceful)).
      - With C(false) a control plane stays in the etcd member list; O(remove_member) then removes it
        after the reset.
    type: bool
    default: true
  reboot:
    description: Reboot into maintenance mode after the wipe instead of powering off (talosctl C(--reboot)).
    type: bool
    default: false
  wipe_mode:
    description: What to wipe (talosctl C(--wipe-mode)).
    type: str
    choices: [all, system-disk, user-disks]
    default: all
  user_disks_to_wipe:
    description: User disks to wipe as well (talosctl C(--user-disks-to-wipe)), e.g. C(/dev/sdb).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for the node to leave etcd and stop answering after the reset.
    type: int
    default: 300
  remove_member:
    description:
      - For a control plane that no longer answers (dead, or already wiped) but is still an etcd member,
        run C(talosctl etcd remove-member) through another, healthy control plane.
      - Also used after a reset with O(graceful=false), which does not leave etcd.
    type: bool
    default: false
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Reads the node and etcd, runs the same refusals and returns the plan; resets and removes nothing.
  diff_mode:
    support: full
    details: The node's state and the etcd member list before and after (predicted in check mode).
  idempotent:
    description: A node that is already reset (no configuration, not an etcd member) is not touched.
    support: full
notes:
  - The reset wipes the node. Snapshot etcd first (M(homecluster.platform.talos_etcd_snapshot)).
seealso:
  - module: homecluster.platform.talos_etcd_snapshot
  - module: homecluster.platform.talos_health
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Reset a worker; it powers off
  homecluster.platform.talos_reset:
    node: 192.168.1.21
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"

- name: Reset a control plane, keeping etcd quorum, and reboot it into maintenance mode
  homecluster.platform.talos_reset:
    node: 192.168.1.13
    control_planes: [192.168.1.11, 192.168.1.12, 192.168.1.13]
    reboot: true
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"

- name: Take a dead control plane out of etcd
  homecluster.platform.talos_reset:
    node: 192.168.1.12
    control_planes: [192.168.1.11, 192.168.1.12, 192.168.1.13]
    remove_member: true
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"

- name: Delete the Kubernetes Node object afterwards
  kubernetes.core.k8s:
    kind: Node
    name: cp3
    state: absent
"""

RETURN = r"""
node:
  description: The node's address.
  returned: always
  type: str
  sample: 192.168.1.13
hostname:
  description: The node's etcd member name (or Kubernetes node name); null when unknown.
  returned: always
  type: str
  sample: cp3
control_plane:
  description: Whether the node is a control plane.
  returned: always
  type: bool
node_state:
  description:
    - How the node answered before - C(running) (with its configuration), C(resetting), C(maintenance) or
      C(unreachable).
  returned: always
  type: str
  sample: running
etcd_member:
  description: Whether the node was an etcd member before.
  returned: always
  type: bool
etcd_members_before:
  description: etcd member names as the other control planes listed them before (empty without control planes).
  returned: always
  type: list
  elements: str
  sample: [cp1, cp2, cp3]
etcd_members_after:
  description: etcd member names after (predicted in check mode).
  returned: always
  type: list
  elements: str
  sample: [cp1, cp2]
plan:
  description: What was done (or would be done), in order; empty when the node is already reset.
  returned: always
  type: list
  elements: str
  sample: ["talosctl reset --graceful=true --reboot=false --wait=false --wipe-mode=all", "wait for cp3 to leave etcd",
           "wait for 192.168.1.13 to stop answering"]
etcd_errors:
  description: Control planes whose etcd did not answer, with the error.
  returned: always
  type: dict
"""

import copy
import time
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._talos_day2 import etcd_view
from ansible_collections.homecluster.platform.plugins.module_utils._talos_state import probe_maintenance
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    node_list,
    parse_table,
    talosctl_argument_spec,
)

POLL_SECONDS = 1.0
CONTROL_PLANE_TYPES = ("controlplane", "init")


def failure(exc, msg, **extra):
    """fail_json arguments of a failed talosctl call, with our own message."""
    kwargs = exc.as_fail_kwargs()
    kwargs.update(extra)
    kwargs["msg"] = msg
    return kwargs


def with_endpoints(talos, endpoints):
    """The same runner, talking to other endpoints."""
    other = copy.copy(talos)
    other.endpoints = node_list(endpoints)
    return other


def peer_hosts(row):
    """Addresses in an etcd member's peer URLs."""
    hosts = set()
    for raw in (row.get("peer_urls") or "").split(","):
        url = raw.strip()
        if url:
            host = urlsplit(url if "://" in url else f"https://{url}").hostname
            if host:
                hosts.add(host)
    return hosts


def read_node(talos, node):
    """{"state": running|resetting|maintenance|unreachable, "machine_type", "hostname", "error"}."""
    probe = probe_maintenance(talos, [node])[node]
    out = {"state": "unreachable", "machine_type": None, "hostname": None, "error": probe.get("error")}
    if probe["state"] == "maintenance":
        out["state"] = "maintenance"
        return out
    if probe["state"] != "configured":
        if probe["state"] == "unknown":
            out["error"] = probe.get("error") or "no answer"
            out["state"] = "unknown"
        return out
    out["state"] = "resetting" if probe.get("stage") == "resetting" else "running"
    items = talos.get("machinetype", nodes=[node], namespace="config", check=False)[0]
    for item in items:
        spec = item.get("spec")
        out["machine_type"] = spec if isinstance(spec, str) else (spec or {}).get("machineType")
    items = talos.get("nodename", nodes=[node], namespace="k8s", check=False)[0]
    for item in items:
        out["hostname"] = (item.get("spec") or {}).get("nodename") or out["hostname"]
    return out


def member_rows(talos, peers, view):
    """The member rows (id, hostname, peer URLs) from the first peer whose etcd answered."""
    for cp in peers:
        if view["members"].get(cp) is not None and cp not in view["errors"]:
            res = talos.run(["etcd", "members"], nodes=[cp], check=False)
            rows = [r for r in parse_table(res.stdout) if r.get("node", cp) in (cp, "")]
            if res.rc == 0 and rows:
                return cp, rows
    return None, []


def find_member(rows, node, hostname):
    for row in rows:
        if node in peer_hosts(row) or (hostname and row.get("hostname") == hostname):
            return row
    return None


def quorum_refusal(node, member, rows, view, control_planes):
    """Why the node's etcd member may not leave now (None when it may)."""
    name = member.get("hostname") or node
    lists = {cp: m for cp, m in view["members"].items() if m is not None}
    if len({tuple(m) for m in lists.values()}) > 1:
        per_cp = "; ".join(f"{cp}: {','.join(m)}" for cp, m in sorted(lists.items()))
        return (f"the control planes list different etcd members ({per_cp}); let etcd settle (talosctl etcd "
                "members on each) before removing one")
    if view["alarms"]:
        alarms = ", ".join(f"{r.get('alarm')} on member {r.get('member')}" for r in view["alarms"])
        return f"etcd has an alarm set ({alarms}); clear its cause and disarm it (talosctl etcd alarm disarm) first"
    remaining = [r for r in rows if r.get("id") != member.get("id")]
    if not remaining:
        return (f"{name} is the last etcd member: resetting it destroys the cluster's etcd; snapshot etcd "
                "and rebuild the cluster instead")
    by_address = {}
    unknown = []
    for row in remaining:
        cps = [cp for cp in control_planes if cp in peer_hosts(row)]
        if cps:
            by_address[cps[0]] = row
        else:
            unknown.append(f"{row.get('hostname')} ({row.get('peer_urls')})")
    if unknown:
        return (f"etcd member(s) {', '.join(unknown)} are not in control_planes; list every control plane "
                "so the module can tell whether etcd keeps its quorum")
    down = []
    for cp, row in sorted(by_address.items()):
        err = view["errors"].get(cp)
        if err or cp not in view["status"]:
            down.append(f"{row.get('hostname')} ({cp}: {err or 'no etcd status'})")
    need = len(remaining) // 2 + 1
    healthy = len(remaining) - len(down)
    if healthy < need:
        return (f"after {name} leaves, only {healthy} of the {len(remaining)} remaining etcd members would be "
                f"healthy (a majority is {need}): {'; '.join(down)} is down; bring it back (power it on, "
                "wait until talosctl etcd status answers on it) and run again")
    return None


def still_answers(talos, node):
    """Whether the node still answers over mutual TLS (with its configuration)."""
    res = talos.run(["version"], nodes=[node], check=False)
    return res.rc == 0


def still_member(talos, peers, member):
    """Whether any answering peer still lists the member (None when no peer answers)."""
    answered = False
    for cp in peers:
        res = talos.run(["etcd", "members"], nodes=[cp], check=False)
        if res.rc != 0:
            continue
        answered = True
        if any(r.get("id") == member.get("id") for r in parse_table(res.stdout)):
            return True
    return False if answered else None


def wait_gone(node_talos, peer_talos, node, *, peers, member, timeout):
    """Wait until the node left etcd and stopped answering; returns what is still pending."""
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        if member is not None:
            listed = still_member(peer_talos, peers, member)
            if listed is None:
                pending.append("no other control plane answers etcd members")
            elif listed:
                pending.append(f"{member.get('hostname')} is still an etcd member")
        if still_answers(node_talos, node):
            pending.append(f"{node} still answers with its configuration")
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(POLL_SECONDS)


def reset_args(p):
    args = ["reset", f"--graceful={'true' if p['graceful'] else 'false'}",
            f"--reboot={'true' if p['reboot'] else 'false'}", "--wait=false", f"--wipe-mode={p['wipe_mode']}"]
    if p["user_disks_to_wipe"]:
        args += ["--user-disks-to-wipe", ",".join(p["user_disks_to_wipe"])]
    return args


def names(rows):
    return sorted(r.get("hostname", "") for r in rows)


def main():  # noqa: PLR0912,PLR0915 - read, refuse, plan, act, wait: the steps of one reset, in order
    spec = talosctl_argument_spec()
    spec.update(
        node={"type": "str", "required": True},
        control_planes={"type": "list", "elements": "str", "default": []},
        graceful={"type": "bool", "default": True},
        reboot={"type": "bool", "default": False},
        wipe_mode={"type": "str", "default": "all", "choices": ["all", "system-disk", "user-disks"]},
        user_disks_to_wipe={"type": "list", "elements": "str", "default": []},
        timeout={"type": "int", "default": 300},
        remove_member={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    node = p["node"]
    cps = list(dict.fromkeys(p["control_planes"]))
    peers = [cp for cp in cps if cp != node]
    if not p["talosconfig"]:
        module.fail_json(msg="talosconfig is required: a reset goes over mutual TLS")
    if p["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second")
    talos = Talosctl.from_module(module)
    node_talos = with_endpoints(talos, [node])
    peer_talos = with_endpoints(talos, [e for e in p["endpoints"] if e != node] or peers)

    # -- read ----------------------------------------------------------------------------
    try:
        state = read_node(node_talos, node)
        view = etcd_view(peer_talos, peers) if peers else {"members": {}, "status": {}, "errors": {}, "alarms": []}
        source, rows = member_rows(peer_talos, peers, view) if peers else (None, [])
    except TalosctlError as exc:
        module.fail_json(**failure(exc, f"cannot read the state of {node}: {exc.msg}"))
    if state["state"] == "unknown":
        module.fail_json(msg=f"cannot tell whether {node} answers: {state['error']}")
    member = find_member(rows, node, state["hostname"])
    hostname = (member or {}).get("hostname") or state["hostname"]
    if state["machine_type"]:
        is_cp = state["machine_type"] in CONTROL_PLANE_TYPES
    else:
        is_cp = node in cps or member is not None
    if is_cp and not peers:
        if not cps:
            module.fail_json(msg=f"{node} is a control plane: set control_planes to the addresses of every control "
                                 "plane, so etcd can be read from the others before it is reset")
        module.fail_json(msg=f"refusing to reset {node}: it is the only control plane in control_planes; resetting "
                             "the last control plane destroys the cluster")
    before = names(rows)
    result = {"changed": False, "node": node, "hostname": hostname, "control_plane": is_cp,
              "node_state": state["state"], "etcd_member": member is not None, "etcd_members_before": before,
              "etcd_members_after": before, "plan": [], "etcd_errors": view["errors"]}
    if peers and source is None and is_cp and state["state"] == "running":
        # no other control plane answers: is the node the last member? (its own etcd says)
        own = node_talos.run(["etcd", "members"], nodes=[node], check=False)
        own_rows = parse_table(own.stdout) if own.rc == 0 else []
        if own_rows and all(node in peer_hosts(r) for r in own_rows):
            module.fail_json(msg=f"refusing to reset control plane {node}: {own_rows[0].get('hostname')} is the last "
                                 "etcd member: resetting it destroys the cluster's etcd; snapshot etcd and rebuild "
                                 "the cluster instead", **result)
    if peers and source is None and (is_cp or member is not None):
        module.fail_json(msg=f"refusing to reset control plane {node}: no other control plane answers etcd "
                             f"members ({'; '.join(f'{cp}: {e}' for cp, e in sorted(view['errors'].items()))}); "
                             "etcd must be read before a member leaves", **result)

    # -- refuse, plan --------------------------------------------------------------------
    running = state["state"] in ("running", "resetting")
    if member is not None:
        refusal = quorum_refusal(node, member, rows, view, cps)
        if refusal:
            module.fail_json(msg=f"refusing to reset control plane {node} ({hostname}): {refusal}", **result)
    plan = []
    removal = None
    if running:
        if member is not None and not p["graceful"] and not p["remove_member"]:
            module.fail_json(msg=f"refusing to reset control plane {node} ({hostname}) with graceful=false: it would "
                                 "stay in the etcd member list; set remove_member=true to remove it through another "
                                 "control plane after the reset, or use graceful=true", **result)
        if state["state"] == "running":
            plan.append("talosctl " + " ".join(reset_args(p)))
        else:
            plan.append(f"{node} is already resetting: wait for it")
        if member is not None and p["graceful"]:
            plan.append(f"wait for {hostname} to leave etcd")
        plan.append(f"wait for {node} to {'come back in maintenance mode' if p['reboot'] else 'stop answering'}")
        if member is not None and not p["graceful"]:
            removal = member
            plan.append(f"talosctl etcd remove-member {member.get('id')} ({hostname}) through {source}")
    elif member is not None:
        if not p["remove_member"]:
            module.fail_json(msg=f"{node} ({hostname}) does not answer with its configuration ({state['state']}) "
                                 "but is still an etcd member; set remove_member=true to remove it through another "
                                 f"control plane ({source}), or bring the node back and reset it", **result)
        removal = member
        plan.append(f"talosctl etcd remove-member {member.get('id')} ({hostname}) through {source}")
    if not plan:
        module.exit_json(**result)

    after_rows = [r for r in rows if member is None or r.get("id") != member.get("id")]
    predicted_state = "maintenance" if running and p["reboot"] else ("unreachable" if running else state["state"])
    result.update(changed=True, plan=plan, etcd_members_after=names(after_rows))
    if module._diff:
        result["diff"] = {"before": {"node_state": state["state"], "etcd_members": before},
                          "after": {"node_state": predicted_state, "etcd_members": names(after_rows)}}
    if module.check_mode:
        module.exit_json(**result)

    # -- act -----------------------------------------------------------------------------
    try:
        if state["state"] == "running":
            node_talos.run(reset_args(p), nodes=[node], msg=f"talosctl reset of {node} failed")
        if running:
            answering = [cp for cp in peers if cp not in view["errors"]]
            pending = wait_gone(node_talos, peer_talos, node, peers=answering, member=None if removal else member,
                                timeout=p["timeout"])
            if pending:
                module.fail_json(msg=f"{node} was reset but after {p['timeout']}s: {'; '.join(pending)}", **result)
        if removal is not None and still_member(peer_talos, [source], removal) is not False:
            peer_talos.run(["etcd", "remove-member", removal.get("id")], nodes=[source],
                           msg=f"etcd remove-member {hostname} through {source} failed")
    except TalosctlError as exc:
        module.fail_json(**failure(exc, exc.msg, **result))

    view = etcd_view(peer_talos, peers) if peers else view
    after_source, after_rows = member_rows(peer_talos, peers, view) if peers else (None, [])
    result["etcd_members_after"] = names(after_rows) if after_source else result["etcd_members_after"]
    result["etcd_errors"] = view["errors"]
    if member is not None and find_member(after_rows, node, hostname) is not None:
        module.fail_json(msg=f"{hostname} is still an etcd member after the reset", **result)
    if module._diff:
        result["diff"]["after"]["etcd_members"] = result["etcd_members_after"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
