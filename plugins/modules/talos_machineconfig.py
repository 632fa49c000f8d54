#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_machineconfig
short_description: Render and validate the machine config of one Talos node
version_added: 0.1.0
description:
  - Renders the machine config of one node from the cluster spec with
    C(talosctl gen config --with-secrets), cluster-wide patches (C(--config-patch)), patches for the
    node's role (C(--config-patch-control-plane) or C(--config-patch-worker)) and node patches
    (C(talosctl machineconfig patch)), in that order, so a node patch wins over a role patch and a
    role patch over a cluster-wide one.
  - Validates the result with C(talosctl validate) before writing it, so a bad patch fails before
    anything changes.
  - Writes O(dest) with mode C(0600) (the config holds cluster keys) only when its content differs;
    with fixed secrets the rendering is deterministic, so an unchanged input reports no change.
  - A SOPS-encrypted secrets bundle is decrypted with C(sops -d) into a private temporary directory
    for the duration of the call.
  - With O(history_dir), the config that a changed rendering replaces is kept there first (mode
    C(0600), directory C(0700)) as C(<name>.<UTC time>.yaml), the newest O(history_keep) per node,
    so a previous config can be applied again (C(playbooks/talos-rollback.yml)).
options:
  dest:
    description: Where to write the machine config on the controller.
    type: path
    required: true
  cluster_name:
    description: Name of the cluster.
    type: str
    required: true
  cluster_endpoint:
    description: Kubernetes API endpoint URL, for example C(https://192.168.1.10:6443).
    type: str
    required: true
  secrets_file:
    description: The secrets bundle written by M(homecluster.platform.talos_secrets).
    type: path
    required: true
  machine_type:
    description: Role of the node.
    type: str
    required: true
    choices: [controlplane, worker]
  talos_version:
    description:
      - Config format contract (C(talosctl gen config --talos-version)), for example C(v1.14).
      - Decides which config documents are generated; the installed Talos release is decided by O(install_image).
    type: str
  kubernetes_version:
    description: Kubernetes version the config deploys, for example C(1.37.2).
    type: str
  install_disk:
    description: Disk Talos installs to, for example C(/dev/sda).
    type: str
  install_image:
    description: Installer image (decides the Talos release installed on the disk).
    type: str
  additional_sans:
    description: Extra subject alternative names for the API server certificate.
    type: list
    elements: str
    default: []
  dns_domain:
    description: Cluster DNS domain.
    type: str
  patches:
    description:
      - Patches applied to every node (strategic merge or JSON patch), as YAML text, a mapping or a list.
    type: list
    elements: raw
    default: []
  role_patches:
    description: Patches applied to nodes of this O(machine_type) only.
    type: list
    elements: raw
    default: []
  node_patches:
    description: Patches applied to this node only, after all others.
    type: list
    elements: raw
    default: []
  validate_mode:
    description: Runtime mode the config is validated for.
    type: str
    default: metal
    choices: [metal, cloud, container]
  validate_strict:
    description: Treat validation warnings as errors.
    type: bool
    default: false
  history_dir:
    description:
      - Directory where the previous config is kept when the rendering changes it; not set keeps none.
      - Entries are named after O(dest) (C(cp1.yaml) gives C(cp1.20261204T190501123456Z.yaml)).
    type: path
  history_keep:
    description: How many previous configs of this O(dest) O(history_dir) keeps; older ones are deleted.
    type: int
    default: 10
  sops_path:
    description: Path to C(sops), used only when O(secrets_file) is SOPS-encrypted; found on E(PATH) when not set.
    type: path
  sops_age_key_file:
    description:
      - The age identity that decrypts a SOPS-encrypted O(secrets_file).
      - When not set, E(SOPS_AGE_KEY_FILE), then sops' default C(~/.config/sops/age/keys.txt).
    type: path
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: Rendering is local and read-only, so check mode renders, validates and compares for real.
  diff_mode:
    support: full
    details: Keys, certificates and tokens are shown as fingerprints.
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Render the machine config of a control plane
  homecluster.platform.talos_machineconfig:
    dest: "{{ inventory_dir }}/talos/nodes/cp1.yaml"
    cluster_name: home
    cluster_endpoint: https://192.168.1.10:6443
    secrets_file: "{{ inventory_dir }}/talos/secrets.yaml"
    machine_type: controlplane
    talos_version: v1.14
    kubernetes_version: 1.37.2
    install_disk: /dev/sda
    patches:
      - apiVersion: v1alpha1
        kind: KubeProxyConfig
        enabled: false
    node_patches:
      - apiVersion: v1alpha1
        kind: HostnameConfig
        hostname: cp1
        auto: "off"
"""

RETURN = r"""
dest:
  description: Path of the machine config.
  returned: always
  type: str
  sample: /home/me/lab/talos/nodes/cp1.yaml
sha256:
  description: SHA-256 of the rendered config.
  returned: always
  type: str
  sample: 0f3c9a...
documents:
  description: Kinds of the documents in the rendered config.
  returned: always
  type: list
  elements: str
  sample: [v1alpha1, KubeProxyConfig, HostnameConfig]
warnings_validate:
  description: Warnings printed by C(talosctl validate).
  returned: always
  type: list
  elements: str
  sample: []
history_saved:
  description:
    - The file the replaced config was kept in; empty when nothing was kept (no change, no previous
      config, no O(history_dir), or check mode).
  returned: always
  type: str
  sample: /home/me/lab/talos/history/cp1.20261204T190501123456Z.yaml
history:
  description: The kept configs of this O(dest), newest first (after this run's change; none in check mode).
  returned: when O(history_dir) is set
  type: list
  elements: str
  sample: [/home/me/lab/talos/history/cp1.20261204T190501123456Z.yaml]
"""

import datetime
import glob
import hashlib
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._sops import decrypt_yaml_if_sops
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import (
    PrivateDir,
    Talosctl,
    TalosctlError,
    dump_yaml_stream,
    file_mode,
    parse_yaml_stream,
    redact,
    talosctl_argument_spec,
    write_private_file,
)

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None


def patch_text(item):
    """A patch as talosctl reads it from a file: YAML text as given, mappings dumped, JSON patches as JSON."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item and all(isinstance(op, dict) and "op" in op for op in item):
        return json.dumps(item)
    if isinstance(item, list):
        return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in item)
    return yaml.safe_dump(item, sort_keys=False)


def decrypt_secrets(module, path, private):
    with open(path) as handle:
        text = handle.read()
    plain = decrypt_yaml_if_sops(module, text, path, sops_path=module.params["sops_path"],
                                 age_key_file=module.params["sops_age_key_file"])
    if plain is None:
        return path
    return private.write("secrets.yaml", plain)


def render(module, talos, private):
    p = module.params
    secrets = decrypt_secrets(module, p["secrets_file"], private)

    def files(prefix, items):
        return ["@" + private.write(f"{prefix}-{i}.yaml", patch_text(item)) for i, item in enumerate(items)]

    role = files("role", p["role_patches"])
    text = talos.gen_config(
        p["cluster_name"], p["cluster_endpoint"], secrets_file=secrets, output_type=p["machine_type"],
        talos_version=p["talos_version"], kubernetes_version=p["kubernetes_version"],
        install_disk=p["install_disk"], install_image=p["install_image"], additional_sans=p["additional_sans"],
        dns_domain=p["dns_domain"], patches=files("cluster", p["patches"]),
        patches_controlplane=role if p["machine_type"] == "controlplane" else None,
        patches_worker=role if p["machine_type"] == "worker" else None,
    )
    if p["node_patches"]:
        base = private.write("base.yaml", text)
        text = talos.machineconfig_patch(base, files("node", p["node_patches"]))
    candidate = private.write("candidate.yaml", text)
    res = talos.validate(candidate, mode=p["validate_mode"], strict=p["validate_strict"])
    warnings = [line.split(":", 1)[1].strip() for line in res.stderr.splitlines() if line.startswith("WARNING:")]
    if res.rc != 0:
        detail = res.stderr.strip() or res.stdout.strip()
        module.fail_json(msg=f"the rendered config for {p['dest']} is not valid: {detail}",
                         cmd=" ".join(res.cmd), rc=res.rc, stderr=res.stderr)
    return text, warnings


def kinds(docs):
    out = []
    for doc in docs:
        if isinstance(doc, dict):
            out.append(doc.get("kind") or ("v1alpha1" if "machine" in doc else "unknown"))
    return out


def history_entries(history_dir, dest):
    """The kept configs of dest in history_dir, newest first (the names sort by their UTC time)."""
    stem = os.path.splitext(os.path.basename(dest))[0]
    return sorted(glob.glob(os.path.join(glob.escape(history_dir), f"{glob.escape(stem)}.*Z.yaml")), reverse=True)


def keep_previous(module, dest, previous, history_dir, keep):
    """Keep the config that is about to be replaced; delete the oldest beyond keep. Returns the new entry."""
    os.makedirs(history_dir, mode=0o700, exist_ok=True)
    os.chmod(history_dir, 0o700)
    stem = os.path.splitext(os.path.basename(dest))[0]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    entry = os.path.join(history_dir, f"{stem}.{stamp}.yaml")
    write_private_file(entry, previous, 0o600, module=module)
    for old in history_entries(history_dir, dest)[keep:]:
        os.unlink(old)
    return entry


def write(module, result, current, text):
    """Write the rendered config (keeping the one it replaces, with history_dir), or only fix its mode."""
    p = module.params
    dest = p["dest"]
    if current == text:
        os.chmod(dest, 0o600)
        return
    if current is not None and p["history_dir"]:
        result["history_saved"] = keep_previous(module, dest, current, p["history_dir"], p["history_keep"])
    write_private_file(dest, text, 0o600, module=module)


def main():
    spec = talosctl_argument_spec()
    spec.update(
        dest={"type": "path", "required": True},
        cluster_name={"type": "str", "required": True},
        cluster_endpoint={"type": "str", "required": True},
        secrets_file={"type": "path", "required": True},
        machine_type={"type": "str", "required": True, "choices": ["controlplane", "worker"]},
        talos_version={"type": "str"},
        kubernetes_version={"type": "str"},
        install_disk={"type": "str"},
        install_image={"type": "str"},
        additional_sans={"type": "list", "elements": "str", "default": []},
        dns_domain={"type": "str"},
        patches={"type": "list", "elements": "raw", "default": []},
        role_patches={"type": "list", "elements": "raw", "default": []},
        node_patches={"type": "list", "elements": "raw", "default": []},
        validate_mode={"type": "str", "default": "metal", "choices": ["metal", "cloud", "container"]},
        validate_strict={"type": "bool", "default": False},
        sops_path={"type": "path"},
        sops_age_key_file={"type": "path", "no_log": False},
        history_dir={"type": "path"},
        history_keep={"type": "int", "default": 10},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if p["history_keep"] < 1:
        module.fail_json(msg=f"history_keep must be 1 or more (got {p['history_keep']}); "
                             "leave history_dir unset to keep no previous config")
    if not p["cluster_endpoint"].startswith("https://"):
        module.fail_json(msg=f"cluster_endpoint {p['cluster_endpoint']!r} must be an https:// URL such as "
                             "https://192.168.1.10:6443")
    if not os.path.isfile(p["secrets_file"]):
        module.fail_json(msg=f"secrets_file {p['secrets_file']} does not exist; run talos_secrets first")

    talos = Talosctl.from_module(module)
    with PrivateDir() as private:
        try:
            text, warnings = render(module, talos, private)
        except TalosctlError as exc:
            module.fail_json(**exc.as_fail_kwargs())

    dest = p["dest"]
    current = None
    if os.path.exists(dest):
        with open(dest) as handle:
            current = handle.read()
    docs = parse_yaml_stream(text)
    result = {
        "changed": False, "dest": dest, "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "documents": kinds(docs), "warnings_validate": warnings, "history_saved": "",
    }
    content_changed = current != text
    mode_changed = current is not None and file_mode(dest) != 0o600
    result["changed"] = content_changed or mode_changed
    if module._diff and result["changed"]:
        before = ""
        if current is not None:
            try:
                before = dump_yaml_stream([redact(d) for d in parse_yaml_stream(current)])
            except yaml.YAMLError:
                before = "<unparsable previous content>\n"
        after = dump_yaml_stream([redact(d) for d in docs])
        result["diff"] = {"before": before, "after": after, "before_header": dest, "after_header": dest}
    if result["changed"] and not module.check_mode:
        write(module, result, current, text)
    if p["history_dir"]:
        result["history"] = history_entries(p["history_dir"], dest) if os.path.isdir(p["history_dir"]) else []
    module.exit_json(**result)


if __name__ == "__main__":
    main()
