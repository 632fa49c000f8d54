#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gitops_repo
short_description: Render files into a GitOps repository, commit and push only when content changed
version_added: 0.1.0
description:
  - Keeps a local clone of a GitOps repository (created when missing), brings it up to date with the
    remote branch, writes the given files, and makes B(one) commit and push when, and only when, the
    content of the repository changes.
  - Secrets are given in clear text through O(sops_files) and reach the repository only encrypted with
    C(sops) for age recipients. sops output differs on every run, so a committed secret is decrypted
    and its plaintext compared; it is re-encrypted only when the plaintext, the recipients or the
    encrypted_regex changed. Plaintext travels through pipes and is never written to disk.
  - Check mode looks at the remote branch (cloning into a temporary directory when the local clone does
    not exist yet) and reports which files would change; C(--diff) shows them, with secret values masked.
  - Files not listed are left alone; list a file with O(files[].state=absent) to remove it.
  - When another writer pushes to the branch between this module's fetch and its push, the push is
    refused by the remote; the module fetches, rebases its one commit on the new remote commits and
    pushes again (up to three attempts). A clone left with unpushed commits of its own beside newer
    remote commits is rebased the same way on the next run. If both changed the same file, the
    rebase is undone and the task fails naming the files; commits by another author in the clone
    make it refuse rather than rewrite them.
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
    details: secret values are masked; the diff tells which keys change, never their values.
options:
  path:
    description: Local clone of the repository. Created when missing. Owned by this module; local
      changes that are not committed make the module fail rather than lose them.
    type: path
    required: true
  url:
    description: URL of the remote repository (C(file://), C(https://), C(ssh://) or scp-like).
    type: str
    required: true
  branch:
    description: Branch to render into. Created on the remote by the first push when it does not exist.
    type: str
    default: main
  files:
    description: Files to render, relative to the repository root.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to the repository root.
        type: str
        required: true
      content:
        description: Full content of the file. Required when O(files[].state=present).
        type: str
      state:
        description: Whether the file should exist.
        type: str
        choices: [present, absent]
        default: present
  sops_files:
    description: Files to store SOPS-encrypted (secrets). The content is the plaintext; only ciphertext is written.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to the repository root (by convention ending in C(.sops.yaml)).
        type: str
        required: true
      content:
        description: Plaintext content.
        type: str
        required: true
      format:
        description: sops input/output type; V(auto) picks it from the file name.
        type: str
        choices: [auto, yaml, json, dotenv, binary]
        default: auto
      encrypted_regex:
        description: Keys whose values sops encrypts. The default encrypts the C(data) and C(stringData) of
          Kubernetes Secrets and leaves the rest readable; an empty string encrypts every value.
        type: str
        default: ^(data|stringData)$
  age_recipients:
    description: age public keys the secrets are encrypted for. Required when O(sops_files) is given.
    type: list
    elements: str
    default: []
  age_key_file:
    description: age private key file used to decrypt committed secrets for comparison. Required when
      O(sops_files) is given.
    type: path
  commit_message:
    description: Subject of the commit. The body lists the files added, modified and deleted.
    type: str
    default: "homecluster: render GitOps repository"
  author_name:
    description: Author and committer name of the commit.
    type: str
    default: HomeCluster
  author_email:
    description: Author and committer e-mail of the commit.
    type: str
    default: homecluster@localhost
  push:
    description: Push the branch to the remote. With V(false) commits stay in the local clone.
    type: bool
    default: true
  ssh_key_file:
    description: Private SSH key used to reach an C(ssh://) remote (sets C(GIT_SSH_COMMAND)).
    type: path
  git_path:
    description: Path of the git binary; found on PATH when not set.
    type: path
  sops_path:
    description: Path of the sops binary; found on E(PATH) when not set.
    type: path
notes:
  - One call makes at most one commit, so a role that renders everything it owns in one call leaves
    exactly one commit per real change in the repository's history.
  - YAML and JSON secrets are compared as data, so a change only to comments or formatting of a secret
    does not re-encrypt it.
seealso:
  - module: homecluster.platform.sops_file
  - module: homecluster.platform.age_keypair
"""

EXAMPLES = r"""
- name: Render the cluster layout and the age key Secret into the GitOps repository
  homecluster.platform.gitops_repo:
    path: "{{ playbook_dir }}/.gitops/lab"
    url: ssh://git@git.example.org/home/fleet.git
    branch: main
    commit_message: "flux_bootstrap: cluster lab layout"
    files:
      - path: clusters/lab/infrastructure.yaml
        content: "{{ lookup('ansible.builtin.template', 'infrastructure.yaml.j2') }}"
      - path: clusters/lab/old.yaml
        state: absent
    sops_files:
      - path: clusters/lab/secrets/cloudflare.sops.yaml
        content: "{{ cloudflare_secret | to_nice_yaml }}"
    age_recipients: ["{{ age_public_key }}"]
    age_key_file: ~/.config/homecluster/lab/age.key
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
commit:
  description: Commit the branch points to after the run (the new commit when one was made).
  returned: success and the branch exists
  type: str
  sample: 3f1c2e9d0b6a4c8e9f00112233445566778899aa
committed:
  description: Whether a commit was made (or would be, in check mode).
  returned: always
  type: bool
pushed:
  description: Whether the branch was pushed (or would be, in check mode).
  returned: always
  type: bool
push_attempts:
  description: Pushes it took; more than one when the remote branch moved and the commit was rebased.
  returned: when pushed, not in check mode
  type: int
  sample: 1
files_changed:
  description: Files that change, each with its change (added, modified, deleted) and the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "clusters/lab/infrastructure.yaml", "change": "modified", "secret": false}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils import _gitops as gitops
from ansible_collections.homecluster.platform.plugins.module_utils._git import GitError
from ansible_collections.homecluster.platform.plugins.module_utils._sops import SopsError


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "url": {"type": "str", "required": True},
            "branch": {"type": "str", "default": "main"},
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "str", "required": True},
                "content": {"type": "str"},
                "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            }},
            "sops_files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "str", "required": True},
                "content": {"type": "str", "required": True, "no_log": True},
                "format": {"type": "str", "choices": ["auto", "yaml", "json", "dotenv", "binary"], "default": "auto"},
                "encrypted_regex": {"type": "str", "default": "^(data|stringData)$"},
            }},
            "age_recipients": {"type": "list", "elements": "str", "default": []},
            "age_key_file": {"type": "path", "no_log": False},
            "commit_message": {"type": "str", "default": "homecluster: render GitOps repository"},
            "author_name": {"type": "str", "default": "HomeCluster"},
            "author_email": {"type": "str", "default": "homecluster@localhost"},
            "push": {"type": "bool", "default": True},
            "ssh_key_file": {"type": "path", "no_log": False},
            "git_path": {"type": "path"},
            "sops_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    try:
        module.exit_json(**gitops.run(module, module.params, module.check_mode, module._diff))
    except GitError as e:
        e.fail(module)
    except SopsError as e:
        e.fail(module)


if __name__ == "__main__":
    main()
