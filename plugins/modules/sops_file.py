#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sops_file
short_description: Keep a file SOPS-encrypted for age recipients, re-encrypting only on real change
version_added: 0.1.0
description:
  - Writes O(content) to O(dest) encrypted with the real C(sops) for the age recipients in O(age_recipients).
  - sops output differs on every run, so an existing O(dest) is decrypted (with O(age_key_file)) and its
    plaintext compared with O(content); the file is rewritten only when the plaintext, the recipients or
    the encrypted_regex differ. The plaintext goes to sops through a pipe and is never written to disk.
  - For files that belong in a GitOps repository use M(homecluster.platform.gitops_repo), which encrypts
    the same way and also commits and pushes.
author:
  - HomeCluster developers (@homecluster)
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: values are masked; the diff tells which keys change, never their values.
options:
  dest:
    description: Encrypted file to write. Its directory must exist.
    type: path
    required: true
  content:
    description: Plaintext to encrypt.
    type: str
    required: true
  format:
    description: sops input/output type; V(auto) picks it from the file name.
    type: str
    choices: [auto, yaml, json, dotenv, binary]
    default: auto
  encrypted_regex:
    description: Keys whose values sops encrypts; an empty string encrypts every value.
    type: str
    default: ^(data|stringData)$
  age_recipients:
    description: age public keys to encrypt for.
    type: list
    elements: str
    required: true
  age_key_file:
    description: age private key file used to decrypt an existing O(dest) for comparison.
    type: path
    required: true
  mode:
    description: Mode of O(dest).
    type: str
    default: '0600'
  sops_path:
    description: Path of the sops binary; found on E(PATH) when not set.
    type: path
seealso:
  - module: homecluster.platform.gitops_repo
  - module: homecluster.platform.age_keypair
"""

EXAMPLES = r"""
- name: Keep the Talos secrets bundle encrypted next to the inventory
  homecluster.platform.sops_file:
    dest: "{{ inventory_dir }}/talos-secrets.sops.yaml"
    content: "{{ lookup('ansible.builtin.file', talos_secrets_file) }}"
    encrypted_regex: ""
    age_recipients: ["{{ age.public_key }}"]
    age_key_file: ~/.config/homecluster/lab/age.key
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
dest:
  description: Encrypted file.
  returned: always
  type: str
reason:
  description: Why the file is (re-)encrypted (absent, content, recipients, encrypted_regex, not encrypted with sops).
  returned: when changed
  type: str
  sample: content
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._sops import Sops, SopsError, detect_format, masked


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "content": {"type": "str", "required": True, "no_log": True},
            "format": {"type": "str", "choices": ["auto", "yaml", "json", "dotenv", "binary"], "default": "auto"},
            "encrypted_regex": {"type": "str", "default": "^(data|stringData)$"},
            "age_recipients": {"type": "list", "elements": "str", "required": True},
            "age_key_file": {"type": "path", "required": True, "no_log": False},
            "mode": {"type": "str", "default": "0600"},
            "sops_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    dest = p["dest"]
    try:
        fmt = detect_format(dest, p["format"])
        mode = int(p["mode"], 8)
    except ValueError as e:
        module.fail_json(msg=f"{e}; mode must be octal like '0600'")
    if not p["age_recipients"] or any(not r.startswith("age1") for r in p["age_recipients"]):
        module.fail_json(msg="age_recipients must be a non-empty list of age public keys (age1...)")
    if not os.path.isfile(p["age_key_file"]):
        module.fail_json(msg=f"age_key_file {p['age_key_file']} does not exist (homecluster.platform.age_keypair)")
    if not os.path.isdir(os.path.dirname(dest) or "."):
        module.fail_json(msg=f"the directory of dest {dest} does not exist")
    sops = Sops(module, binary=p["sops_path"], age_key_file=p["age_key_file"])
    result = {"changed": False, "dest": dest}
    try:
        ciphertext = None
        if os.path.exists(dest):
            with open(dest, "rb") as f:
                ciphertext = f.read()
        changed, reason, current = sops.needs_update(ciphertext, p["content"], dest, fmt,
                                                     recipients=p["age_recipients"],
                                                     encrypted_regex=p["encrypted_regex"])
        current_mode = (os.stat(dest).st_mode & 0o7777) if ciphertext is not None else None
        if changed:
            before, after = masked(current.decode() if current is not None else None, p["content"], fmt,
                                   p["encrypted_regex"])
            result.update(changed=True, reason=reason, diff={"before": before, "after": after})
            if not module.check_mode:
                data = sops.encrypt(p["content"], dest, fmt, recipients=p["age_recipients"],
                                    encrypted_regex=p["encrypted_regex"])
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", prefix=".sops-")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, mode)
                os.replace(tmp, dest)
        elif current_mode != mode:
            result.update(changed=True, reason="mode",
                          diff={"before": f"mode {current_mode:04o}\n", "after": f"mode {mode:04o}\n"})
            if not module.check_mode:
                os.chmod(dest, mode)
    except SopsError as e:
        e.fail(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
