#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: age_keypair
short_description: Generate an age key pair once and return its public key
version_added: 0.1.0
description:
  - Generates an age key pair with the real C(age-keygen) when O(path) does not exist, and never
    replaces an existing key (a new key would make every committed SOPS secret unreadable).
  - The key file is kept at mode C(0600) in a directory of mode C(0700) at most. The private key is
    never returned or logged; the public key is returned for SOPS creation rules and encryption.
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
    details: shows whether the key file is created and its mode fixed, never the key.
options:
  path:
    description: Key file on the controller.
    type: path
    required: true
  age_keygen_path:
    description: Path of the age-keygen binary; found on E(PATH) when not set.
    type: path
seealso:
  - module: homecluster.platform.sops_file
  - module: homecluster.platform.gitops_repo
"""

EXAMPLES = r"""
- name: Generate the cluster's age key once
  homecluster.platform.age_keypair:
    path: ~/.config/homecluster/lab/age.key
  register: age
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
public_key:
  description: age public key (recipient). Empty in check mode when the key would be generated.
  returned: always
  type: str
  sample: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
path:
  description: Key file.
  returned: always
  type: str
generated:
  description: Whether a new key pair was generated (or would be, in check mode).
  returned: always
  type: bool
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._age import AgeError, AgeKeygen, has_secret_key

KEY_MODE = 0o600


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "age_keygen_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    result = {"changed": False, "path": path, "public_key": "", "generated": False}
    keygen = AgeKeygen(module, module.params["age_keygen_path"])
    parent = os.path.dirname(path) or "."
    try:
        if os.path.exists(path):
            if not os.path.isfile(path):
                module.fail_json(msg=f"{path} exists and is not a file: move it away or choose another path")
            with open(path, encoding="utf-8") as f:
                if not has_secret_key(f.read()):
                    module.fail_json(msg=f"{path} holds no age secret key (AGE-SECRET-KEY-1...): it is not "
                                         "replaced automatically; restore the key or move the file away")
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode != KEY_MODE:
                result["changed"] = True
                result["diff"] = {"before": f"{path}: mode {mode:04o}\n", "after": f"{path}: mode {KEY_MODE:04o}\n"}
                if not module.check_mode:
                    os.chmod(path, KEY_MODE)
            result["public_key"] = keygen.public_key(path)
            module.exit_json(**result)
        result.update(changed=True, generated=True,
                      diff={"before": "", "after": f"{path}: new age key pair, mode {KEY_MODE:04o}\n"})
        if module.check_mode:
            module.exit_json(**result)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700)
        old_umask = os.umask(0o077)
        try:
            result["public_key"] = keygen.generate(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, KEY_MODE)
        module.exit_json(**result)
    except AgeError as e:
        e.fail(module)


if __name__ == "__main__":
    main()
