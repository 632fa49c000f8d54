#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_etcd_snapshot
short_description: Take an etcd snapshot from a Talos control plane onto the controller, with retention
version_added: 0.2.0
description:
  - Runs C(talosctl etcd snapshot) against O(node) into O(dest) as
    C(<prefix>-<UTC timestamp>.db), mode C(0600) (the snapshot holds every Secret), written to a
    temporary name first so a failed or partial snapshot never counts as one.
  - Keeps the newest O(retention) files named C(<prefix>-*.db) in O(dest) and deletes older ones.
  - Every run takes a new snapshot (it reports a change); check mode takes none and reports which
    files retention would delete.
options:
  node:
    description: Control plane to take the snapshot from.
    type: str
    required: true
  dest:
    description: Directory on the controller (created 0700 if missing).
    type: path
    required: true
  prefix:
    description: File name prefix.
    type: str
    default: etcd
  retention:
    description: Snapshots to keep (0 keeps all).
    type: int
    default: 7
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Takes no snapshot, deletes nothing; reports the file it would write and what retention would delete.
  diff_mode:
    support: none
  idempotent:
    support: none
    description: Each run takes a new snapshot.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Snapshot etcd before an upgrade
  homecluster.platform.talos_etcd_snapshot:
    node: 192.168.1.11
    dest: "{{ inventory_dir }}/backups/etcd"
    retention: 10
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11]
"""

RETURN = r"""
path:
  description: The snapshot written (predicted in check mode).
  returned: always
  type: str
size:
  description: Bytes written (0 in check mode).
  returned: always
  type: int
removed:
  description: Older snapshots deleted by retention (would be deleted, in check mode).
  returned: always
  type: list
  elements: str
"""

import datetime
import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    talosctl_argument_spec,
)


def expired(dest, prefix, retention, extra=0):
    files = sorted(glob.glob(os.path.join(dest, f"{glob.escape(prefix)}-*.db")))
    if retention <= 0:
        return []
    keep = max(retention - extra, 0)
    return files[:len(files) - keep] if len(files) > keep else []


def main():
    spec = talosctl_argument_spec()
    spec.update(
        node={"type": "str", "required": True},
        dest={"type": "path", "required": True},
        prefix={"type": "str", "default": "etcd"},
        retention={"type": "int", "default": 7},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if p["retention"] < 0:
        module.fail_json(msg="retention must be 0 (keep all) or a positive count")
    if "/" in p["prefix"] or not p["prefix"]:
        module.fail_json(msg=f"prefix {p['prefix']!r} must be a plain file name prefix")
    if not p["talosconfig"]:
        module.fail_json(msg="talosconfig is required: etcd snapshot goes over mutual TLS")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = os.path.join(p["dest"], f"{p['prefix']}-{stamp}.db")
    if module.check_mode:
        removed = expired(p["dest"], p["prefix"], p["retention"], extra=1) if os.path.isdir(p["dest"]) else []
        module.exit_json(changed=True, path=path, size=0, removed=removed)
    os.makedirs(p["dest"], mode=0o700, exist_ok=True)
    tmp = os.path.join(p["dest"], f".{p['prefix']}-{stamp}.partial")
    talos = Talosctl.from_module(module)
    old_umask = os.umask(0o077)
    try:
        talos.etcd_snapshot(tmp, node=p["node"])
        os.chmod(tmp, 0o600)
        size = os.path.getsize(tmp)
        if size == 0:
            raise TalosctlError(f"the snapshot from {p['node']} is empty", cmd=[])
        os.rename(tmp, path)
    except TalosctlError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        kwargs = exc.as_fail_kwargs()
        kwargs["msg"] = f"etcd snapshot from {p['node']} failed: {exc.msg}"
        module.fail_json(**kwargs)
    finally:
        os.umask(old_umask)
    removed = expired(p["dest"], p["prefix"], p["retention"])
    for old in removed:
        os.unlink(old)
    module.exit_json(changed=True, path=path, size=size, removed=removed)


if __name__ == "__main__":
    main()
