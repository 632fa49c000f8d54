#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_kubeconfig
short_description: Fetch the admin kubeconfig of a Talos cluster and merge it into a file
version_added: 0.1.0
description:
  - Fetches the admin kubeconfig from a control plane (C(talosctl kubeconfig -)) and merges its
    cluster, user and context into O(dest), mode C(0600).
  - Other clusters, users and contexts in O(dest) are never touched.
  - The entries already in O(dest) are kept while they point at the same server with the same CA
    and the client certificate is valid for longer than O(renew_before_days), so a rerun reports
    no change (Talos issues a fresh client certificate on every fetch).
options:
  node:
    description: Control plane to fetch the kubeconfig from.
    type: str
    required: true
  dest:
    description: Kubeconfig file to write or merge into.
    type: path
    required: true
  context_name:
    description: Name for the context, cluster and user entries; defaults to the name Talos uses.
    type: str
  set_current_context:
    description: Make this context the current one.
    type: bool
    default: true
  renew_before_days:
    description: Replace the client certificate when it expires within this many days.
    type: int
    default: 30
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Check mode fetches (a read) and compares, writing nothing.
  diff_mode:
    support: full
    details: Keys and certificates are shown as fingerprints.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Fetch the kubeconfig
  homecluster.platform.talos_kubeconfig:
    node: 192.168.1.11
    dest: "{{ inventory_dir }}/talos/kubeconfig"
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    endpoints: [192.168.1.11]
"""

RETURN = r"""
dest:
  description: The kubeconfig written.
  returned: always
  type: str
  sample: /home/me/lab/talos/kubeconfig
context:
  description: Context name of the cluster.
  returned: always
  type: str
  sample: admin@home
server:
  description: API server URL of the cluster.
  returned: always
  type: str
  sample: https://192.168.1.10:6443
renewed:
  description: Whether the credentials were (or would be) replaced.
  returned: always
  type: bool
  sample: false
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._certs import days_left
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    Talosctl,
    TalosctlError,
    talosctl_argument_spec,
    write_yaml_credentials,
)

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None


def named(entries, name):
    for entry in entries or []:
        if entry.get("name") == name:
            return entry
    return None


def upsert(entries, entry):
    out = [e for e in (entries or []) if e.get("name") != entry["name"]]
    out.append(entry)
    return out


def merge(existing, fetched, context_name, set_current, renew_before_days):
    """Return (desired kubeconfig, renewed) merging *fetched* into *existing* without clobbering."""
    f_ctx = fetched["contexts"][0]
    f_cluster = named(fetched.get("clusters"), f_ctx["context"]["cluster"])
    f_user = named(fetched.get("users"), f_ctx["context"]["user"])
    name = context_name or f_ctx["name"]
    cluster_name = context_name or f_cluster["name"]
    user_name = context_name or f_user["name"]
    desired = dict(existing) if existing else {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    desired.setdefault("apiVersion", "v1")
    desired.setdefault("kind", "Config")
    old_cluster = named(desired.get("clusters"), cluster_name)
    old_user = named(desired.get("users"), user_name)
    same_cluster = bool(old_cluster) and old_cluster.get("cluster") == f_cluster["cluster"]
    left = days_left(((old_user or {}).get("user") or {}).get("client-certificate-data"))
    keep_user = same_cluster and bool(old_user) and (left is None or left > renew_before_days)
    desired["clusters"] = upsert(desired.get("clusters"), {"name": cluster_name, "cluster": f_cluster["cluster"]})
    user = old_user if keep_user else {"name": user_name, "user": f_user["user"]}
    desired["users"] = upsert(desired.get("users"), user)
    context = {"name": name, "context": dict(f_ctx["context"], cluster=cluster_name, user=user_name)}
    old_context = named(desired.get("contexts"), name)
    if old_context and old_context.get("context", {}).get("namespace") and "namespace" not in context["context"]:
        context["context"]["namespace"] = old_context["context"]["namespace"]
    desired["contexts"] = upsert(desired.get("contexts"), context)
    if set_current or not desired.get("current-context"):
        desired["current-context"] = name
    return desired, not keep_user, name, f_cluster["cluster"].get("server")


def canonical(cfg):
    """Order-insensitive view used to compare kubeconfigs."""
    out = dict(cfg or {})
    for key in ("clusters", "users", "contexts"):
        out[key] = sorted(out.get(key) or [], key=lambda e: e.get("name", ""))
    return out


def main():
    spec = talosctl_argument_spec()
    spec.update(
        node={"type": "str", "required": True},
        dest={"type": "path", "required": True},
        context_name={"type": "str"},
        set_current_context={"type": "bool", "default": True},
        renew_before_days={"type": "int", "default": 30},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if not p["talosconfig"]:
        module.fail_json(msg="talosconfig is required: the kubeconfig is fetched over mutual TLS")
    dest = p["dest"]
    existing = {}
    if os.path.exists(dest):
        with open(dest) as handle:
            try:
                existing = yaml.safe_load(handle) or {}
            except yaml.YAMLError as exc:
                module.fail_json(msg=f"{dest} is not a readable kubeconfig ({exc}); fix or move it")
    talos = Talosctl.from_module(module)
    try:
        text = talos.kubeconfig(node=p["node"])
    except TalosctlError as exc:
        kwargs = exc.as_fail_kwargs()
        kwargs["stdout"] = ""
        module.fail_json(**kwargs)
    try:
        fetched = yaml.safe_load(text)
        desired, renewed, name, server = merge(existing, fetched, p["context_name"], p["set_current_context"],
                                               p["renew_before_days"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as exc:
        module.fail_json(msg=f"talosctl returned a kubeconfig this module cannot read: {exc}")
    result = {"changed": False, "dest": dest, "context": name, "server": server}
    changed = write_yaml_credentials(module, result, dest, existing, desired,
                                     changed=canonical(desired) != canonical(existing))
    result["renewed"] = changed and renewed
    module.exit_json(**result)


if __name__ == "__main__":
    main()
