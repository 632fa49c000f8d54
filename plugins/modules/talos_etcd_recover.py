#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_etcd_recover
short_description: Restore a Talos cluster's etcd from a snapshot (wipe, recover, wait for etcd)
version_added: 0.2.0
description:
  - Talos' disaster recovery, destructive by design - every change made to the cluster after the
    snapshot is lost. Refused unless O(confirm) equals O(cluster_name).
  - Checks the snapshot before anything changes - a file written by C(talosctl etcd snapshot)
    ends with the SHA-256 of the database (its size is a multiple of 512 plus 32), the check
    C(etcdutl snapshot restore) makes; O(skip_hash_check) for a copy of a data directory.
  - Then, as Talos documents it - C(talosctl reset --graceful=false --reboot
    --system-labels-to-wipe=EPHEMERAL) on every control plane whose etcd is not already waiting
    (the machine config is kept, etcd's data is wiped), waits until every control plane's etcd is
    in C(Preparing), runs C(talosctl bootstrap --recover-from) on O(bootstrap_node) (uploads the
    snapshot, then bootstraps from it), and waits until etcd runs on every control plane with
    every member listed.
  - Records the restored snapshot (its SHA-256, the cluster, the time) in O(state_file), mode
    C(0600). A rerun with the same snapshot reports no change and touches nothing; O(force)
    restores it again.
options:
  cluster_name:
    description: Name of the cluster (the inventory's), which O(confirm) must repeat.
    type: str
    required: true
  confirm:
    description: Must equal O(cluster_name); anything else refuses before any change.
    type: str
    required: true
  control_planes:
    description: Every control plane of the cluster (addresses talosctl reaches).
    type: list
    elements: str
    required: true
  bootstrap_node:
    description: Control plane that recovers from the snapshot (default the first of O(control_planes)).
    type: str
  snapshot:
    description: The snapshot file on the controller.
    type: path
    required: true
  skip_hash_check:
    description: Recover from a file without the trailing SHA-256 (a copied C(member/snap/db)).
    type: bool
    default: false
  state_file:
    description: Record of the last restore (default C(restore-state.json) beside O(snapshot)).
    type: path
  force:
    description: Restore even when O(state_file) records this snapshot as restored already.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the wipe (every etcd C(Preparing)) and again for etcd after the recovery.
    type: int
    default: 300
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: >-
      Checks the confirmation and the snapshot, reads etcd's state and returns the plan;
      resets and uploads nothing.
  diff_mode:
    support: full
    details: Before and after of the etcd data source.
  idempotent:
    support: full
    description: The restored snapshot is recorded; restoring it again needs O(force).
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Restore etcd from the newest backup
  homecluster.platform.talos_etcd_recover:
    cluster_name: homelab
    confirm: "{{ etcd_restore_confirm }}"
    control_planes: [192.168.1.11, 192.168.1.12, 192.168.1.13]
    snapshot: "{{ inventory_dir }}/talos/backups/etcd/etcd-20261201T030000.000000Z.db"
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11, 192.168.1.12, 192.168.1.13]
"""

RETURN = r"""
snapshot:
  description: The snapshot restored (or that would be).
  returned: always
  type: str
sha256:
  description: SHA-256 of the snapshot file.
  returned: always
  type: str
plan:
  description: The steps taken (or that would be, in check mode); empty when nothing is to do.
  returned: always
  type: list
  elements: str
reset:
  description: Control planes whose EPHEMERAL partition was (or would be) wiped.
  returned: always
  type: list
  elements: str
restored_at:
  description: When the recorded restore of this snapshot happened (UTC, ISO 8601).
  returned: when a restore is recorded
  type: str
"""

import datetime
import hashlib
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._talos_day2 import etcd_problems, etcd_view
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    talosctl_argument_spec,
    write_private_file,
)

HASH_SIZE = 32


def snapshot_problem(path, skip_hash_check=False):
    """Why the snapshot cannot be restored (None when it can): etcdutl's integrity rule."""
    if not os.path.isfile(path):
        return f"snapshot {path} does not exist"
    size = os.path.getsize(path)
    if size == 0:
        return f"snapshot {path} is empty"
    if skip_hash_check:
        return None
    if size % 512 != HASH_SIZE:
        return (f"snapshot {path} carries no integrity hash ({size} bytes is not a multiple of 512 plus 32): "
                "not a file from `talosctl etcd snapshot`, or truncated; set skip_hash_check only for a copied "
                "data directory")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        left = size - HASH_SIZE
        while left:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        tail = fh.read(HASH_SIZE)
    if digest.digest() != tail:
        return f"snapshot {path} fails its integrity check (the SHA-256 it ends with does not match its contents)"
    return None


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def etcd_running(talos, control_planes):
    """{cp: True/False/None} - etcd's service running, or None when the node does not answer."""
    items = talos.get("services", "etcd", nodes=control_planes, check=False)[0]
    out = {cp: None for cp in control_planes}
    for item in items:
        node = item.get("node")
        if node in out:
            out[node] = bool((item.get("spec") or {}).get("running"))
    return out


def wait_for(check, timeout, interval=2.0):
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = check()
        if ok:
            return None
        if time.monotonic() >= deadline:
            return detail
        time.sleep(interval)


def main():  # noqa: PLR0912, PLR0915 - one linear recovery procedure
    spec = talosctl_argument_spec()
    spec.update(
        cluster_name={"type": "str", "required": True},
        confirm={"type": "str", "required": True},
        control_planes={"type": "list", "elements": "str", "required": True},
        bootstrap_node={"type": "str"},
        snapshot={"type": "path", "required": True},
        skip_hash_check={"type": "bool", "default": False},
        state_file={"type": "path"},
        force={"type": "bool", "default": False},
        timeout={"type": "int", "default": 300},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    cps = p["control_planes"]
    if p["confirm"] != p["cluster_name"]:
        module.fail_json(msg=f"confirm must equal the cluster name {p['cluster_name']!r} to restore etcd: "
                             "every change made after the snapshot is lost")
    if not cps:
        module.fail_json(msg="control_planes is empty: name every control plane of the cluster")
    node = p["bootstrap_node"] or cps[0]
    if node not in cps:
        module.fail_json(msg=f"bootstrap_node {node} is not one of control_planes ({', '.join(cps)})")
    if not p["talosconfig"]:
        module.fail_json(msg="talosconfig is required: reset and bootstrap go over mutual TLS")
    problem = snapshot_problem(p["snapshot"], p["skip_hash_check"])
    if problem:
        module.fail_json(msg=problem)
    sha = file_sha256(p["snapshot"])
    state_file = p["state_file"] or os.path.join(os.path.dirname(p["snapshot"]), "restore-state.json")
    state = read_state(state_file)
    result = {"snapshot": p["snapshot"], "sha256": sha, "plan": [], "reset": [], "changed": False}
    if state.get("sha256") == sha and state.get("cluster") == p["cluster_name"] and not p["force"]:
        module.exit_json(restored_at=state.get("restored_at"),
                         msg=f"etcd was restored from this snapshot at {state.get('restored_at')}; "
                             "set force to restore it again",
                         **result)

    talos = Talosctl.from_module(module)
    try:
        running = etcd_running(talos, cps)
    except TalosctlError as exc:
        kwargs = exc.as_fail_kwargs()
        kwargs["msg"] = f"reading etcd's service on the control planes failed: {exc.msg}"
        module.fail_json(**kwargs)
    to_reset = [cp for cp in cps if running[cp] is not False]
    plan = []
    if to_reset:
        plan.append(f"wipe EPHEMERAL (etcd data) on {', '.join(to_reset)}: talosctl reset --graceful=false --reboot "
                    "--system-labels-to-wipe=EPHEMERAL")
    plan += [f"wait until etcd is Preparing on {', '.join(cps)}",
             f"talosctl bootstrap --recover-from={p['snapshot']} on {node} (sha256 {sha[:12]})",
             f"wait until etcd runs on every control plane with {len(cps)} members"]
    result.update(plan=plan, reset=to_reset, changed=True)
    if module._diff:
        result["diff"] = {"before": f"etcd data: the cluster's current data ({len(to_reset)} of {len(cps)} "
                                    "control planes hold it)\n",
                          "after": f"etcd data: restored from {p['snapshot']} (sha256 {sha})\n"}
    if module.check_mode:
        module.exit_json(**result)

    def fail(msg, exc=None):
        kwargs = dict(result)
        if exc is not None:
            kwargs.update(exc.as_fail_kwargs())
        kwargs["msg"] = msg
        module.fail_json(**kwargs)

    if to_reset:
        try:
            talos.run(["reset", "--graceful=false", "--reboot", "--system-labels-to-wipe=EPHEMERAL", "--wait=false"],
                      nodes=to_reset, msg=f"talosctl reset of {', '.join(to_reset)} failed")
        except TalosctlError as exc:
            fail(exc.msg, exc)

    def all_preparing():
        now = etcd_running(talos, cps)
        waiting = [cp for cp, run in now.items() if run is not False]
        return not waiting, f"etcd on {', '.join(waiting)} is not waiting in Preparing"

    late = wait_for(all_preparing, p["timeout"])
    if late:
        fail(f"after the reset, {late} within {p['timeout']} s; nothing was recovered (rerun to continue)")

    args = ["bootstrap", "--recover-from", p["snapshot"]]
    if p["skip_hash_check"]:
        args.append("--recover-skip-hash-check")
    deadline = time.monotonic() + p["timeout"]
    while True:
        res = talos.run(args, nodes=[node], check=False, timeout=max(p["command_timeout"], 300))
        if res.rc == 0:
            break
        text = (res.stderr or res.stdout).strip()
        retry = "not available yet" in text or "not ready for recovery yet" in text
        if not retry or time.monotonic() > deadline:
            fail(f"talosctl bootstrap --recover-from on {node} failed: {text.splitlines()[-1] if text else res.rc}",
                 TalosctlError(text, cmd=res.cmd, rc=res.rc, stdout=res.stdout, stderr=res.stderr))
        time.sleep(2)

    def etcd_back():
        problems = etcd_problems(etcd_view(talos, cps, alarms=False), expected_members=len(cps))
        return not problems, "; ".join(problems)

    late = wait_for(etcd_back, p["timeout"])
    if late:
        fail(f"etcd was recovered on {node} but is not healthy within {p['timeout']} s: {late}")
    restored_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    record = {"cluster": p["cluster_name"], "snapshot": p["snapshot"], "sha256": sha, "restored_at": restored_at,
              "bootstrap_node": node}
    write_private_file(state_file, json.dumps(record, indent=2) + "\n", module=module)
    module.exit_json(restored_at=restored_at, **result)


if __name__ == "__main__":
    main()
