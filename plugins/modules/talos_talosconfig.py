#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_talosconfig
short_description: Write the talosconfig of a cluster, with its endpoints and nodes
version_added: 0.1.0
description:
  - Writes a talosconfig context for the cluster (admin client certificate signed by the cluster's
    OS CA from the secrets bundle, via C(talosctl gen config --output-types talosconfig)) with the
    given endpoints and nodes, mode C(0600).
  - Other contexts in the file are kept. The existing client certificate is kept while it is signed
    by the same CA and valid for longer than O(renew_before_days), so a rerun reports no change.
options:
  dest:
    description: Path of the talosconfig on the controller.
    type: path
    required: true
  cluster_name:
    description: Cluster name; also the context name unless O(context_name) is set.
    type: str
    required: true
  cluster_endpoint:
    description: Kubernetes API endpoint URL (required by C(gen config), not stored in the talosconfig).
    type: str
    required: true
  secrets_file:
    description:
      - The secrets bundle written by M(homecluster.platform.talos_secrets).
      - It may be SOPS-encrypted in place; it is then decrypted in memory and given to C(talosctl) only
        through a private 0700 directory removed on exit.
    type: path
    required: true
  sops_path:
    description: Path to C(sops), used only when O(secrets_file) is SOPS-encrypted; found on E(PATH) when not set.
    type: path
  sops_age_key_file:
    description:
      - The age identity that decrypts a SOPS-encrypted O(secrets_file).
      - When not set, E(SOPS_AGE_KEY_FILE), then sops' default C(~/.config/sops/age/keys.txt).
    type: path
  talos_endpoints:
    description: Talos API endpoints stored in the context (control-plane addresses).
    type: list
    elements: str
    required: true
  talos_nodes:
    description: Default nodes stored in the context.
    type: list
    elements: str
    default: []
  context_name:
    description: Name of the context; defaults to O(cluster_name).
    type: str
  renew_before_days:
    description: Renew the client certificate when it expires within this many days.
    type: int
    default: 30
  talos_version:
    description: Config format contract passed to C(gen config).
    type: str
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Keys and certificates are shown as fingerprints.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Write the talosconfig
  homecluster.platform.talos_talosconfig:
    dest: "{{ inventory_dir }}/talos/talosconfig"
    cluster_name: home
    cluster_endpoint: https://192.168.1.10:6443
    secrets_file: "{{ inventory_dir }}/talos/secrets.yaml"
    talos_endpoints: [192.168.1.11, 192.168.1.12, 192.168.1.13]
    talos_nodes: [192.168.1.11]
"""

RETURN = r"""
dest:
  description: Path of the talosconfig.
  returned: always
  type: str
  sample: /home/me/lab/talos/talosconfig
context:
  description: Name of the context written.
  returned: always
  type: str
  sample: home
renewed:
  description: Whether a new client certificate was (or would be) written.
  returned: always
  type: bool
  sample: false
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._certs import days_left
from ansible_collections.homecluster.platform.plugins.module_utils._sops import decrypt_yaml_if_sops
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    PrivateDir,
    Talosctl,
    TalosctlError,
    talosctl_argument_spec,
    write_yaml_credentials,
)

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None


def read_bundle(module, path):
    """(plaintext, OS CA) of the bundle; a SOPS-encrypted bundle is decrypted in memory."""
    with open(path) as handle:
        text = handle.read()
    plain = decrypt_yaml_if_sops(module, text, path, sops_path=module.params["sops_path"],
                                 age_key_file=module.params["sops_age_key_file"])
    data = yaml.safe_load(text if plain is None else plain) or {}
    return plain, ((data.get("certs") or {}).get("os") or {}).get("crt")


def main():
    spec = talosctl_argument_spec()
    spec.update(
        dest={"type": "path", "required": True},
        cluster_name={"type": "str", "required": True},
        cluster_endpoint={"type": "str", "required": True},
        secrets_file={"type": "path", "required": True},
        talos_endpoints={"type": "list", "elements": "str", "required": True},
        talos_nodes={"type": "list", "elements": "str", "default": []},
        context_name={"type": "str"},
        renew_before_days={"type": "int", "default": 30},
        talos_version={"type": "str"},
        sops_path={"type": "path"},
        sops_age_key_file={"type": "path"},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if not p["talos_endpoints"]:
        module.fail_json(msg="talos_endpoints must list at least one control-plane address")
    if not os.path.isfile(p["secrets_file"]):
        module.fail_json(msg=f"secrets_file {p['secrets_file']} does not exist; run talos_secrets first")
    name = p["context_name"] or p["cluster_name"]
    dest = p["dest"]

    existing = {}
    if os.path.exists(dest):
        with open(dest) as handle:
            existing = yaml.safe_load(handle) or {}
    contexts = dict(existing.get("contexts") or {})
    old = contexts.get(name)
    plain, ca = read_bundle(module, p["secrets_file"])
    keep_cert = bool(
        old and ca and old.get("ca") == ca and old.get("crt") and old.get("key")
        and (days_left(old.get("crt")) is None or days_left(old.get("crt")) > p["renew_before_days"])
    )
    result = {"changed": False, "dest": dest, "context": name, "renewed": not keep_cert}

    if keep_cert:
        new = dict(old)
    else:
        talos = Talosctl.from_module(module)
        with PrivateDir() as private:
            secrets_file = p["secrets_file"] if plain is None else private.write("secrets.yaml", plain)
            try:
                text = talos.gen_config(p["cluster_name"], p["cluster_endpoint"], secrets_file=secrets_file,
                                        output_type="talosconfig", talos_version=p["talos_version"])
            except TalosctlError as exc:
                kwargs = exc.as_fail_kwargs()
                kwargs["stdout"] = ""
                module.fail_json(**kwargs)
        generated = yaml.safe_load(text) or {}
        gen_ctx = (generated.get("contexts") or {}).get(generated.get("context")) or {}
        new = {k: v for k, v in gen_ctx.items() if k in ("ca", "crt", "key")}
    new["endpoints"] = list(p["talos_endpoints"])
    if p["talos_nodes"]:
        new["nodes"] = list(p["talos_nodes"])
    else:
        new.pop("nodes", None)
    contexts[name] = new
    desired = dict(existing)
    desired["context"] = name
    desired["contexts"] = contexts

    write_yaml_credentials(module, result, dest, existing, desired, changed=desired != existing)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
